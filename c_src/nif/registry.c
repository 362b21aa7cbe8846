/*
 * nif/registry.c: the name registry (core/registry.h) of an engine
 * resource as NIFs: register (through the engine's actions, or sealed for
 * the caller to send: the direct path), unregister, resolve, and the
 * reads (whereis, names, entries), which take only the read lock.
 */
#include <stdlib.h>
#include <string.h>

#include <ei.h>

#include "core/codec.h"
#include "nif/nif.h"
#include "tether/error.h"

/* A registry entry's pid, decoded once into its own environment, so a
 * whereis copies a term instead of decoding bytes. */
typedef struct pid_slot {
    ErlNifEnv *env;
    ERL_NIF_TERM pid;
} pid_slot_t;

static void *pid_attach(void *ctx, const uint8_t *pid, size_t plen)
{
    pid_slot_t *s = enif_alloc(sizeof *s);

    (void)ctx;
    if (s == NULL)
        return NULL;
    s->env = enif_alloc_env();
    if (s->env == NULL ||
        enif_binary_to_term(s->env, pid, plen, &s->pid, 0) == 0) {
        if (s->env != NULL)
            enif_free_env(s->env);
        enif_free(s);
        return NULL; /* whereis falls back to decoding the bytes */
    }
    return s;
}

static void pid_detach(void *ctx, void *data)
{
    pid_slot_t *s = data;

    (void)ctx;
    enif_free_env(s->env);
    enif_free(s);
}

/* Creates res's registry as a module of its engine: changes under res's
 * rw lock, each entry's pid decoded once (pid_attach). */
int tether__nif_registry_attach(tether_nif_res_t *res, uint32_t digest_ms)
{
    tether_registry_config_t rcfg;

    tether_registry_config_default(&rcfg);
    rcfg.digest_ms = digest_ms;
    rcfg.wlock = tether__nif_wlock;
    rcfg.wunlock = tether__nif_wunlock;
    rcfg.lock_ctx = res->rw;
    rcfg.pid_attach = pid_attach;
    rcfg.pid_detach = pid_detach;
    return tether_registry_new(&rcfg, res->eng, &res->reg);
}

/*
 * Writes the external format of t (without the version byte) at
 * buf[*len..cap) for the common name shapes: ASCII atoms (as
 * SMALL_ATOM_UTF8_EXT), integers that fit 32 bits, binaries, tuples and
 * proper lists of those. These are the bytes ei writes for the same terms,
 * so a C-node makes the same keys. Returns 1, or 0 for any other term or
 * when cap is reached (the caller then uses term_to_binary; a given term
 * always takes the same path).
 */
static int key_encode(ErlNifEnv *env, ERL_NIF_TERM t, uint8_t *buf, size_t cap,
                      size_t *len, int depth)
{
    char atom[256];
    int n, arity;
    long v;
    const ERL_NIF_TERM *el;
    ErlNifBinary b;
    unsigned ll;

    if (depth > TETHER_ETF_DEPTH_MAX)
        return 0;
    if (enif_is_atom(env, t)) {
        n = enif_get_atom(env, t, atom, sizeof atom, ERL_NIF_LATIN1);
        if (n <= 0 || (size_t)n - 1 + 2 > cap - *len)
            return 0;
        n--;
        for (int i = 0; i < n; i++)
            if ((unsigned char)atom[i] >= 0x80)
                return 0;
        buf[(*len)++] = ERL_SMALL_ATOM_UTF8_EXT;
        buf[(*len)++] = (uint8_t)n;
        memcpy(buf + *len, atom, (size_t)n);
        *len += (size_t)n;
        return 1;
    }
    if (enif_get_long(env, t, &v)) {
        if (v >= 0 && v <= 255) {
            if (cap - *len < 2)
                return 0;
            buf[(*len)++] = ERL_SMALL_INTEGER_EXT;
            buf[(*len)++] = (uint8_t)v;
            return 1;
        }
        if (v < INT32_MIN || v > INT32_MAX || cap - *len < 5)
            return 0;
        buf[(*len)++] = ERL_INTEGER_EXT;
        for (int i = 3; i >= 0; i--)
            buf[(*len)++] = (uint8_t)((uint32_t)v >> (8 * i));
        return 1;
    }
    if (enif_get_tuple(env, t, &arity, &el)) {
        if (arity > 255 || cap - *len < 2)
            return 0;
        buf[(*len)++] = ERL_SMALL_TUPLE_EXT;
        buf[(*len)++] = (uint8_t)arity;
        for (int i = 0; i < arity; i++)
            if (!key_encode(env, el[i], buf, cap, len, depth + 1))
                return 0;
        return 1;
    }
    if (enif_is_binary(env, t) && enif_inspect_binary(env, t, &b)) {
        if (b.size > cap || cap - *len < 5 + b.size)
            return 0;
        buf[(*len)++] = ERL_BINARY_EXT;
        for (int i = 3; i >= 0; i--)
            buf[(*len)++] = (uint8_t)((uint32_t)b.size >> (8 * i));
        memcpy(buf + *len, b.data, b.size);
        *len += b.size;
        return 1;
    }
    if (enif_is_empty_list(env, t)) {
        if (cap - *len < 1)
            return 0;
        buf[(*len)++] = ERL_NIL_EXT;
        return 1;
    }
    if (enif_get_list_length(env, t, &ll)) {
        ERL_NIF_TERM head, tail = t;
        if (cap - *len < 5)
            return 0;
        buf[(*len)++] = ERL_LIST_EXT;
        for (int i = 3; i >= 0; i--)
            buf[(*len)++] = (uint8_t)(ll >> (8 * i));
        while (enif_get_list_cell(env, tail, &head, &tail))
            if (!key_encode(env, head, buf, cap, len, depth + 1))
                return 0;
        if (cap - *len < 1)
            return 0;
        buf[(*len)++] = ERL_NIL_EXT;
        return 1;
    }
    return 0;
}

/* Fills k for term t. Returns 1, or 0 (no memory, too large). */
int tether__nif_key_make(ErlNifEnv *env, ERL_NIF_TERM t, tether_nif_key_t *k)
{
    size_t len = 1;

    k->heap = 0;
    k->stack[0] = TETHER_ETF_VERSION;
    if (key_encode(env, t, k->stack, sizeof k->stack, &len, 0)) {
        k->data = k->stack;
        k->len = len;
        return 1;
    }
    if (!enif_term_to_binary(env, t, &k->bin))
        return 0;
    k->heap = 1;
    k->data = k->bin.data;
    k->len = k->bin.size;
    if (k->len > TETHER_REG_NAME_MAX) {
        enif_release_binary(&k->bin);
        k->heap = 0;
        return 0;
    }
    return 1;
}

void tether__nif_key_free(tether_nif_key_t *k)
{
    if (k->heap)
        enif_release_binary(&k->bin);
    k->heap = 0;
}

/* The registry of an engine term, or 0. */
static int get_reg(ErlNifEnv *env, ERL_NIF_TERM t, tether_nif_res_t **out)
{
    return tether__nif_get_res(env, t, out) && (*out)->reg != NULL;
}

/* The envelopes of a direct registration, gathered as [{Peer, Bytes}]. */
typedef tether_nif_sealed_t sealed_acc_t;

/* The body of reg_register/5 (acc NULL: the broadcast goes through the
 * engine's actions) and reg_register_sealed/5 (acc gathers the sealed
 * envelopes). */
static ERL_NIF_TERM reg_register(ErlNifEnv *env, int argc,
                                 const ERL_NIF_TERM argv[], sealed_acc_t *acc)
{
    tether_nif_res_t *res;
    ErlNifBinary pid;
    ErlNifUInt64 wall;
    int method, rc;
    tether_nif_key_t k;

    if (argc != 5 || !get_reg(env, argv[0], &res) ||
        !enif_is_pid(env, argv[2]) || !enif_get_int(env, argv[3], &method) ||
        method < 0 || method > TETHER_REG_METHOD_MAX ||
        !enif_get_uint64(env, argv[4], &wall))
        return enif_make_badarg(env);
    if (!tether__nif_key_make(env, argv[1], &k))
        return enif_make_badarg(env);
    if (!enif_term_to_binary(env, argv[2], &pid)) {
        tether__nif_key_free(&k);
        return tether__nif_error(env, TETHER_ENOMEM);
    }
    enif_mutex_lock(res->lock);
    if (acc == NULL)
        rc = tether_registry_register(res->reg, k.data, k.len, pid.data,
                                      pid.size, method, wall);
    else
        rc = tether_registry_register_sealed(res->reg, k.data, k.len, pid.data,
                                             pid.size, method, wall,
                                             tether__nif_sealed_cb, acc);
    enif_mutex_unlock(res->lock);
    enif_release_binary(&pid);
    tether__nif_key_free(&k);
    if (rc == TETHER_EEXIST)
        return ATOM(no);
    if (rc < 0)
        return tether__nif_error(env, rc);
    return acc == NULL ? ATOM(yes)
                       : enif_make_tuple2(env, ATOM(yes), acc->list);
}

/*
 * reg_register(Engine, Name, Pid, Method :: 0..2, WallMs)
 *   -> yes | no | {error, Reason}: registers Name -> Pid as this node's,
 * stamped at WallMs (erlang:system_time(millisecond)), and broadcasts it.
 * `no' when Name is held by anyone. The engine is not told of process
 * lifetimes: the caller monitors Pid and unregisters.
 */
ERL_NIF_TERM reg_register_nif(ErlNifEnv *env, int argc,
                              const ERL_NIF_TERM argv[])
{
    return reg_register(env, argc, argv, NULL);
}

/*
 * reg_register_sealed(Engine, Name, Pid, Method :: 0..2, WallMs)
 *   -> {yes, [{Peer :: binary(), Envelope :: binary()}]} | no
 *    | {error, Reason}: reg_register/5 on the direct path
 * (core/registry.h, tether_registry_register_sealed): the caller sends
 * each Envelope to `tether' on Peer as {'$tether', node(), Envelope}
 * itself, with no hand-over to the tether server. `no' when Name is held
 * by anyone or Pid holds a name of ours.
 */
ERL_NIF_TERM reg_register_sealed_nif(ErlNifEnv *env, int argc,
                                     const ERL_NIF_TERM argv[])
{
    sealed_acc_t acc = {env, enif_make_list(env, 0)};

    return reg_register(env, argc, argv, &acc);
}

/*
 * reg_unregister(Engine, Name) -> ok | {error, not_found}: removes this
 * node's own entry for Name and broadcasts the removal.
 * reg_unregister(Engine, Name, Pid): only if that entry holds Pid (a
 * registrant that lost its name never removes its successor's).
 */
ERL_NIF_TERM reg_unregister_nif(ErlNifEnv *env, int argc,
                                const ERL_NIF_TERM argv[])
{
    tether_nif_res_t *res;
    tether_nif_key_t k;
    ErlNifBinary pid;
    int rc;

    if ((argc != 2 && argc != 3) || !get_reg(env, argv[0], &res) ||
        (argc == 3 && !enif_is_pid(env, argv[2])))
        return enif_make_badarg(env);
    if (!tether__nif_key_make(env, argv[1], &k))
        return tether__nif_error(env, TETHER_ENOTFOUND);
    if (argc == 3 && !enif_term_to_binary(env, argv[2], &pid)) {
        tether__nif_key_free(&k);
        return tether__nif_error(env, TETHER_ENOMEM);
    }
    enif_mutex_lock(res->lock);
    rc = argc == 2 ? tether_registry_unregister(res->reg, k.data, k.len)
                   : tether_registry_unregister_pid(res->reg, k.data, k.len,
                                                    pid.data, pid.size);
    enif_mutex_unlock(res->lock);
    if (argc == 3)
        enif_release_binary(&pid);
    tether__nif_key_free(&k);
    return tether__nif_ok(env, rc);
}

/* reg_holds(Engine, Name, Pid) -> boolean(): this node's own entry for
 * Name holds Pid (read under the registry's read lock). */
ERL_NIF_TERM reg_holds_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    tether_nif_res_t *res;
    tether_nif_key_t k;
    ErlNifBinary pid;
    int holds;

    if (argc != 3 || !get_reg(env, argv[0], &res) ||
        !enif_is_pid(env, argv[2]))
        return enif_make_badarg(env);
    if (!tether__nif_key_make(env, argv[1], &k))
        return ATOM(false);
    if (!enif_term_to_binary(env, argv[2], &pid)) {
        tether__nif_key_free(&k);
        return tether__nif_error(env, TETHER_ENOMEM);
    }
    enif_rwlock_rlock(res->rw);
    holds = tether_registry_holds(res->reg, k.data, k.len, pid.data, pid.size);
    enif_rwlock_runlock(res->rw);
    enif_release_binary(&pid);
    tether__nif_key_free(&k);
    return holds ? ATOM(true) : ATOM(false);
}

/*
 * reg_resolve(Engine, NameEtf :: binary(), KeepEtf :: binary()) -> ok |
 *   kept_own | {error, not_found | invalid}: the verdict of our
 * registrant's resolver on a conflict the engine asked us to resolve
 * ({tether_reg_resolve,
 * NameEtf, WinnerEtf, LoserEtf}); KeepEtf is one of those two pid
 * binaries, or <<>> for none (core/registry.h, tether_registry_resolve).
 * The bytes are the ones the engine handed out, so they match its keys.
 * kept_own: the pid kept lost its entry meanwhile, so ours stays.
 */
ERL_NIF_TERM reg_resolve_nif(ErlNifEnv *env, int argc,
                             const ERL_NIF_TERM argv[])
{
    tether_nif_res_t *res;
    ErlNifBinary name, keep;
    int rc;

    if (argc != 3 || !get_reg(env, argv[0], &res) ||
        !enif_inspect_binary(env, argv[1], &name) || name.size == 0 ||
        !enif_inspect_binary(env, argv[2], &keep))
        return enif_make_badarg(env);
    enif_mutex_lock(res->lock);
    rc = tether_registry_resolve(res->reg, name.data, name.size,
                                 keep.size ? keep.data : NULL, keep.size);
    enif_mutex_unlock(res->lock);
    return rc == 1 ? ATOM(kept_own) : tether__nif_ok(env, rc);
}

/*
 * reg_whereis(Engine, Name) -> pid() | undefined. Reads the table under
 * the registry's read lock only: never waits for the engine, and readers
 * run side by side.
 */
ERL_NIF_TERM reg_whereis_nif(ErlNifEnv *env, int argc,
                             const ERL_NIF_TERM argv[])
{
    tether_nif_res_t *res;
    uint8_t pid[TETHER_REG_PID_MAX];
    size_t plen = 0;
    ERL_NIF_TERM t;
    void *slot;
    tether_nif_key_t k;
    int rc;

    if (argc != 2 || !get_reg(env, argv[0], &res))
        return enif_make_badarg(env);
    if (!tether__nif_key_make(env, argv[1], &k))
        return ATOM(undefined);
    enif_rwlock_rlock(res->rw);
    if (tether_registry_whereis_data(res->reg, k.data, k.len, &slot) == 0) {
        t = enif_make_copy(env, ((pid_slot_t *)slot)->pid);
        enif_rwlock_runlock(res->rw);
        tether__nif_key_free(&k);
        return t;
    }
    rc = tether_registry_whereis(res->reg, k.data, k.len, pid, sizeof pid,
                                 &plen);
    enif_rwlock_runlock(res->rw);
    tether__nif_key_free(&k);
    if (rc < 0 || enif_binary_to_term(env, pid, plen, &t, 0) == 0)
        return ATOM(undefined);
    return t;
}

/* Collects entries as terms (foreach visitor). */
typedef struct collect {
    ErlNifEnv *env;
    ERL_NIF_TERM list;
    int full; /* {Name, Pid, Owner, Stamp, Method} rather than Name */
} collect_t;

static void collect_visit(void *ctx, const uint8_t *name, size_t nlen,
                          const uint8_t *pid, size_t plen, const char *owner,
                          uint64_t stamp, int method)
{
    collect_t *c = ctx;
    ERL_NIF_TERM n, p, e;

    if (enif_binary_to_term(c->env, name, nlen, &n, 0) == 0)
        return;
    if (!c->full) {
        c->list = enif_make_list_cell(c->env, n, c->list);
        return;
    }
    if (enif_binary_to_term(c->env, pid, plen, &p, 0) == 0)
        return;
    e = enif_make_tuple5(c->env, n, p, tether__nif_make_name(c->env, owner),
                         enif_make_uint64(c->env, stamp),
                         enif_make_int(c->env, method));
    c->list = enif_make_list_cell(c->env, e, c->list);
}

static ERL_NIF_TERM reg_collect(ErlNifEnv *env, int argc,
                                const ERL_NIF_TERM argv[], int full)
{
    tether_nif_res_t *res;
    collect_t c = {env, enif_make_list(env, 0), full};

    if (argc != 1 || !get_reg(env, argv[0], &res))
        return enif_make_badarg(env);
    enif_rwlock_rlock(res->rw);
    tether_registry_foreach(res->reg, collect_visit, &c);
    enif_rwlock_runlock(res->rw);
    return c.list;
}

/* reg_names(Engine) -> [Name]: every registered name (read lock only). */
ERL_NIF_TERM reg_names_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    return reg_collect(env, argc, argv, 0);
}

/* reg_entries(Engine) -> [{Name, Pid, Owner :: binary(), Stamp, Method}]:
 * the whole table, for tests and debugging. */
ERL_NIF_TERM reg_entries_nif(ErlNifEnv *env, int argc,
                             const ERL_NIF_TERM argv[])
{
    return reg_collect(env, argc, argv, 1);
}

/* The map #{Key => Value} of n counters named by k (atoms), or
 * {error, enomem}. */

/* reg_info(Engine) -> #{count, digest, added, removed, conflicts, lost,
 * syncs_sent, pulls_sent, bad_msgs, stale_msgs}. */
ERL_NIF_TERM reg_info_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    tether_nif_res_t *res;
    tether_registry_stats_t st;
    uint64_t v[10];
    static const char *const k[10] = {
        "count", "digest",     "added",      "removed",  "conflicts",
        "lost",  "syncs_sent", "pulls_sent", "bad_msgs", "stale_msgs"};

    if (argc != 1 || !get_reg(env, argv[0], &res))
        return enif_make_badarg(env);
    enif_mutex_lock(res->lock);
    st = *tether_registry_stats(res->reg);
    v[0] = tether_registry_count(res->reg);
    v[1] = tether_registry_digest(res->reg);
    enif_mutex_unlock(res->lock);
    v[2] = st.added, v[3] = st.removed, v[4] = st.conflicts, v[5] = st.lost;
    v[6] = st.syncs_sent, v[7] = st.pulls_sent, v[8] = st.bad_msgs;
    v[9] = st.stale_msgs;
    return tether__nif_counters(env, k, v, 10);
}

void tether__nif_sealed_cb(void *ctx, const char *peer, const uint8_t *bytes,
                           size_t len)
{
    tether_nif_sealed_t *a = ctx;
    ERL_NIF_TERM p =
        tether__nif_make_bytes(a->env, (const uint8_t *)peer, strlen(peer));

    a->list = enif_make_list_cell(
        a->env,
        enif_make_tuple2(a->env, p, tether__nif_make_bytes(a->env, bytes, len)),
        a->list);
}
