/*
 * nif/maps.c: replicated maps (core/maps.h) of an engine.
 *
 * Reads never decode. Every hosted map has a copy of its live entries as
 * terms (its `shell` data, an nmap_t): the key and value terms live in
 * one process-independent environment per map (the arena), indexed by
 * the key's phash2 (enif_hash) with an identity check, and a read copies
 * the value into the caller's environment (enif_make_copy), as ets:lookup
 * copies out of a table. The copy is kept by core/maps.c's `changed`
 * hook, under the rw lock as a writer; readers take the rw lock as
 * readers. Replaced terms stay in the arena as garbage until it holds
 * more garbage than live terms (counted in ETF bytes); then the live
 * terms are copied into a fresh arena and the old one is freed, so a key
 * rewritten 100,000 times costs the memory of one.
 *
 * Writes (map_put, map_remove) take the engine lock and run on the
 * direct path: the sealed envelopes for the map's hosts come back to the
 * caller, who sends them itself.
 */
#include <stdlib.h>
#include <string.h>

#include "core/maps.h"
#include "nif.h"

#define NMAP_TAB_MIN 16
#define ARENA_SLACK  (64u << 10) /* garbage bytes always tolerated */

typedef struct slot {
    struct slot *next;
    uint32_t hash;         /* phash2 of key */
    ERL_NIF_TERM key, val; /* in the map's arena */
    size_t bytes;          /* ETF bytes of key and value */
} slot_t;

typedef struct nmap {
    ErlNifEnv *name_env;
    ERL_NIF_TERM name;
    uint32_t name_hash;
    slot_t **tab;
    size_t mask, n;
    ErlNifEnv *arena;
    size_t live_bytes, garbage_bytes;
} nmap_t;

static void nmap_free(nmap_t *nm)
{
    if (nm == NULL)
        return;
    for (size_t i = 0; nm->tab && i <= nm->mask; i++) {
        slot_t *s = nm->tab[i], *next;
        for (; s; s = next) {
            next = s->next;
            free(s);
        }
    }
    free(nm->tab);
    if (nm->arena)
        enif_free_env(nm->arena);
    if (nm->name_env)
        enif_free_env(nm->name_env);
    free(nm);
}

static slot_t *slot_find(const nmap_t *nm, uint32_t h, ERL_NIF_TERM key)
{
    for (slot_t *s = nm->tab[h & nm->mask]; s; s = s->next)
        if (s->hash == h && enif_is_identical(s->key, key))
            return s;
    return NULL;
}

static void nmap_grow(nmap_t *nm)
{
    size_t cap = (nm->mask + 1) * 2;
    slot_t **tab = calloc(cap, sizeof *tab);

    if (tab == NULL)
        return;
    for (size_t i = 0; i <= nm->mask; i++) {
        slot_t *s = nm->tab[i], *next;
        for (; s; s = next) {
            next = s->next;
            s->next = tab[s->hash & (cap - 1)];
            tab[s->hash & (cap - 1)] = s;
        }
    }
    free(nm->tab);
    nm->tab = tab;
    nm->mask = cap - 1;
}

/* Copies every live term into a fresh arena and frees the old one. */
static void nmap_compact(nmap_t *nm)
{
    ErlNifEnv *fresh = enif_alloc_env();

    if (fresh == NULL)
        return;
    for (size_t i = 0; i <= nm->mask; i++)
        for (slot_t *s = nm->tab[i]; s; s = s->next) {
            s->key = enif_make_copy(fresh, s->key);
            s->val = enif_make_copy(fresh, s->val);
        }
    enif_free_env(nm->arena);
    nm->arena = fresh;
    nm->garbage_bytes = 0;
}

/* core/maps.h's changed hook: keeps the term copy (under the write lock). */
static void on_changed(void *ctx, tether_map_t *map, const uint8_t *key,
                       size_t klen, const uint8_t *val, size_t vlen)
{
    nmap_t *nm = *tether_maps_shell(map);
    ERL_NIF_TERM k, v = 0;
    slot_t *s;
    uint32_t h;

    (void)ctx;
    /* Keys and values were written here or by a trusted member: decoded
     * as distribution decodes (new atoms allowed). */
    if (nm == NULL || enif_binary_to_term(nm->arena, key, klen, &k, 0) == 0)
        return;
    h = (uint32_t)enif_hash(ERL_NIF_PHASH2, k, 0);
    s = slot_find(nm, h, k);
    if (val == NULL) {
        if (s != NULL) {
            slot_t **pp = &nm->tab[h & nm->mask];
            while (*pp != s)
                pp = &(*pp)->next;
            *pp = s->next;
            nm->n--;
            nm->live_bytes -= s->bytes;
            nm->garbage_bytes += s->bytes;
            free(s);
        }
        nm->garbage_bytes += klen;
        goto done;
    }
    if (enif_binary_to_term(nm->arena, val, vlen, &v, 0) == 0)
        return; /* the core validated it: not reached */
    if (s == NULL) {
        s = calloc(1, sizeof *s);
        if (s == NULL)
            return;
        s->hash = h;
        s->next = nm->tab[h & nm->mask];
        nm->tab[h & nm->mask] = s;
        nm->n++;
    } else {
        nm->live_bytes -= s->bytes;
        nm->garbage_bytes += s->bytes + klen;
    }
    s->key = s->key ? s->key : k;
    s->val = v;
    s->bytes = klen + vlen;
    nm->live_bytes += s->bytes;
    if (nm->n > 2 * (nm->mask + 1))
        nmap_grow(nm);
done:
    if (nm->garbage_bytes > nm->live_bytes + ARENA_SLACK)
        nmap_compact(nm);
}

int tether__nif_maps_attach(tether_nif_res_t *res, uint32_t sync_ms)
{
    tether_maps_config_t cfg = {
        .sync_ms = sync_ms,
        .wlock = tether__nif_wlock,
        .wunlock = tether__nif_wunlock,
        .lock_ctx = res->rw,
        .changed = on_changed,
        .ctx = res,
    };

    return tether_maps_new(&cfg, res->eng, &res->maps);
}

void tether__nif_maps_detach(tether_nif_res_t *res)
{
    size_t n = tether_maps_count(res->maps);

    for (size_t i = 0; i < n; i++) {
        void **shell = tether_maps_shell(tether_maps_at(res->maps, i));
        nmap_free(*shell);
        *shell = NULL;
    }
}

/* The hosted map named t (under either lock), or NULL. */
static tether_map_t *find_map(tether_nif_res_t *res, ERL_NIF_TERM t)
{
    uint32_t h = (uint32_t)enif_hash(ERL_NIF_PHASH2, t, 0);
    size_t n = tether_maps_count(res->maps);

    for (size_t i = 0; i < n; i++) {
        tether_map_t *map = tether_maps_at(res->maps, i);
        nmap_t *nm = *tether_maps_shell(map);
        if (nm && nm->name_hash == h && enif_is_identical(nm->name, t))
            return map;
    }
    return NULL;
}

static int get_maps(ErlNifEnv *env, ERL_NIF_TERM t, tether_nif_res_t **res)
{
    return tether__nif_get_res(env, t, res) && (*res)->maps != NULL;
}

/*
 * map_host(Engine, Name, TombstoneTtlMs[, Persist]) -> ok | {error,
 * Reason}: this node hosts map Name (idempotent); with Persist (true), its
 * writes yield records (map_put's fourth element, map_store actions).
 */
ERL_NIF_TERM map_host_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    tether_nif_res_t *res;
    tether_nif_canon_t c;
    tether_map_opts_t opts = {0};
    ErlNifUInt64 ttl;
    tether_map_t *map;
    nmap_t *nm;
    int rc;

    if ((argc != 3 && argc != 4) || !get_maps(env, argv[0], &res) ||
        !enif_get_uint64(env, argv[2], &ttl) ||
        (argc == 4 && argv[3] != ATOM(true) && argv[3] != ATOM(false)))
        return enif_make_badarg(env);
    if (!tether__nif_canon(env, argv[1], TETHER_MAPS_NAME_MAX, &c))
        return enif_make_badarg(env);
    opts.tombstone_ttl_ms = ttl;
    opts.persist = argc == 4 && argv[3] == ATOM(true);
    nm = calloc(1, sizeof *nm);
    if (nm) {
        nm->name_env = enif_alloc_env();
        nm->arena = enif_alloc_env();
        nm->tab = calloc(NMAP_TAB_MIN, sizeof *nm->tab);
        nm->mask = NMAP_TAB_MIN - 1;
    }
    if (nm == NULL || nm->name_env == NULL || nm->arena == NULL ||
        nm->tab == NULL) {
        nmap_free(nm);
        tether__nif_canon_free(&c);
        return tether__nif_error(env, TETHER_ENOMEM);
    }
    nm->name = enif_make_copy(nm->name_env, argv[1]);
    nm->name_hash = (uint32_t)enif_hash(ERL_NIF_PHASH2, argv[1], 0);
    enif_mutex_lock(res->lock);
    map = tether_maps_find(res->maps, c.data, c.len);
    if (map != NULL) {
        rc = 0; /* hosted already */
    } else {
        rc = tether_maps_host(res->maps, c.data, c.len, &opts, &map);
        if (rc == 0) {
            enif_rwlock_rwlock(res->rw);
            *tether_maps_shell(map) = nm;
            enif_rwlock_rwunlock(res->rw);
            nm = NULL;
        }
    }
    enif_mutex_unlock(res->lock);
    nmap_free(nm);
    tether__nif_canon_free(&c);
    return tether__nif_ok(env, rc);
}

/* map_unhost(Engine, Name) -> ok | {error, no_such_map}. */
ERL_NIF_TERM map_unhost_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    tether_nif_res_t *res;
    tether_map_t *map;
    nmap_t *nm = NULL;
    int rc = TETHER_ENOTFOUND;

    if (argc != 2 || !get_maps(env, argv[0], &res))
        return enif_make_badarg(env);
    enif_mutex_lock(res->lock);
    map = find_map(res, argv[1]);
    if (map != NULL) {
        size_t nlen;
        const uint8_t *name = tether_maps_name(map, &nlen);
        uint8_t *copy = malloc(nlen);
        nm = *tether_maps_shell(map);
        if (copy == NULL) {
            rc = TETHER_ENOMEM;
        } else {
            memcpy(copy, name, nlen);
            rc = tether_maps_unhost(res->maps, copy, nlen);
            free(copy);
        }
    }
    enif_mutex_unlock(res->lock);
    if (rc == 0)
        nmap_free(nm); /* unreachable to readers since the unhost */
    if (rc == TETHER_ENOTFOUND)
        return enif_make_tuple2(env, ATOM(error), ATOM(no_such_map));
    return tether__nif_ok(env, rc);
}

/* map_notify(Engine, Name, boolean()) -> ok | {error, no_such_map}. */
ERL_NIF_TERM map_notify_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    tether_nif_res_t *res;
    tether_map_t *map;

    if (argc != 3 || !get_maps(env, argv[0], &res) ||
        (argv[2] != ATOM(true) && argv[2] != ATOM(false)))
        return enif_make_badarg(env);
    enif_mutex_lock(res->lock);
    map = find_map(res, argv[1]);
    tether_maps_set_notify(map, argv[2] == ATOM(true));
    enif_mutex_unlock(res->lock);
    return map ? ATOM(ok)
               : enif_make_tuple2(env, ATOM(error), ATOM(no_such_map));
}

/* What a direct-path write collects: the envelopes, and the record of a
 * persisted map (core/maps.h hands it over as a sealed() with no peer). */
typedef struct write_acc {
    tether_nif_sealed_t sealed;
    ERL_NIF_TERM record; /* 0: none */
} write_acc_t;

static void write_cb(void *ctx, const char *peer, const uint8_t *bytes,
                     size_t len)
{
    write_acc_t *w = ctx;

    if (peer != NULL)
        tether__nif_sealed_cb(&w->sealed, peer, bytes, len);
    else
        w->record = tether__nif_make_bytes(w->sealed.env, bytes, len);
}

/*
 * map_put(Engine, Name, Key, Value) and map_remove(Engine, Name, Key)
 *   -> {ok, [{Peer, Envelope}], Drain :: boolean()}
 *    | {ok, [{Peer, Envelope}], Drain, Record}   (a persisted map)
 *    | {error, no_such_map | too_large | invalid_value | Reason}:
 * the write on the direct path; the caller sends each Envelope to
 * `tether' on Peer as {'$tether', node(), Envelope}, and, when Drain,
 * tells the tether server that actions (subscriber events) wait; it
 * appends Record to the map's log before it answers its own caller.
 */
static ERL_NIF_TERM map_write(ErlNifEnv *env, int argc,
                              const ERL_NIF_TERM argv[], int remove)
{
    tether_nif_res_t *res;
    tether_nif_canon_t k;
    ErlNifBinary v = {0};
    write_acc_t acc = {{env, enif_make_list(env, 0)}, 0};
    tether_map_t *map;
    int rc, drain = 0;

    if (argc != (remove ? 3 : 4) || !get_maps(env, argv[0], &res))
        return enif_make_badarg(env);
    if (!tether__nif_canon(env, argv[2], TETHER_MAPS_KEY_MAX, &k))
        return enif_make_tuple2(env, ATOM(error), ATOM(too_large));
    if (!remove && !enif_term_to_binary(env, argv[3], &v)) {
        tether__nif_canon_free(&k);
        return tether__nif_error(env, TETHER_ENOMEM);
    }
    enif_mutex_lock(res->lock);
    map = find_map(res, argv[1]);
    if (map == NULL) {
        rc = TETHER_ENOTFOUND;
    } else {
        tether_engine_set_wall(res->eng, tether__nif_system_ms());
        rc = tether_maps_write(res->maps, map, k.data, k.len,
                               remove ? NULL : v.data, v.size, write_cb, &acc);
        drain = tether_maps_notify(map);
    }
    enif_mutex_unlock(res->lock);
    if (!remove)
        enif_release_binary(&v);
    tether__nif_canon_free(&k);
    switch (rc) {
    case 0:
        if (acc.record)
            return enif_make_tuple4(env, ATOM(ok), acc.sealed.list,
                                    drain ? ATOM(true) : ATOM(false),
                                    acc.record);
        return enif_make_tuple3(env, ATOM(ok), acc.sealed.list,
                                drain ? ATOM(true) : ATOM(false));
    case TETHER_ENOTFOUND:
        return enif_make_tuple2(env, ATOM(error), ATOM(no_such_map));
    case TETHER_ETOOBIG:
        return enif_make_tuple2(env, ATOM(error), ATOM(too_large));
    case TETHER_EINVAL:
        return enif_make_tuple2(env, ATOM(error), ATOM(invalid_value));
    default:
        return tether__nif_error(env, rc);
    }
}

ERL_NIF_TERM map_put_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    return map_write(env, argc, argv, 0);
}

ERL_NIF_TERM map_remove_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    return map_write(env, argc, argv, 1);
}

/* map_load(Engine, Name, Record) -> ok | {error, bad_record |
 * no_such_map}: one persisted record fed back (at start). */
ERL_NIF_TERM map_load_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    tether_nif_res_t *res;
    tether_map_t *map;
    ErlNifBinary b;
    int rc = TETHER_ENOTFOUND;

    if (argc != 3 || !get_maps(env, argv[0], &res) ||
        !enif_inspect_binary(env, argv[2], &b))
        return enif_make_badarg(env);
    enif_mutex_lock(res->lock);
    map = find_map(res, argv[1]);
    if (map != NULL)
        rc = tether_maps_load(map, b.data, b.size);
    enif_mutex_unlock(res->lock);
    if (rc == TETHER_ENOTFOUND)
        return enif_make_tuple2(env, ATOM(error), ATOM(no_such_map));
    if (rc == TETHER_EPROTO)
        return enif_make_tuple2(env, ATOM(error), ATOM(bad_record));
    return tether__nif_ok(env, rc);
}

/* map_dump(Engine, Name) -> [Record] | {error, no_such_map}: the record of
 * every entry, tombstones included (a compacted log). */
ERL_NIF_TERM map_dump_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    tether_nif_res_t *res;
    tether_map_t *map;
    tether_nif_bins_t d = {env, enif_make_list(env, 0)};
    int rc = TETHER_ENOTFOUND;

    if (argc != 2 || !get_maps(env, argv[0], &res))
        return enif_make_badarg(env);
    enif_mutex_lock(res->lock);
    map = find_map(res, argv[1]);
    if (map != NULL)
        rc = tether_maps_dump(map, tether__nif_bins_add, &d);
    enif_mutex_unlock(res->lock);
    if (rc == TETHER_ENOTFOUND)
        return enif_make_tuple2(env, ATOM(error), ATOM(no_such_map));
    return rc < 0 ? tether__nif_error(env, rc) : d.list;
}

/*
 * map_get(Engine, Name, Key) -> {ok, Value} | not_found
 *   | {error, no_such_map}: a read under the rw lock (no engine lock, no
 * decoding: the stored term is copied out).
 */
ERL_NIF_TERM map_get_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    tether_nif_res_t *res;
    tether_map_t *map;
    ERL_NIF_TERM ret;
    uint32_t h;

    if (argc != 3 || !get_maps(env, argv[0], &res))
        return enif_make_badarg(env);
    h = (uint32_t)enif_hash(ERL_NIF_PHASH2, argv[2], 0);
    enif_rwlock_rlock(res->rw);
    map = find_map(res, argv[1]);
    if (map == NULL) {
        ret = enif_make_tuple2(env, ATOM(error), ATOM(no_such_map));
    } else {
        nmap_t *nm = *tether_maps_shell(map);
        slot_t *s = slot_find(nm, h, argv[2]);
        ret = s ? enif_make_tuple2(env, ATOM(ok), enif_make_copy(env, s->val))
                : ATOM(not_found);
    }
    enif_rwlock_runlock(res->rw);
    return ret;
}

/* What map_list returns of each entry. */
enum { LIST_KEYS, LIST_PAIRS };

/*
 * map_list(Engine, Name, keys | pairs) -> [Key] | [{Key, Value}]
 *   | {error, no_such_map}; map_size(Engine, Name) -> N | {error, ...}.
 */
ERL_NIF_TERM map_list_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    tether_nif_res_t *res;
    tether_map_t *map;
    ERL_NIF_TERM ret;
    int what;

    if (argc != 3 || !get_maps(env, argv[0], &res) ||
        !enif_is_atom(env, argv[2]))
        return enif_make_badarg(env);
    what = enif_is_identical(argv[2], enif_make_atom(env, "keys")) ? LIST_KEYS
                                                                   : LIST_PAIRS;
    enif_rwlock_rlock(res->rw);
    map = find_map(res, argv[1]);
    if (map == NULL) {
        ret = enif_make_tuple2(env, ATOM(error), ATOM(no_such_map));
    } else {
        nmap_t *nm = *tether_maps_shell(map);
        ret = enif_make_list(env, 0);
        for (size_t i = 0; i <= nm->mask; i++)
            for (slot_t *s = nm->tab[i]; s; s = s->next) {
                ERL_NIF_TERM k = enif_make_copy(env, s->key);
                ret = enif_make_list_cell(
                    env,
                    what == LIST_KEYS
                        ? k
                        : enif_make_tuple2(env, k, enif_make_copy(env, s->val)),
                    ret);
            }
    }
    enif_rwlock_runlock(res->rw);
    return ret;
}

ERL_NIF_TERM map_size_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    tether_nif_res_t *res;
    tether_map_t *map;
    ERL_NIF_TERM ret;

    if (argc != 2 || !get_maps(env, argv[0], &res))
        return enif_make_badarg(env);
    enif_rwlock_rlock(res->rw);
    map = find_map(res, argv[1]);
    ret = map ? enif_make_uint64(env, tether_maps_size(map))
              : enif_make_tuple2(env, ATOM(error), ATOM(no_such_map));
    enif_rwlock_runlock(res->rw);
    return ret;
}

/*
 * map_info(Engine, Name) -> #{entries, size, hosts, arena_live_bytes,
 * arena_garbage_bytes, ae_bytes, ae_rounds, applied, stale, bad}
 * | {error, no_such_map}: counters for tests and benchmarks (ae_* and
 * the message counters are the engine's, all maps together).
 */
ERL_NIF_TERM map_info_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    static const char *const k[] = {"entries",
                                    "size",
                                    "hosts",
                                    "arena_live_bytes",
                                    "arena_garbage_bytes",
                                    "ae_bytes",
                                    "ae_rounds",
                                    "applied",
                                    "stale",
                                    "bad"};
    uint64_t v[sizeof k / sizeof k[0]];
    tether_nif_res_t *res;
    tether_map_t *map;
    const tether_maps_stats_t *st;

    if (argc != 2 || !get_maps(env, argv[0], &res))
        return enif_make_badarg(env);
    enif_mutex_lock(res->lock);
    map = find_map(res, argv[1]);
    if (map != NULL) {
        nmap_t *nm = *tether_maps_shell(map);
        st = tether_maps_stats(res->maps);
        v[0] = tether__maps_entries(map);
        v[1] = tether_maps_size(map);
        v[2] = tether__maps_hosts(map);
        v[3] = nm->live_bytes;
        v[4] = nm->garbage_bytes;
        v[5] = st->ae_bytes;
        v[6] = st->ae_rounds;
        v[7] = st->applied;
        v[8] = st->stale;
        v[9] = st->bad;
    }
    enif_mutex_unlock(res->lock);
    if (map == NULL)
        return enif_make_tuple2(env, ATOM(error), ATOM(no_such_map));
    return tether__nif_counters(env, k, v, sizeof k / sizeof k[0]);
}
