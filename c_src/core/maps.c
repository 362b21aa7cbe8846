/*
 * core/maps.c: replicated last-writer-wins maps (see core/maps.h for the
 * model, the messages and the anti-entropy rounds).
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "core/codec.h"
#include "core/hlc.h"
#include "core/maps.h"
#include "core/module.h"

#define FINE_N          (1u << TETHER_MAPS_FINE_BITS)
#define DIGEST_PER      64 /* entries per digest bucket aimed at */
#define DIGEST_BITS_MAX 11
#define TAB_MIN         16

/* One key's one version: the last write seen, a value or a tombstone. */
typedef struct entry {
    struct entry *next; /* hash chain */
    uint64_t khash;     /* FNV-1a of the key bytes */
    uint64_t stamp;     /* the write's HLC stamp */
    uint32_t node;      /* the writer, an index in m->nodes */
    uint32_t klen;
    uint8_t *val; /* the value's ETF, NULL for a tombstone */
    size_t vlen;
    uint8_t key[];
} entry_t;

/* A node name met in writes or as a host, interned: entries hold its index. */
typedef struct node {
    char *name;
    uint64_t hash;
} node_t;

struct tether_map {
    tether_maps_t *m;
    uint8_t *name;
    size_t nlen;
    entry_t **tab; /* chained by khash & mask */
    size_t mask;
    size_t n;    /* entries, tombstones included */
    size_t live; /* entries with a value */
    uint64_t fine[FINE_N];
    uint32_t *hosts; /* other nodes known to host the map */
    size_t nhosts, caphosts;
    uint64_t ttl_ms;
    int notify;
    int persist; /* records for the shell's log */
    void *shell;
};

struct tether_maps {
    tether_engine_t *eng;
    tether_maps_config_t cfg;
    node_t *nodes; /* [0] is us */
    size_t nnodes, capnodes;
    tether_map_t *maps[TETHER_MAPS_MAX];
    size_t nmaps;
    uint64_t next_sync;
    tether_maps_stats_t stats;
    /* While tether_maps_write() applies on the direct path: where the
     * write's record goes (sealed() with peer NULL). */
    tether_engine_sealed_t direct;
    void *direct_ctx;
    int loading; /* tether_maps_load(): no record for what is applied */
};

/* ------------------------------------------------------------- helpers */

static uint64_t mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static uint64_t key_hash(const uint8_t *key, size_t klen)
{
    return mix(tether__fnv1a(TETHER_FNV_OFFSET, key, klen));
}

/* The hash of a write: what two hosts compare; the same on every host. */
static uint64_t entry_hash(const tether_maps_t *m, const entry_t *e)
{
    return mix(e->khash ^ mix(e->stamp ^ m->nodes[e->node].hash) ^
               (e->val == NULL ? UINT64_C(0x7f4a7c15) : 0));
}

TETHER__MODULE_LOCK_HOOKS(tether_maps_t)

/* The index of node `name`, interned on first sight; -1 on no memory. */
static int node_get(tether_maps_t *m, const char *name)
{
    for (size_t i = 0; i < m->nnodes; i++)
        if (strcmp(m->nodes[i].name, name) == 0)
            return (int)i;
    if (m->nnodes == m->capnodes) {
        size_t cap = m->capnodes ? m->capnodes * 2 : 8;
        node_t *v = realloc(m->nodes, cap * sizeof *v);
        if (v == NULL)
            return -1;
        m->nodes = v;
        m->capnodes = cap;
    }
    m->nodes[m->nnodes].name = strdup(name);
    if (m->nodes[m->nnodes].name == NULL)
        return -1;
    m->nodes[m->nnodes].hash =
        mix(tether__fnv1a(TETHER_FNV_OFFSET, name, strlen(name)));
    return (int)m->nnodes++;
}

/* 1 if write (stamp, node a) is later than (stamp2, node b). */
static int later(const tether_maps_t *m, uint64_t stamp, uint32_t a,
                 uint64_t stamp2, uint32_t b)
{
    if (stamp != stamp2)
        return stamp > stamp2;
    return strcmp(m->nodes[a].name, m->nodes[b].name) > 0;
}

static entry_t *find(const tether_map_t *map, uint64_t kh, const uint8_t *key,
                     size_t klen)
{
    for (entry_t *e = map->tab[kh & map->mask]; e; e = e->next)
        if (e->khash == kh && e->klen == klen && memcmp(e->key, key, klen) == 0)
            return e;
    return NULL;
}

/* Doubles map's table, under the write lock (readers walk the chains). */
static void grow(tether_map_t *map)
{
    size_t cap = (map->mask + 1) * 2;
    entry_t **tab = calloc(cap, sizeof *tab);

    if (tab == NULL)
        return; /* longer chains, still correct */
    wlock(map->m);
    for (size_t i = 0; i <= map->mask; i++) {
        entry_t *e = map->tab[i], *next;
        for (; e; e = next) {
            next = e->next;
            e->next = tab[e->khash & (cap - 1)];
            tab[e->khash & (cap - 1)] = e;
        }
    }
    free(map->tab);
    map->tab = tab;
    map->mask = cap - 1;
    wunlock(map->m);
}

static void fine_xor(tether_map_t *map, const entry_t *e)
{
    map->fine[e->khash >> (64 - TETHER_MAPS_FINE_BITS)] ^=
        entry_hash(map->m, e);
}

/* Tells the shell key's new visible value (NULL: gone): its hook, and an
 * action when the map has subscribers. Under the write lock. */
static void tell(tether_map_t *map, const uint8_t *key, size_t klen,
                 const uint8_t *val, size_t vlen)
{
    tether_maps_t *m = map->m;

    if (m->cfg.changed)
        m->cfg.changed(m->cfg.ctx, map, key, klen, val, vlen);
    if (map->notify) {
        tether_action_t a = {.kind = TETHER_ACT_MAP};
        a.u.map.name.ptr = map->name;
        a.u.map.name.len = map->nlen;
        a.u.map.key.ptr = key;
        a.u.map.key.len = klen;
        a.u.map.value.ptr = val;
        a.u.map.value.len = val ? vlen : 0;
        a.u.map.removed = val == NULL;
        (void)tether__engine_push(m->eng, &a);
    }
}

static int encode_record(const tether_maps_t *m, ei_x_buff *x,
                         const uint8_t *key, size_t klen, uint64_t stamp,
                         uint32_t node, const uint8_t *val, size_t vlen);

/* Hands the shell the record of a write just applied to a persisted map:
 * to the direct-path caller, or as an action. A record that cannot be
 * encoded (out of memory) is counted: anti-entropy repairs the log's
 * holder after a restart. */
static void store(tether_map_t *map, const uint8_t *key, size_t klen,
                  uint64_t stamp, uint32_t node, const uint8_t *val,
                  size_t vlen)
{
    tether_maps_t *m = map->m;
    ei_x_buff x;

    if (!map->persist || m->loading)
        return;
    if (encode_record(m, &x, key, klen, stamp, node, val, vlen) < 0) {
        m->stats.store_failed++;
        return;
    }
    if (m->direct) {
        m->direct(m->direct_ctx, NULL, (const uint8_t *)x.buff,
                  (size_t)x.index);
    } else {
        tether_action_t a = {.kind = TETHER_ACT_MAP_STORE};
        a.u.map_store.name.ptr = map->name;
        a.u.map_store.name.len = map->nlen;
        a.u.map_store.rec.ptr = (const uint8_t *)x.buff;
        a.u.map_store.rec.len = (size_t)x.index;
        if (tether__engine_push(m->eng, &a) < 0)
            m->stats.store_failed++;
    }
    ei_x_free(&x);
}

static void unlink_entry(tether_map_t *map, entry_t *e)
{
    entry_t **pp = &map->tab[e->khash & map->mask];

    while (*pp != e)
        pp = &(*pp)->next;
    *pp = e->next;
}

/* 1 if a tombstone stamped `stamp` is past its map's ttl now. */
static int tomb_expired(const tether_map_t *map, uint64_t stamp)
{
    uint64_t wall = tether__engine_wall(map->m->eng);

    return tether__hlc_wall(stamp) + map->ttl_ms < wall;
}

/*
 * Applies one write (val NULL: a remove) if it is later than what key
 * holds. Returns 1 if applied, 0 if stale, or TETHER_ENOMEM.
 */
static int apply(tether_map_t *map, const uint8_t *key, size_t klen,
                 uint64_t kh, uint64_t stamp, uint32_t node, const uint8_t *val,
                 size_t vlen)
{
    tether_maps_t *m = map->m;
    entry_t *e = find(map, kh, key, klen);
    uint8_t *copy = NULL;
    int was_live, same;

    if (e && !later(m, stamp, node, e->stamp, e->node)) {
        m->stats.stale++;
        return 0;
    }
    if (val == NULL && tomb_expired(map, stamp)) {
        /* A remove older than the ttl: it still removes an older value,
         * but is not kept (everyone collected it already). */
        if (e == NULL || e->val == NULL) {
            m->stats.stale++;
            return 0;
        }
    }
    if (val) {
        copy = malloc(vlen ? vlen : 1);
        if (copy == NULL)
            return TETHER_ENOMEM;
        memcpy(copy, val, vlen);
    }
    if (e == NULL) {
        e = malloc(sizeof *e + klen);
        if (e == NULL) {
            free(copy);
            return TETHER_ENOMEM;
        }
        memset(e, 0, sizeof *e);
        e->khash = kh;
        e->klen = (uint32_t)klen;
        memcpy(e->key, key, klen);
        wlock(m);
        e->next = map->tab[kh & map->mask];
        map->tab[kh & map->mask] = e;
        map->n++;
        was_live = 0;
        same = 0;
    } else {
        wlock(m);
        fine_xor(map, e);
        was_live = e->val != NULL;
        same = was_live && val && e->vlen == vlen &&
               memcmp(e->val, val, vlen) == 0;
        free(e->val);
        map->live -= was_live;
    }
    e->stamp = stamp;
    e->node = node;
    e->val = copy;
    e->vlen = val ? vlen : 0;
    map->live += val != NULL;
    store(map, key, klen, stamp, node, val, vlen);
    if (val == NULL && tomb_expired(map, stamp)) {
        unlink_entry(map, e);
        map->n--;
        tell(map, e->key, e->klen, NULL, 0);
        free(e);
    } else {
        fine_xor(map, e);
        if ((was_live || val) && !same)
            tell(map, e->key, e->klen, e->val, e->vlen);
    }
    wunlock(m);
    m->stats.applied++;
    if (map->n > 2 * (map->mask + 1))
        grow(map);
    return 1;
}

/* ------------------------------------------------------------ encoding */

static int encode_entry(const tether_maps_t *m, ei_x_buff *x, const entry_t *e)
{
    if (ei_x_encode_tuple_header(x, 4) < 0 ||
        ei_x_encode_binary(x, e->key, (long)e->klen) < 0 ||
        ei_x_encode_ulonglong(x, e->stamp) < 0 ||
        tether__etf_encode_name(x, m->nodes[e->node].name) < 0)
        return TETHER_ENOMEM;
    if (e->val == NULL)
        return ei_x_encode_atom(x, "remove") < 0 ? TETHER_ENOMEM : 0;
    return ei_x_encode_binary(x, e->val, (long)e->vlen) < 0 ? TETHER_ENOMEM : 0;
}

/* A persisted record: {Key, Stamp, Node, Val | remove} with the version
 * byte (the entry as map_put carries it). */
static int encode_record(const tether_maps_t *m, ei_x_buff *x,
                         const uint8_t *key, size_t klen, uint64_t stamp,
                         uint32_t node, const uint8_t *val, size_t vlen)
{
    if (ei_x_new_with_version(x) < 0)
        return TETHER_ENOMEM;
    if (ei_x_encode_tuple_header(x, 4) < 0 ||
        ei_x_encode_binary(x, key, (long)klen) < 0 ||
        ei_x_encode_ulonglong(x, stamp) < 0 ||
        tether__etf_encode_name(x, m->nodes[node].name) < 0 ||
        (val ? ei_x_encode_binary(x, val, (long)vlen)
             : ei_x_encode_atom(x, "remove")) < 0) {
        ei_x_free(x);
        return TETHER_ENOMEM;
    }
    return 0;
}

/* Makes room for n more bytes in x at once: ei_x grows a buffer by what
 * each encode needs, so a batch of many entries would copy it each time. */
static int reserve(ei_x_buff *x, size_t n)
{
    char *b;

    if ((size_t)x->buffsz >= (size_t)x->index + n)
        return 0;
    b = realloc(x->buff, (size_t)x->index + n);
    if (b == NULL)
        return TETHER_ENOMEM;
    x->buff = b;
    x->buffsz = (int)((size_t)x->index + n);
    return 0;
}

static int begin_named(ei_x_buff *x, int arity, const char *tag,
                       const tether_map_t *map)
{
    if (tether__etf_begin(x, arity, tag) < 0)
        return TETHER_ENOMEM;
    if (ei_x_encode_binary(x, map->name, (long)map->nlen) < 0) {
        ei_x_free(x);
        return TETHER_ENOMEM;
    }
    return 0;
}

/* Sends x to peer (flags as tether_engine_send), counting anti-entropy. */
static void send_to(tether_maps_t *m, const char *peer, const ei_x_buff *x,
                    unsigned flags, int ae)
{
    (void)tether_engine_send(m->eng, peer, TETHER_MSG_MAPS,
                             (const uint8_t *)x->buff, (size_t)x->index, flags);
    if (ae)
        m->stats.ae_bytes += (uint64_t)x->index;
}

/* An entry's encoded size in a map_put, at most. */
static size_t entry_bytes(const entry_t *e)
{
    return 64 + e->klen + e->vlen + TETHER_NODE_NAME_MAX;
}

/* Sends entries v[0..n) of map to peer as map_put messages of about
 * TETHER_MAPS_BATCH_BYTES each. */
static void send_entries(tether_map_t *map, const char *peer, entry_t **v,
                         size_t n)
{
    tether_maps_t *m = map->m;
    size_t i = 0;

    while (i < n) {
        ei_x_buff x;
        size_t k = 0, bytes = 0;

        while (i + k < n && (k == 0 || bytes < TETHER_MAPS_BATCH_BYTES))
            bytes += entry_bytes(v[i + k++]);
        if (begin_named(&x, 3, "map_put", map) < 0)
            return;
        if (reserve(&x, bytes + 16) < 0 ||
            ei_x_encode_list_header(&x, (long)k) < 0) {
            ei_x_free(&x);
            return;
        }
        for (size_t j = 0; j < k; j++)
            if (encode_entry(m, &x, v[i + j]) < 0) {
                ei_x_free(&x);
                return;
            }
        if (ei_x_encode_empty_list(&x) == 0)
            send_to(m, peer, &x, 0, 1);
        m->stats.ae_entries += k;
        i += k;
        ei_x_free(&x);
    }
}

/* ------------------------------------------------------------- hosting */

static int host_index(const tether_map_t *map, uint32_t node)
{
    for (size_t i = 0; i < map->nhosts; i++)
        if (map->hosts[i] == node)
            return (int)i;
    return -1;
}

static int host_add(tether_map_t *map, uint32_t node)
{
    if (host_index(map, node) >= 0)
        return 0;
    if (map->nhosts == map->caphosts) {
        size_t cap = map->caphosts ? map->caphosts * 2 : 4;
        uint32_t *v = realloc(map->hosts, cap * sizeof *v);
        if (v == NULL)
            return TETHER_ENOMEM;
        map->hosts = v;
        map->caphosts = cap;
    }
    map->hosts[map->nhosts++] = node;
    return 1;
}

static void host_del(tether_map_t *map, uint32_t node)
{
    int i = host_index(map, node);

    if (i >= 0)
        map->hosts[i] = map->hosts[--map->nhosts];
}

tether_map_t *tether_maps_find(const tether_maps_t *m, const uint8_t *name,
                               size_t nlen)
{
    for (size_t i = 0; i < m->nmaps; i++)
        if (m->maps[i]->nlen == nlen &&
            memcmp(m->maps[i]->name, name, nlen) == 0)
            return m->maps[i];
    return NULL;
}

/* {map_hosts, [Name]}: every map we host. */
static int encode_hosts(const tether_maps_t *m, ei_x_buff *x)
{
    if (tether__etf_begin(x, 2, "map_hosts") < 0)
        return TETHER_ENOMEM;
    if (m->nmaps && ei_x_encode_list_header(x, (long)m->nmaps) < 0)
        goto fail;
    for (size_t i = 0; i < m->nmaps; i++)
        if (ei_x_encode_binary(x, m->maps[i]->name, (long)m->maps[i]->nlen) < 0)
            goto fail;
    if (ei_x_encode_empty_list(x) < 0)
        goto fail;
    return 0;
fail:
    ei_x_free(x);
    return TETHER_ENOMEM;
}

static void send_hosts(tether_maps_t *m, const char *peer)
{
    ei_x_buff x;

    if (encode_hosts(m, &x) < 0)
        return;
    if (peer)
        send_to(m, peer, &x, TETHER_SEND_STATE, 0);
    else
        (void)tether__engine_broadcast(m->eng, TETHER_MSG_MAPS,
                                       (const uint8_t *)x.buff, (size_t)x.index,
                                       TETHER_SEND_STATE);
    ei_x_free(&x);
}

static void free_entries(tether_map_t *map, int tell_shell)
{
    for (size_t i = 0; map->tab && i <= map->mask; i++) {
        entry_t *e = map->tab[i], *next;
        for (; e; e = next) {
            next = e->next;
            if (tell_shell && e->val)
                tell(map, e->key, e->klen, NULL, 0);
            free(e->val);
            free(e);
        }
    }
    free(map->tab);
    map->tab = NULL;
}

static void map_free(tether_map_t *map)
{
    if (map == NULL)
        return;
    free_entries(map, 0);
    free(map->hosts);
    free(map->name);
    free(map);
}

int tether_maps_host(tether_maps_t *m, const uint8_t *name, size_t nlen,
                     const tether_map_opts_t *opts, tether_map_t **out)
{
    tether_map_t *map;

    if (m == NULL || name == NULL || nlen == 0 || nlen > TETHER_MAPS_NAME_MAX)
        return TETHER_EINVAL;
    map = tether_maps_find(m, name, nlen);
    if (map == NULL) {
        if (m->nmaps == TETHER_MAPS_MAX)
            return TETHER_ETOOBIG;
        map = calloc(1, sizeof *map);
        if (map == NULL)
            return TETHER_ENOMEM;
        map->m = m;
        map->name = malloc(nlen);
        map->tab = calloc(TAB_MIN, sizeof *map->tab);
        if (map->name == NULL || map->tab == NULL) {
            map_free(map);
            return TETHER_ENOMEM;
        }
        memcpy(map->name, name, nlen);
        map->nlen = nlen;
        map->mask = TAB_MIN - 1;
        map->ttl_ms = opts && opts->tombstone_ttl_ms
                          ? opts->tombstone_ttl_ms
                          : TETHER_MAPS_DEFAULT_TOMB_TTL_MS;
        map->persist = opts && opts->persist;
        wlock(m);
        m->maps[m->nmaps++] = map;
        wunlock(m);
        send_hosts(m, NULL);
    }
    if (out)
        *out = map;
    return 0;
}

int tether_maps_unhost(tether_maps_t *m, const uint8_t *name, size_t nlen)
{
    tether_map_t *map = m ? tether_maps_find(m, name, nlen) : NULL;

    if (map == NULL)
        return TETHER_ENOTFOUND;
    wlock(m);
    for (size_t i = 0; i < m->nmaps; i++)
        if (m->maps[i] == map)
            m->maps[i] = m->maps[--m->nmaps];
    free_entries(map, 1);
    wunlock(m);
    map_free(map);
    send_hosts(m, NULL);
    return 0;
}

/* -------------------------------------------------------------- writes */

int tether_maps_write(tether_maps_t *m, tether_map_t *map, const uint8_t *key,
                      size_t klen, const uint8_t *val, size_t vlen,
                      tether_engine_sealed_t sealed, void *ctx)
{
    uint64_t stamp, kh;
    ei_x_buff x;
    entry_t *e;
    int rc;

    if (m == NULL || map == NULL || key == NULL || klen == 0)
        return TETHER_EINVAL;
    if (klen > TETHER_MAPS_KEY_MAX || (val && vlen > TETHER_MAPS_VALUE_MAX))
        return TETHER_ETOOBIG;
    if (tether__etf_validate((const char *)key, klen) < 0 ||
        (val && tether__etf_validate((const char *)val, vlen) < 0))
        return TETHER_EINVAL;
    rc = tether__engine_stamp(m->eng, &stamp);
    if (rc < 0)
        return rc;
    kh = key_hash(key, klen);
    m->direct = sealed;
    m->direct_ctx = ctx;
    rc = apply(map, key, klen, kh, stamp, 0, val, vlen);
    m->direct = NULL;
    m->direct_ctx = NULL;
    if (rc < 0)
        return rc;
    e = find(map, kh, key, klen);
    if (e == NULL || map->nhosts == 0)
        return 0; /* an expired remove, or no one to tell */
    if (begin_named(&x, 3, "map_put", map) < 0)
        return TETHER_ENOMEM;
    if (ei_x_encode_list_header(&x, 1) < 0 || encode_entry(m, &x, e) < 0 ||
        ei_x_encode_empty_list(&x) < 0) {
        ei_x_free(&x);
        return TETHER_ENOMEM;
    }
    for (size_t i = 0; i < map->nhosts; i++) {
        const char *peer = m->nodes[map->hosts[i]].name;
        uint8_t *env = NULL;
        size_t elen = 0;

        if (sealed == NULL) {
            send_to(m, peer, &x, 0, 0);
            continue;
        }
        if (tether_engine_seal(m->eng, peer, TETHER_MSG_MAPS,
                               (const uint8_t *)x.buff, (size_t)x.index, &env,
                               &elen) == 0)
            sealed(ctx, peer, env, elen);
        free(env);
    }
    ei_x_free(&x);
    return 0;
}

/* --------------------------------------------------------------- reads */

int tether_maps_get(const tether_map_t *map, const uint8_t *key, size_t klen,
                    const uint8_t **val, size_t *vlen)
{
    const entry_t *e;

    if (map == NULL || key == NULL)
        return 0;
    e = find(map, key_hash(key, klen), key, klen);
    if (e == NULL || e->val == NULL)
        return 0;
    *val = e->val;
    *vlen = e->vlen;
    return 1;
}

void tether_maps_visit(const tether_map_t *map,
                       void (*fn)(void *ctx, const uint8_t *key, size_t klen,
                                  const uint8_t *val, size_t vlen),
                       void *ctx)
{
    for (size_t i = 0; map && i <= map->mask; i++)
        for (const entry_t *e = map->tab[i]; e; e = e->next)
            if (e->val)
                fn(ctx, e->key, e->klen, e->val, e->vlen);
}

size_t tether_maps_size(const tether_map_t *map)
{
    return map ? map->live : 0;
}

const uint8_t *tether_maps_name(const tether_map_t *map, size_t *len)
{
    *len = map->nlen;
    return map->name;
}

void **tether_maps_shell(tether_map_t *map)
{
    return &map->shell;
}

void tether_maps_set_notify(tether_map_t *map, int on)
{
    if (map)
        map->notify = on != 0;
}

int tether_maps_notify(const tether_map_t *map)
{
    return map ? map->notify : 0;
}

size_t tether_maps_count(const tether_maps_t *m)
{
    return m ? m->nmaps : 0;
}

tether_map_t *tether_maps_at(const tether_maps_t *m, size_t i)
{
    return m && i < m->nmaps ? m->maps[i] : NULL;
}

const tether_maps_stats_t *tether_maps_stats(const tether_maps_t *m)
{
    return &m->stats;
}

uint64_t tether__maps_digest(const tether_map_t *map)
{
    uint64_t h = 0;

    for (size_t i = 0; i < FINE_N; i++)
        h ^= map->fine[i];
    return h;
}

size_t tether__maps_entries(const tether_map_t *map)
{
    return map->n;
}

size_t tether__maps_hosts(const tether_map_t *map)
{
    return map->nhosts;
}

/* -------------------------------------------------------- anti-entropy */

/* The digest bits for n entries: about DIGEST_PER entries a bucket. */
static int digest_bits(size_t n)
{
    int b = 0;

    while (b < DIGEST_BITS_MAX && ((size_t)DIGEST_PER << b) < n)
        b++;
    return b;
}

/* Bucket j of 2^bits: the XOR of its fine buckets. */
static uint64_t bucket(const tether_map_t *map, int bits, uint32_t j)
{
    uint32_t span = FINE_N >> bits;
    uint64_t h = 0;

    for (uint32_t i = j * span; i < (j + 1) * span; i++)
        h ^= map->fine[i];
    return h;
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static void send_digest(tether_map_t *map, const char *peer, int bits)
{
    size_t nb = (size_t)1 << bits;
    uint8_t *h = malloc(nb * 8);
    ei_x_buff x;

    if (h == NULL)
        return;
    for (uint32_t j = 0; j < nb; j++)
        put_be64(h + 8 * j, bucket(map, bits, j));
    if (begin_named(&x, 4, "map_digest", map) == 0) {
        if (ei_x_encode_long(&x, bits) == 0 &&
            ei_x_encode_binary(&x, h, (long)(nb * 8)) == 0) {
            send_to(map->m, peer, &x, TETHER_SEND_STATE, 1);
            map->m->stats.ae_rounds++;
        }
        ei_x_free(&x);
    }
    free(h);
}

static uint32_t bucket_of(uint64_t kh, int bits)
{
    return bits == 0 ? 0 : (uint32_t)(kh >> (64 - bits));
}

/* A peer's digest: answer the pairs of the buckets that differ. */
static int on_digest(tether_map_t *map, const char *from, const char *buf,
                     int *idx)
{
    uint64_t bits;
    const uint8_t *h;
    size_t hlen, nb, ndiff = 0;
    uint32_t *diff;
    ei_x_buff x;
    int rc = TETHER_ENOMEM;

    if (tether__etf_decode_u64(buf, idx, &bits) < 0 ||
        bits > TETHER_MAPS_FINE_BITS ||
        tether__etf_decode_bin_ref(buf, idx, &h, &hlen) < 0 ||
        hlen != ((size_t)8 << bits))
        return TETHER_EPROTO;
    if (digest_bits(map->n) > (int)bits) {
        /* We hold many more keys: compare at our finer grain instead. */
        send_digest(map, from, digest_bits(map->n));
        return 0;
    }
    nb = (size_t)1 << bits;
    diff = malloc(nb * sizeof *diff);
    if (diff == NULL)
        return TETHER_ENOMEM;
    for (uint32_t j = 0; j < nb; j++)
        if (bucket(map, (int)bits, j) != get_be64(h + 8 * j))
            diff[ndiff++] = j;
    if (ndiff == 0) {
        free(diff);
        return 0;
    }
    /* Pairs per differing bucket, from one walk of the table. */
    {
        uint8_t **pairs = calloc(ndiff, sizeof *pairs);
        size_t *plen = calloc(ndiff, sizeof *plen), *pcap;
        int32_t *slot = malloc(nb * sizeof *slot);

        pcap = calloc(ndiff, sizeof *pcap);
        if (pairs == NULL || plen == NULL || pcap == NULL || slot == NULL)
            goto out;
        for (size_t j = 0; j < nb; j++)
            slot[j] = -1;
        for (size_t k = 0; k < ndiff; k++)
            slot[diff[k]] = (int32_t)k;
        for (size_t i = 0; i <= map->mask; i++)
            for (entry_t *e = map->tab[i]; e; e = e->next) {
                int32_t s = slot[bucket_of(e->khash, (int)bits)];
                if (s < 0)
                    continue;
                if (plen[s] + 16 > pcap[s]) {
                    size_t cap = pcap[s] ? pcap[s] * 2 : 256;
                    uint8_t *v = realloc(pairs[s], cap);
                    if (v == NULL)
                        goto out;
                    pairs[s] = v;
                    pcap[s] = cap;
                }
                put_be64(pairs[s] + plen[s], e->khash);
                put_be64(pairs[s] + plen[s] + 8, entry_hash(map->m, e));
                plen[s] += 16;
            }
        if (begin_named(&x, 4, "map_hashes", map) == 0) {
            int ok = ei_x_encode_long(&x, (long)bits) == 0 &&
                     ei_x_encode_list_header(&x, (long)ndiff) == 0;
            for (size_t k = 0; ok && k < ndiff; k++)
                ok = ei_x_encode_tuple_header(&x, 2) == 0 &&
                     ei_x_encode_ulong(&x, diff[k]) == 0 &&
                     ei_x_encode_binary(&x, pairs[k] ? pairs[k] : (uint8_t *)"",
                                        (long)plen[k]) == 0;
            if (ok && ei_x_encode_empty_list(&x) == 0) {
                send_to(map->m, from, &x, TETHER_SEND_STATE, 1);
                rc = 0;
            }
            ei_x_free(&x);
        }
    out:
        for (size_t k = 0; pairs && k < ndiff; k++)
            free(pairs[k]);
        free(pairs);
        free(plen);
        free(pcap);
        free(slot);
    }
    free(diff);
    return rc;
}

/* Sorted (khash, ehash) pairs as u64[2] for bsearch on both halves. */
static int cmp_pair(const void *a, const void *b)
{
    const uint64_t *x = a, *y = b;

    if (x[0] != y[0])
        return x[0] < y[0] ? -1 : 1;
    return x[1] < y[1] ? -1 : x[1] > y[1];
}

/* The peer's pairs of the differing buckets: send ours that it lacks,
 * pull its own that we lack. */
static int on_hashes(tether_map_t *map, const char *from, const char *buf,
                     int *idx)
{
    uint64_t bits, b;
    uint64_t *theirs = NULL; /* pairs */
    uint8_t *in = NULL;      /* bucket listed */
    size_t nt = 0, capt = 0, ns = 0, np = 0;
    entry_t **send = NULL;
    uint64_t *pull = NULL;
    int count, rc = TETHER_EPROTO;

    if (tether__etf_decode_u64(buf, idx, &bits) < 0 ||
        bits > TETHER_MAPS_FINE_BITS || tether__etf_list(buf, idx, &count) < 0)
        return TETHER_EPROTO;
    in = calloc((size_t)1 << bits, 1);
    if (in == NULL)
        return TETHER_ENOMEM;
    for (int k = 0; k < count; k++) {
        const uint8_t *p;
        size_t plen;
        if (tether__etf_expect_tuple(buf, idx, 2) < 0 ||
            tether__etf_decode_u64(buf, idx, &b) < 0 ||
            b >= ((uint64_t)1 << bits) ||
            tether__etf_decode_bin_ref(buf, idx, &p, &plen) < 0 || plen % 16)
            goto out;
        in[b] = 1;
        if (nt + plen / 16 > capt) {
            size_t cap = (nt + plen / 16) * 2;
            uint64_t *v = realloc(theirs, cap * 16);
            if (v == NULL) {
                rc = TETHER_ENOMEM;
                goto out;
            }
            theirs = v;
            capt = cap;
        }
        for (size_t i = 0; i < plen; i += 16) {
            theirs[2 * nt] = get_be64(p + i);
            theirs[2 * nt + 1] = get_be64(p + i + 8);
            nt++;
        }
    }
    if (tether__etf_list_end(buf, idx, count) < 0)
        goto out;
    if (nt)
        qsort(theirs, nt, 16, cmp_pair);
    rc = TETHER_ENOMEM;
    send = malloc((map->n + 1) * sizeof *send);
    pull = malloc((nt + 1) * sizeof *pull);
    if (send == NULL || pull == NULL)
        goto out;
    /* Ours that differ: not among their pairs. */
    for (size_t i = 0; i <= map->mask; i++)
        for (entry_t *e = map->tab[i]; e; e = e->next) {
            uint64_t pair[2] = {e->khash, entry_hash(map->m, e)};
            if (in[bucket_of(e->khash, (int)bits)] &&
                (nt == 0 || bsearch(pair, theirs, nt, 16, cmp_pair) == NULL))
                send[ns++] = e;
        }
    /* Theirs that differ: no entry of ours with that pair. */
    for (size_t i = 0; i < nt; i++) {
        int same = 0;
        for (entry_t *e = map->tab[theirs[2 * i] & map->mask]; e; e = e->next)
            if (e->khash == theirs[2 * i] &&
                entry_hash(map->m, e) == theirs[2 * i + 1])
                same = 1;
        if (!same && (np == 0 || pull[np - 1] != theirs[2 * i]))
            pull[np++] = theirs[2 * i];
    }
    send_entries(map, from, send, ns);
    if (np) {
        ei_x_buff x;
        uint8_t *kb = malloc(np * 8);
        if (kb == NULL)
            goto out;
        for (size_t i = 0; i < np; i++)
            put_be64(kb + 8 * i, pull[i]);
        if (begin_named(&x, 3, "map_pull", map) == 0) {
            if (ei_x_encode_binary(&x, kb, (long)(np * 8)) == 0)
                send_to(map->m, from, &x, TETHER_SEND_STATE, 1);
            ei_x_free(&x);
        }
        free(kb);
    }
    rc = 0;
out:
    free(in);
    free(theirs);
    free(send);
    free(pull);
    return rc;
}

static int on_pull(tether_map_t *map, const char *from, const char *buf,
                   int *idx)
{
    const uint8_t *p;
    size_t plen, ns = 0, cap = 0;
    entry_t **send = NULL;

    if (tether__etf_decode_bin_ref(buf, idx, &p, &plen) < 0 || plen % 8)
        return TETHER_EPROTO;
    for (size_t i = 0; i < plen; i += 8) {
        uint64_t kh = get_be64(p + i);
        for (entry_t *e = map->tab[kh & map->mask]; e; e = e->next) {
            if (e->khash != kh)
                continue;
            if (ns == cap) {
                size_t c = cap ? cap * 2 : 16;
                entry_t **v = realloc(send, c * sizeof *v);
                if (v == NULL) {
                    free(send);
                    return TETHER_ENOMEM;
                }
                send = v;
                cap = c;
            }
            send[ns++] = e;
        }
    }
    send_entries(map, from, send, ns);
    free(send);
    return 0;
}

/* One entry of a map_put (or a persisted record), decoded in place. */
typedef struct wire_entry {
    const uint8_t *key, *val; /* val NULL: remove */
    size_t klen, vlen;
    uint64_t stamp;
    char node[TETHER_NODE_NAME_MAX + 1];
} wire_entry_t;

/*
 * Decodes {Key, Stamp, Node, Val | remove} at *idx. Returns 0, 1 for an
 * entry well framed but not acceptable (a bad key or value: skip it), or
 * TETHER_EPROTO.
 */
static int decode_entry(const char *buf, int *idx, wire_entry_t *w)
{
    int type, size;

    w->val = NULL;
    w->vlen = 0;
    if (tether__etf_expect_tuple(buf, idx, 4) < 0 ||
        tether__etf_decode_bin_ref(buf, idx, &w->key, &w->klen) < 0 ||
        tether__etf_decode_u64(buf, idx, &w->stamp) < 0 ||
        tether__etf_decode_name(buf, idx, w->node) < 0 ||
        ei_get_type(buf, idx, &type, &size) < 0)
        return TETHER_EPROTO;
    if (type == ERL_BINARY_EXT) {
        if (tether__etf_decode_bin_ref(buf, idx, &w->val, &w->vlen) < 0)
            return TETHER_EPROTO;
    } else {
        char atom[MAXATOMLEN_UTF8];
        if (ei_decode_atom(buf, idx, atom) < 0 || strcmp(atom, "remove") != 0)
            return TETHER_EPROTO;
    }
    if (w->klen == 0 || w->klen > TETHER_MAPS_KEY_MAX ||
        w->vlen > TETHER_MAPS_VALUE_MAX ||
        tether__etf_validate((const char *)w->key, w->klen) < 0 ||
        (w->val && tether__etf_validate((const char *)w->val, w->vlen) < 0))
        return 1;
    return 0;
}

/* Applies a decoded entry as a received write. 0 or TETHER_ENOMEM. */
static int apply_wire(tether_map_t *map, const wire_entry_t *w)
{
    tether_maps_t *m = map->m;
    int n = node_get(m, w->node);

    if (n < 0)
        return TETHER_ENOMEM;
    tether__engine_stamp_merge(m->eng, w->stamp);
    return apply(map, w->key, w->klen, key_hash(w->key, w->klen), w->stamp,
                 (uint32_t)n, w->val, w->vlen) < 0
               ? TETHER_ENOMEM
               : 0;
}

static int on_put(tether_map_t *map, const char *buf, int *idx)
{
    tether_maps_t *m = map->m;
    int count;

    if (tether__etf_list(buf, idx, &count) < 0)
        return TETHER_EPROTO;
    for (int k = 0; k < count; k++) {
        wire_entry_t w;
        int rc = decode_entry(buf, idx, &w);

        if (rc < 0)
            return rc;
        if (rc == 1) {
            m->stats.bad++;
            continue;
        }
        if (apply_wire(map, &w) < 0)
            return TETHER_ENOMEM;
    }
    return tether__etf_list_end(buf, idx, count);
}

int tether_maps_load(tether_map_t *map, const uint8_t *rec, size_t len)
{
    const char *buf = (const char *)rec;
    int idx = 0, version, rc;
    wire_entry_t w;

    if (map == NULL || rec == NULL || len > INT_MAX)
        return TETHER_EINVAL;
    if (ei_decode_version(buf, &idx, &version) < 0 ||
        decode_entry(buf, &idx, &w) != 0 || (size_t)idx != len)
        return TETHER_EPROTO;
    map->m->loading = 1;
    rc = apply_wire(map, &w);
    map->m->loading = 0;
    return rc;
}

int tether_maps_dump(const tether_map_t *map, tether_maps_put_fn put, void *ctx)
{
    const tether_maps_t *m;

    if (map == NULL || put == NULL)
        return TETHER_EINVAL;
    m = map->m;
    for (size_t i = 0; i <= map->mask; i++)
        for (const entry_t *e = map->tab[i]; e; e = e->next) {
            ei_x_buff x;
            int rc;

            if (encode_record(m, &x, e->key, e->klen, e->stamp, e->node, e->val,
                              e->vlen) < 0)
                return TETHER_ENOMEM;
            rc = put(ctx, (const uint8_t *)x.buff, (size_t)x.index);
            ei_x_free(&x);
            if (rc < 0)
                return rc;
        }
    return 0;
}

static int on_hosts(tether_maps_t *m, const char *from, const char *buf,
                    int *idx)
{
    uint8_t listed[TETHER_MAPS_MAX] = {0};
    int count, n = node_get(m, from);

    if (n < 0)
        return TETHER_ENOMEM;
    if (tether__etf_list(buf, idx, &count) < 0)
        return TETHER_EPROTO;
    for (int k = 0; k < count; k++) {
        const uint8_t *name;
        size_t nlen;
        tether_map_t *map;

        if (tether__etf_decode_bin_ref(buf, idx, &name, &nlen) < 0)
            return TETHER_EPROTO;
        map = tether_maps_find(m, name, nlen);
        if (map == NULL)
            continue;
        for (size_t i = 0; i < m->nmaps; i++)
            if (m->maps[i] == map)
                listed[i] = 1;
    }
    if (tether__etf_list_end(buf, idx, count) < 0)
        return TETHER_EPROTO;
    for (size_t i = 0; i < m->nmaps; i++) {
        tether_map_t *map = m->maps[i];
        if (!listed[i]) {
            host_del(map, (uint32_t)n);
            continue;
        }
        if (host_add(map, (uint32_t)n) < 0)
            return TETHER_ENOMEM;
        send_digest(map, from, digest_bits(map->n));
    }
    return 0;
}

/* ------------------------------------------------------- engine hooks */

static void on_message(tether_engine_t *eng, void *ctx, const char *from,
                       const char *buf, size_t len)
{
    tether_maps_t *m = ctx;
    char tag[TETHER_ETF_TAG_MAX];
    int idx = 0, arity, rc = TETHER_EPROTO;
    const uint8_t *name;
    size_t nlen;
    tether_map_t *map;

    (void)eng;
    (void)len;
    if (tether__etf_decode_head(buf, &idx, tag, &arity) < 0)
        goto done;
    if (strcmp(tag, "map_hosts") == 0 && arity == 2) {
        rc = on_hosts(m, from, buf, &idx);
        goto done;
    }
    if (arity < 3 || tether__etf_decode_bin_ref(buf, &idx, &name, &nlen) < 0)
        goto done;
    map = tether_maps_find(m, name, nlen);
    if (map == NULL) {
        m->stats.not_hosted++;
        return;
    }
    if (strcmp(tag, "map_put") == 0 && arity == 3) {
        rc = on_put(map, buf, &idx);
    } else if (strcmp(tag, "map_digest") == 0 && arity == 4) {
        int n = node_get(m, from);
        if (n >= 0 && host_add(map, (uint32_t)n) < 0)
            n = -1;
        rc = n < 0 ? TETHER_ENOMEM : on_digest(map, from, buf, &idx);
    } else if (strcmp(tag, "map_hashes") == 0 && arity == 4) {
        rc = on_hashes(map, from, buf, &idx);
    } else if (strcmp(tag, "map_pull") == 0 && arity == 3) {
        rc = on_pull(map, from, buf, &idx);
    }
done:
    if (rc == TETHER_EPROTO)
        m->stats.bad++;
}

static void on_session_up(tether_engine_t *eng, void *ctx, const char *peer)
{
    (void)eng;
    send_hosts(ctx, peer);
}

static void on_member(tether_engine_t *eng, void *ctx, const char *name, int up)
{
    tether_maps_t *m = ctx;

    (void)eng;
    if (strcmp(name, m->nodes[0].name) == 0)
        return;
    if (up) {
        send_hosts(m, name);
        return;
    }
    for (size_t i = 1; i < m->nnodes; i++)
        if (strcmp(m->nodes[i].name, name) == 0)
            for (size_t k = 0; k < m->nmaps; k++)
                host_del(m->maps[k], (uint32_t)i);
}

/* Collects map's expired tombstones. */
static void collect(tether_map_t *map)
{
    if (map->live == map->n)
        return;
    for (size_t i = 0; i <= map->mask; i++) {
        entry_t **pp = &map->tab[i];
        while (*pp) {
            entry_t *e = *pp;
            if (e->val == NULL && tomb_expired(map, e->stamp)) {
                wlock(map->m);
                fine_xor(map, e);
                *pp = e->next;
                map->n--;
                wunlock(map->m);
                map->m->stats.tombs_collected++;
                free(e);
                continue;
            }
            pp = &e->next;
        }
    }
}

static void on_tick(tether_engine_t *eng, void *ctx, uint64_t now_ms)
{
    tether_maps_t *m = ctx;

    (void)eng;
    if (now_ms < m->next_sync)
        return;
    m->next_sync = now_ms + m->cfg.sync_ms;
    for (size_t k = 0; k < m->nmaps; k++) {
        tether_map_t *map = m->maps[k];
        collect(map);
        for (size_t i = 0; i < map->nhosts; i++)
            send_digest(map, m->nodes[map->hosts[i]].name, digest_bits(map->n));
    }
}

static uint64_t next_deadline(tether_engine_t *eng, void *ctx)
{
    (void)eng;
    return ((tether_maps_t *)ctx)->next_sync;
}

static void module_free(void *ctx)
{
    tether_maps_t *m = ctx;

    if (m == NULL)
        return;
    for (size_t i = 0; i < m->nmaps; i++)
        map_free(m->maps[i]);
    for (size_t i = 0; i < m->nnodes; i++)
        free(m->nodes[i].name);
    free(m->nodes);
    free(m);
}

int tether_maps_new(const tether_maps_config_t *cfg, tether_engine_t *eng,
                    tether_maps_t **out)
{
    tether_engine_module_t mod = {
        .name = "maps",
        .type = TETHER_MSG_MAPS,
        .on_message = on_message,
        .on_session_up = on_session_up,
        .on_member = on_member,
        .on_tick = on_tick,
        .next_deadline = next_deadline,
        .free = module_free,
    };
    tether_maps_t *m;
    int rc;

    if (!TETHER__MODULE_ARGS_OK(cfg, eng, out))
        return TETHER_EINVAL;
    m = calloc(1, sizeof *m);
    if (m == NULL)
        return TETHER_ENOMEM;
    m->cfg = *cfg;
    if (m->cfg.sync_ms == 0)
        m->cfg.sync_ms = TETHER_MAPS_DEFAULT_SYNC_MS;
    m->eng = eng;
    rc = tether__module_register(
        eng, &mod, m,
        node_get(m, tether_engine_name(eng)) != 0 ? TETHER_ENOMEM : 0);
    if (rc == 0)
        *out = m;
    return rc;
}
