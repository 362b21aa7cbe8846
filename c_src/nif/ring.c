/*
 * nif/ring.c: the consistent-hash ring (core/ring.h) as NIFs: the key
 * hash, standalone rings (a resource per ring value; an update makes a
 * new one, as Erlang data), and the cluster ring of an engine resource,
 * read under the resource's read lock with no message to any process.
 *
 * A key is hashed by its fast path when it is a binary, a Latin-1 atom or
 * a 64-bit integer, else through term_to_binary and the canonical
 * encoding: the same shard either way (core/ring.h); tuples and lists of
 * those are written piece by piece (tether_ring_key_*), skipping
 * term_to_binary. Nodes come back as atoms, or as binaries for names
 * outside ASCII (the Erlang side turns those into atoms: OTP 25's enif
 * atoms are Latin-1). Each ring table's atoms are made once, when the
 * table is (atoms are global terms, valid in every environment), so a
 * lookup is a hash and two indexes.
 */
#include <stdlib.h>
#include <string.h>

#include "core/ring.h"
#include "nif/nif.h"
#include "tether/error.h"

/* The resource type of standalone rings (opened in load()). */
static ErlNifResourceType *ring_rt;

/* An environment to make atoms in outside any call (atoms are global). */
static ErlNifEnv *atom_env;

/* A table's members as atoms, by index (0: outside ASCII). */
typedef struct node_atoms {
    ERL_NIF_TERM *v;
    size_t n;
} node_atoms_t;

typedef struct ring_res {
    tether_ring_t *ring; /* owned, never changed once made */
    node_atoms_t atoms;
} ring_res_t;

/* Makes r's atoms into a (empty on failure: lookups make them then). */
static void atoms_make(node_atoms_t *a, const tether_ring_t *r)
{
    size_t n = tether_ring_members(r, NULL, 0);
    const char **names = malloc((n ? n : 1) * sizeof *names);

    a->v = malloc((n ? n : 1) * sizeof *a->v);
    a->n = 0;
    if (names == NULL || a->v == NULL) {
        free(a->v);
        a->v = NULL;
        free(names);
        return;
    }
    tether_ring_members(r, names, n);
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(names[i]), j = 0;
        while (j < len && (unsigned char)names[i][j] < 0x80)
            j++;
        a->v[i] = j == len ? enif_make_atom_len(atom_env, names[i], len) : 0;
    }
    a->n = n;
    free(names);
}

static void atoms_free(node_atoms_t *a)
{
    free(a->v);
    a->v = NULL;
    a->n = 0;
}

static void ring_dtor(ErlNifEnv *env, void *obj)
{
    ring_res_t *r = obj;

    (void)env;
    tether_ring_free(r->ring);
    r->ring = NULL;
    atoms_free(&r->atoms);
}

int tether__nif_ring_load(ErlNifEnv *env)
{
    if (atom_env == NULL && (atom_env = enif_alloc_env()) == NULL)
        return -1;
    ring_rt =
        enif_open_resource_type(env, NULL, "tether_ring", ring_dtor,
                                ERL_NIF_RT_CREATE | ERL_NIF_RT_TAKEOVER, NULL);
    return ring_rt == NULL ? -1 : 0;
}

/* The cluster ring's lock hooks (core/ring.h): ctx is the resource. */
static void cluster_wlock(void *ctx)
{
    enif_rwlock_rwlock(((tether_nif_res_t *)ctx)->rw);
}

static void cluster_wunlock(void *ctx)
{
    enif_rwlock_rwunlock(((tether_nif_res_t *)ctx)->rw);
}

/* A new table is in (we hold the write lock): its atoms replace the old. */
static void cluster_swapped(void *ctx, const tether_ring_t *table)
{
    tether_nif_res_t *res = ctx;
    node_atoms_t a;

    atoms_make(&a, table);
    free(res->ring_atoms);
    res->ring_atoms = a.v;
    res->ring_natoms = a.n;
}

int tether__nif_ring_attach(tether_nif_res_t *res, uint32_t shards)
{
    tether_ring_config_t cfg = {
        .shards = shards,
        .wlock = cluster_wlock,
        .wunlock = cluster_wunlock,
        .swapped = cluster_swapped,
        .lock_ctx = res,
    };

    return tether_ring_module_new(&cfg, res->eng, &res->ring);
}

void tether__nif_ring_detach(tether_nif_res_t *res)
{
    free(res->ring_atoms);
    res->ring_atoms = NULL;
    res->ring_natoms = 0;
}

/* ------------------------------------------------------------- keys */

/* Nesting walked piece by piece; deeper keys take the general path. */
#define KEY_WALK_DEPTH 8

/* Writes t into k if it is made of binaries, Latin-1 atoms, 64-bit
 * integers, tuples and proper lists only. Returns 1, or 0 when t needs
 * the general path (anything else, or too big for k). */
static int key_walk(ErlNifEnv *env, ERL_NIF_TERM t, tether_ring_key_t *k,
                    int depth)
{
    ErlNifBinary b;
    ErlNifSInt64 i;
    const ERL_NIF_TERM *elems;
    ERL_NIF_TERM head;
    char atom[256];
    unsigned len;
    int arity, n;

    if (depth > KEY_WALK_DEPTH)
        return 0;
    if (enif_is_binary(env, t) && enif_inspect_binary(env, t, &b))
        return tether_ring_key_binary(k, b.data, b.size) == 0;
    if (enif_get_int64(env, t, &i))
        return tether_ring_key_int(k, i) == 0;
    if (enif_is_atom(env, t))
        return (n = enif_get_atom(env, t, atom, sizeof atom,
                                  ERL_NIF_LATIN1)) > 0 &&
               tether_ring_key_atom(k, atom, (size_t)n - 1, 1) == 0;
    if (enif_get_tuple(env, t, &arity, &elems)) {
        if (tether_ring_key_tuple(k, (size_t)arity) < 0)
            return 0;
        for (int e = 0; e < arity; e++)
            if (!key_walk(env, elems[e], k, depth + 1))
                return 0;
        return 1;
    }
    if (enif_get_list_length(env, t, &len)) { /* proper lists only */
        if (tether_ring_key_list(k, len) < 0)
            return 0;
        while (enif_get_list_cell(env, t, &head, &t))
            if (!key_walk(env, head, k, depth + 1))
                return 0;
        return tether_ring_key_nil(k) == 0;
    }
    return 0;
}

/* The ring hash of term t. Returns 1, or 0 for a term with no canonical
 * form (a closure) or too large. */
static int key_hash(ErlNifEnv *env, ERL_NIF_TERM t, uint64_t *h)
{
    tether_ring_key_t k;
    ErlNifBinary b;
    int rc;

    /* A binary of any size, without a copy. */
    if (enif_is_binary(env, t) && enif_inspect_binary(env, t, &b)) {
        *h = tether_ring_hash_binary(b.data, b.size);
        return 1;
    }
    tether_ring_key_init(&k);
    if (key_walk(env, t, &k, 0)) {
        *h = tether_ring_key_hash(&k);
        return 1;
    }
    /* Anything else (floats, maps, pids, UTF-8 atoms...): the general
     * path, through the external format. */
    if (!enif_term_to_binary(env, t, &b))
        return 0;
    rc = tether_ring_hash_term(b.data, b.size, h);
    enif_release_binary(&b);
    return rc == 0;
}

int tether__nif_canon(ErlNifEnv *env, ERL_NIF_TERM t, size_t max,
                      tether_nif_canon_t *c)
{
    ErlNifBinary b;
    size_t len = 0;
    int rc;

    c->heap = NULL;
    tether_ring_key_init(&c->key);
    if (key_walk(env, t, &c->key, 0)) {
        c->data = c->key.b;
        c->len = c->key.len;
        return c->len <= max;
    }
    if (!enif_term_to_binary(env, t, &b))
        return 0;
    c->heap = malloc(max ? max : 1);
    rc = c->heap ? tether_ring_canon(b.data, b.size, c->heap, max, &len)
                 : TETHER_ENOMEM;
    enif_release_binary(&b);
    if (rc < 0) {
        tether__nif_canon_free(c);
        return 0;
    }
    c->data = c->heap;
    c->len = len;
    return 1;
}

void tether__nif_canon_free(tether_nif_canon_t *c)
{
    free(c->heap);
    c->heap = NULL;
}

/* Member i of ring r as a term: its atom from a, else made now (an atom
 * for ASCII, a binary for anything else). */
static ERL_NIF_TERM make_member(ErlNifEnv *env, const tether_ring_t *r,
                                const node_atoms_t *a, size_t i)
{
    const char *name = tether_ring_member(r, i);
    size_t n;

    if (i < a->n && a->v[i] != 0)
        return a->v[i];
    if (name == NULL)
        return ATOM(undefined); /* not reached: i comes from r */
    n = strlen(name);
    for (size_t j = 0; j < n; j++)
        if ((unsigned char)name[j] >= 0x80)
            return tether__nif_make_name(env, name);
    return enif_make_atom_len(env, name, n);
}

/* A list of up to n owners of shard in r. */
static ERL_NIF_TERM owners_list(ErlNifEnv *env, const tether_ring_t *r,
                                const node_atoms_t *a, uint32_t shard,
                                size_t n)
{
    size_t stack[TETHER_RING_TOP], *v = stack, got;
    ERL_NIF_TERM list = enif_make_list(env, 0);

    if (n > TETHER_RING_TOP) {
        size_t members = tether_ring_members(r, NULL, 0);
        if (n > members)
            n = members;
        if (n > TETHER_RING_TOP && (v = malloc(n * sizeof *v)) == NULL)
            return tether__nif_error(env, TETHER_ENOMEM);
    }
    got = tether_ring_owner_indexes(r, shard, n, v);
    for (size_t i = got; i > 0; i--)
        list = enif_make_list_cell(env, make_member(env, r, a, v[i - 1]), list);
    if (v != stack)
        free(v);
    return list;
}

/* N: a positive integer (badarg otherwise). */
static int get_count(ErlNifEnv *env, ERL_NIF_TERM t, size_t *n)
{
    ErlNifUInt64 u;

    if (!enif_get_uint64(env, t, &u) || u == 0)
        return 0;
    *n = u > SIZE_MAX ? SIZE_MAX : (size_t)u;
    return 1;
}

/* ring_hash(Term) -> non_neg_integer(): the 64-bit ring hash. */
ERL_NIF_TERM ring_hash_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    uint64_t h;

    if (argc != 1 || !key_hash(env, argv[0], &h))
        return enif_make_badarg(env);
    return enif_make_uint64(env, h);
}

/* ring_shard(Term, Shards) -> Shard, for a power-of-two Shards. */
ERL_NIF_TERM ring_shard_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    unsigned shards;
    uint64_t h;

    if (argc != 2 || !enif_get_uint(env, argv[1], &shards) || shards == 0 ||
        shards > TETHER_RING_SHARDS_MAX || (shards & (shards - 1)) != 0 ||
        !key_hash(env, argv[0], &h))
        return enif_make_badarg(env);
    return enif_make_uint(env, tether_ring_shard_of_hash(h, shards));
}

/* --------------------------------------------------- standalone rings */

static int get_ring(ErlNifEnv *env, ERL_NIF_TERM t, const ring_res_t **out)
{
    ring_res_t *r;

    if (!enif_get_resource(env, t, ring_rt, (void **)&r) || r->ring == NULL)
        return 0;
    *out = r;
    return 1;
}

/* A new ring term owning r (freed on failure). */
static ERL_NIF_TERM ring_term(ErlNifEnv *env, tether_ring_t *r)
{
    ring_res_t *res = enif_alloc_resource(ring_rt, sizeof *res);
    ERL_NIF_TERM t;

    if (res == NULL) {
        tether_ring_free(r);
        return tether__nif_error(env, TETHER_ENOMEM);
    }
    res->ring = r;
    atoms_make(&res->atoms, r);
    t = enif_make_resource(env, res);
    enif_release_resource(res);
    return enif_make_tuple2(env, ATOM(ok), t);
}

/* ring_new(Nodes :: [binary() | atom()], Shards) -> {ok, Ring} |
 * {error, invalid | too_big | enomem}: invalid for a repeated name. */
ERL_NIF_TERM ring_new_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    unsigned shards, len;
    ERL_NIF_TERM head, tail;
    tether_ring_t *r = NULL;
    char(*names)[TETHER_NODE_NAME_MAX + 1] = NULL;
    const char **v = NULL;
    size_t n = 0;
    int rc;

    if (argc != 2 || !enif_get_list_length(env, argv[0], &len) ||
        len > TETHER_RING_MEMBERS_MAX || !enif_get_uint(env, argv[1], &shards))
        return enif_make_badarg(env);
    if (tether_ring_new(shards, &r) < 0)
        return enif_make_badarg(env);
    names = malloc((len ? len : 1) * sizeof *names);
    v = malloc((len ? len : 1) * sizeof *v);
    if (names == NULL || v == NULL) {
        rc = TETHER_ENOMEM;
        goto fail;
    }
    tail = argv[0];
    while (enif_get_list_cell(env, tail, &head, &tail)) {
        if (!tether__nif_get_name(env, head, names[n])) {
            free(names);
            free(v);
            tether_ring_free(r);
            return enif_make_badarg(env);
        }
        v[n] = names[n];
        n++;
    }
    rc = tether_ring_set_members(r, v, n);
    if (rc < 0)
        goto fail;
    free(names);
    free(v);
    return ring_term(env, r);
fail:
    free(names);
    free(v);
    tether_ring_free(r);
    return tether__nif_error(env, rc);
}

/* ring_add(Ring, Node) / ring_remove(Ring, Node) -> {ok, Ring2} |
 * {error, exists | not_found | ...}: a new ring; Ring is unchanged. */
static ERL_NIF_TERM ring_change(ErlNifEnv *env, int argc,
                                const ERL_NIF_TERM argv[], int add)
{
    const ring_res_t *r;
    tether_ring_t *copy;
    char name[TETHER_NODE_NAME_MAX + 1];
    int rc;

    if (argc != 2 || !get_ring(env, argv[0], &r) ||
        !tether__nif_get_name(env, argv[1], name))
        return enif_make_badarg(env);
    rc = tether_ring_copy(r->ring, &copy);
    if (rc < 0)
        return tether__nif_error(env, rc);
    rc = add ? tether_ring_add(copy, name) : tether_ring_remove(copy, name);
    if (rc < 0) {
        tether_ring_free(copy);
        return tether__nif_error(env, rc);
    }
    return ring_term(env, copy);
}

ERL_NIF_TERM ring_add_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    return ring_change(env, argc, argv, 1);
}

ERL_NIF_TERM ring_remove_nif(ErlNifEnv *env, int argc,
                             const ERL_NIF_TERM argv[])
{
    return ring_change(env, argc, argv, 0);
}

/* ring_nodes(Ring) -> [Node], sorted. */
ERL_NIF_TERM ring_nodes_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    const ring_res_t *r;
    ERL_NIF_TERM list = enif_make_list(env, 0);

    if (argc != 1 || !get_ring(env, argv[0], &r))
        return enif_make_badarg(env);
    for (size_t i = tether_ring_members(r->ring, NULL, 0); i > 0; i--)
        list = enif_make_list_cell(
            env, make_member(env, r->ring, &r->atoms, i - 1), list);
    return list;
}

/* ring_info(Ring) -> {Shards, Members}. */
ERL_NIF_TERM ring_info_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    const ring_res_t *r;

    if (argc != 1 || !get_ring(env, argv[0], &r))
        return enif_make_badarg(env);
    return enif_make_tuple2(
        env, enif_make_uint(env, tether_ring_shards(r->ring)),
        enif_make_uint64(env, tether_ring_members(r->ring, NULL, 0)));
}

/* ------------------------------------- lookups, standalone and cluster */

/* What a lookup asks. */
enum { Q_PLACE, Q_OWNERS, Q_SHARD, Q_SHARD_OWNERS };

/* Answers query q on ring r for argument t (a key, or a shard for
 * Q_SHARD_OWNERS) and count n. badarg for a bad key or shard. */
static ERL_NIF_TERM lookup(ErlNifEnv *env, const tether_ring_t *r,
                           const node_atoms_t *a, int q, ERL_NIF_TERM t,
                           size_t n)
{
    uint32_t shards = tether_ring_shards(r), shard;
    unsigned s;
    uint64_t h;
    long p;

    if (q == Q_SHARD_OWNERS) {
        if (!enif_get_uint(env, t, &s) || s >= shards)
            return enif_make_badarg(env);
        return owners_list(env, r, a, s, n);
    }
    if (!key_hash(env, t, &h))
        return enif_make_badarg(env);
    shard = tether_ring_shard_of_hash(h, shards);
    switch (q) {
    case Q_PLACE:
        p = tether_ring_primary_index(r, shard);
        return p < 0 ? ATOM(undefined) : make_member(env, r, a, (size_t)p);
    case Q_OWNERS:
        return owners_list(env, r, a, shard, n);
    default:
        return enif_make_uint(env, shard);
    }
}

/*
 * One lookup on a standalone ring or on an engine's cluster ring (under
 * its read lock): argv is Ring | Engine, Key | Shard, and N for the
 * owner lists. The load table gives both names of each lookup
 * (ring_place and engine_place, ...) the same function.
 */
static ERL_NIF_TERM query(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[],
                          int q)
{
    const ring_res_t *r;
    tether_nif_res_t *res;
    size_t n = 1;
    ERL_NIF_TERM t;

    if (argc == 3 && !get_count(env, argv[2], &n))
        return enif_make_badarg(env);
    if (get_ring(env, argv[0], &r))
        return lookup(env, r->ring, &r->atoms, q, argv[1], n);
    if (!tether__nif_get_res(env, argv[0], &res) || res->ring == NULL)
        return enif_make_badarg(env);
    enif_rwlock_rlock(res->rw);
    {
        node_atoms_t a = {res->ring_atoms, res->ring_natoms};
        t = lookup(env, tether_ring_module_table(res->ring), &a, q, argv[1],
                   n);
    }
    enif_rwlock_runlock(res->rw);
    return t;
}

ERL_NIF_TERM ring_place_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    return query(env, argc, argv, Q_PLACE);
}

ERL_NIF_TERM ring_owners_nif(ErlNifEnv *env, int argc,
                             const ERL_NIF_TERM argv[])
{
    return query(env, argc, argv, Q_OWNERS);
}

ERL_NIF_TERM ring_shard_of_nif(ErlNifEnv *env, int argc,
                               const ERL_NIF_TERM argv[])
{
    return query(env, argc, argv, Q_SHARD);
}

ERL_NIF_TERM ring_shard_owners_nif(ErlNifEnv *env, int argc,
                                   const ERL_NIF_TERM argv[])
{
    return query(env, argc, argv, Q_SHARD_OWNERS);
}

/* engine_is_owner(Engine, Key) -> boolean(): we are the key's primary. */
ERL_NIF_TERM engine_is_owner_nif(ErlNifEnv *env, int argc,
                                 const ERL_NIF_TERM argv[])
{
    tether_nif_res_t *res;
    uint64_t h;
    int owns;

    if (argc != 2 || !tether__nif_get_res(env, argv[0], &res) ||
        res->ring == NULL || !key_hash(env, argv[1], &h))
        return enif_make_badarg(env);
    enif_rwlock_rlock(res->rw);
    owns = tether_ring_module_owns(
        res->ring,
        tether_ring_shard_of_hash(
            h, tether_ring_shards(tether_ring_module_table(res->ring))));
    enif_rwlock_runlock(res->rw);
    return owns ? ATOM(true) : ATOM(false);
}

/* engine_ring(Engine) -> {Shards, Generation, [OwnShard]}: the ring's
 * size and a snapshot of our shards at that generation. */
ERL_NIF_TERM engine_ring_nif(ErlNifEnv *env, int argc,
                             const ERL_NIF_TERM argv[])
{
    tether_nif_res_t *res;
    ERL_NIF_TERM list = enif_make_list(env, 0);
    uint32_t shards;
    uint64_t gen;

    if (argc != 1 || !tether__nif_get_res(env, argv[0], &res) ||
        res->ring == NULL)
        return enif_make_badarg(env);
    enif_rwlock_rlock(res->rw);
    shards = tether_ring_shards(tether_ring_module_table(res->ring));
    gen = tether_ring_module_generation(res->ring);
    for (uint32_t s = shards; s > 0; s--)
        if (tether_ring_module_owns(res->ring, s - 1))
            list = enif_make_list_cell(env, enif_make_uint(env, s - 1), list);
    enif_rwlock_runlock(res->rw);
    return enif_make_tuple3(env, enif_make_uint(env, shards),
                            enif_make_uint64(env, gen), list);
}
