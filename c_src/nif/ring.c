/*
 * nif/ring.c: the consistent-hash ring (core/ring.h) as NIFs: the key
 * hash, standalone rings (a resource per ring value; an update makes a
 * new one, as Erlang data), and the cluster ring of an engine resource,
 * read under the resource's read lock with no message to any process.
 *
 * A key is hashed by its fast path when it is a binary, a Latin-1 atom or
 * a 64-bit integer, else through term_to_binary and the canonical
 * encoding: the same shard either way (core/ring.h). Nodes come back as
 * atoms, or as binaries for names outside ASCII (the Erlang side turns
 * those into atoms: OTP 25's enif atoms are Latin-1).
 */
#include <stdlib.h>
#include <string.h>

#include "core/ring.h"
#include "nif/nif.h"
#include "tether/error.h"

/* The resource type of standalone rings (opened in load()). */
static ErlNifResourceType *ring_rt;

typedef struct ring_res {
    tether_ring_t *ring; /* owned, never changed once made */
} ring_res_t;

static void ring_dtor(ErlNifEnv *env, void *obj)
{
    ring_res_t *r = obj;

    (void)env;
    tether_ring_free(r->ring);
    r->ring = NULL;
}

int tether__nif_ring_load(ErlNifEnv *env)
{
    ring_rt =
        enif_open_resource_type(env, NULL, "tether_ring", ring_dtor,
                                ERL_NIF_RT_CREATE | ERL_NIF_RT_TAKEOVER, NULL);
    return ring_rt == NULL ? -1 : 0;
}

int tether__nif_ring_attach(tether_nif_res_t *res, uint32_t shards)
{
    tether_ring_config_t cfg = {
        .shards = shards,
        .wlock = tether__nif_wlock,
        .wunlock = tether__nif_wunlock,
        .lock_ctx = res->rw,
    };

    return tether_ring_module_new(&cfg, res->eng, &res->ring);
}

/* ------------------------------------------------------------- keys */

/* The ring hash of term t. Returns 1, or 0 for a term with no canonical
 * form (a closure) or too large. */
static int key_hash(ErlNifEnv *env, ERL_NIF_TERM t, uint64_t *h)
{
    ErlNifBinary b;
    ErlNifSInt64 i;
    char atom[256];
    int n, rc;

    if (enif_is_binary(env, t) && enif_inspect_binary(env, t, &b)) {
        *h = tether_ring_hash_binary(b.data, b.size);
        return 1;
    }
    if (enif_get_int64(env, t, &i)) {
        *h = tether_ring_hash_int(i);
        return 1;
    }
    if (enif_is_atom(env, t) &&
        (n = enif_get_atom(env, t, atom, sizeof atom, ERL_NIF_LATIN1)) > 0)
        return tether_ring_hash_atom(atom, (size_t)n - 1, 1, h) == 0;
    /* Anything else (UTF-8 atoms too): the general path. */
    if (!enif_term_to_binary(env, t, &b))
        return 0;
    rc = tether_ring_hash_term(b.data, b.size, h);
    enif_release_binary(&b);
    return rc == 0;
}

/* A node name as an atom (ASCII) or a binary (anything else). */
static ERL_NIF_TERM make_node(ErlNifEnv *env, const char *name)
{
    size_t n = strlen(name);

    for (size_t i = 0; i < n; i++)
        if ((unsigned char)name[i] >= 0x80)
            return tether__nif_make_name(env, name);
    return enif_make_atom_len(env, name, n);
}

/* A list of up to n owners of shard in r. */
static ERL_NIF_TERM owners_list(ErlNifEnv *env, const tether_ring_t *r,
                                uint32_t shard, size_t n)
{
    const char *stack[TETHER_RING_TOP], **v = stack;
    ERL_NIF_TERM list = enif_make_list(env, 0);
    size_t got;

    if (n > TETHER_RING_TOP) {
        size_t members = tether_ring_members(r, NULL, 0);
        if (n > members)
            n = members;
        if (n > TETHER_RING_TOP && (v = malloc(n * sizeof *v)) == NULL)
            return tether__nif_error(env, TETHER_ENOMEM);
    }
    got = tether_ring_owners(r, shard, n, v);
    for (size_t i = got; i > 0; i--)
        list = enif_make_list_cell(env, make_node(env, v[i - 1]), list);
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

static int get_ring(ErlNifEnv *env, ERL_NIF_TERM t, const tether_ring_t **out)
{
    ring_res_t *r;

    if (!enif_get_resource(env, t, ring_rt, (void **)&r) || r->ring == NULL)
        return 0;
    *out = r->ring;
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
    const tether_ring_t *r;
    tether_ring_t *copy;
    char name[TETHER_NODE_NAME_MAX + 1];
    int rc;

    if (argc != 2 || !get_ring(env, argv[0], &r) ||
        !tether__nif_get_name(env, argv[1], name))
        return enif_make_badarg(env);
    rc = tether_ring_copy(r, &copy);
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
    const tether_ring_t *r;
    const char **v;
    size_t n;
    ERL_NIF_TERM list;

    if (argc != 1 || !get_ring(env, argv[0], &r))
        return enif_make_badarg(env);
    n = tether_ring_members(r, NULL, 0);
    v = malloc((n ? n : 1) * sizeof *v);
    if (v == NULL)
        return tether__nif_error(env, TETHER_ENOMEM);
    tether_ring_members(r, v, n);
    list = enif_make_list(env, 0);
    for (size_t i = n; i > 0; i--)
        list = enif_make_list_cell(env, make_node(env, v[i - 1]), list);
    free(v);
    return list;
}

/* ring_info(Ring) -> {Shards, Members}. */
ERL_NIF_TERM ring_info_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    const tether_ring_t *r;

    if (argc != 1 || !get_ring(env, argv[0], &r))
        return enif_make_badarg(env);
    return enif_make_tuple2(
        env, enif_make_uint(env, tether_ring_shards(r)),
        enif_make_uint64(env, tether_ring_members(r, NULL, 0)));
}

/* ------------------------------------- lookups, standalone and cluster */

/* What a lookup asks. */
enum { Q_PLACE, Q_OWNERS, Q_SHARD, Q_SHARD_OWNERS };

/* Answers query q on ring r for argument t (a key, or a shard for
 * Q_SHARD_OWNERS) and count n. badarg for a bad key or shard. */
static ERL_NIF_TERM lookup(ErlNifEnv *env, const tether_ring_t *r, int q,
                           ERL_NIF_TERM t, size_t n)
{
    uint32_t shards = tether_ring_shards(r), shard;
    unsigned s;
    uint64_t h;
    const char *p;

    if (q == Q_SHARD_OWNERS) {
        if (!enif_get_uint(env, t, &s) || s >= shards)
            return enif_make_badarg(env);
        return owners_list(env, r, s, n);
    }
    if (!key_hash(env, t, &h))
        return enif_make_badarg(env);
    shard = tether_ring_shard_of_hash(h, shards);
    switch (q) {
    case Q_PLACE:
        p = tether_ring_primary(r, shard);
        return p == NULL ? ATOM(undefined) : make_node(env, p);
    case Q_OWNERS:
        return owners_list(env, r, shard, n);
    default:
        return enif_make_uint(env, shard);
    }
}

/* The standalone lookups: ring_lookup(Ring, Query, Arg, N). */
static ERL_NIF_TERM ring_query(ErlNifEnv *env, int argc,
                               const ERL_NIF_TERM argv[], int q)
{
    const tether_ring_t *r;
    size_t n = 1;

    if (argc < 2 || !get_ring(env, argv[0], &r) ||
        (argc == 3 && !get_count(env, argv[2], &n)))
        return enif_make_badarg(env);
    return lookup(env, r, q, argv[1], n);
}

ERL_NIF_TERM ring_place_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    return argc == 2 ? ring_query(env, argc, argv, Q_PLACE)
                     : enif_make_badarg(env);
}

ERL_NIF_TERM ring_owners_nif(ErlNifEnv *env, int argc,
                             const ERL_NIF_TERM argv[])
{
    return argc == 3 ? ring_query(env, argc, argv, Q_OWNERS)
                     : enif_make_badarg(env);
}

ERL_NIF_TERM ring_shard_of_nif(ErlNifEnv *env, int argc,
                               const ERL_NIF_TERM argv[])
{
    return argc == 2 ? ring_query(env, argc, argv, Q_SHARD)
                     : enif_make_badarg(env);
}

ERL_NIF_TERM ring_shard_owners_nif(ErlNifEnv *env, int argc,
                                   const ERL_NIF_TERM argv[])
{
    return argc == 3 ? ring_query(env, argc, argv, Q_SHARD_OWNERS)
                     : enif_make_badarg(env);
}

/* The cluster ring of an engine: the same queries under the read lock. */
static ERL_NIF_TERM engine_query(ErlNifEnv *env, int argc,
                                 const ERL_NIF_TERM argv[], int q)
{
    tether_nif_res_t *res;
    size_t n = 1;
    ERL_NIF_TERM t;

    if (argc < 2 || !tether__nif_get_res(env, argv[0], &res) ||
        res->ring == NULL || (argc == 3 && !get_count(env, argv[2], &n)))
        return enif_make_badarg(env);
    enif_rwlock_rlock(res->rw);
    t = lookup(env, tether_ring_module_table(res->ring), q, argv[1], n);
    enif_rwlock_runlock(res->rw);
    return t;
}

ERL_NIF_TERM engine_place_nif(ErlNifEnv *env, int argc,
                              const ERL_NIF_TERM argv[])
{
    return argc == 2 ? engine_query(env, argc, argv, Q_PLACE)
                     : enif_make_badarg(env);
}

ERL_NIF_TERM engine_owners_nif(ErlNifEnv *env, int argc,
                               const ERL_NIF_TERM argv[])
{
    return argc == 3 ? engine_query(env, argc, argv, Q_OWNERS)
                     : enif_make_badarg(env);
}

ERL_NIF_TERM engine_shard_nif(ErlNifEnv *env, int argc,
                              const ERL_NIF_TERM argv[])
{
    return argc == 2 ? engine_query(env, argc, argv, Q_SHARD)
                     : enif_make_badarg(env);
}

ERL_NIF_TERM engine_shard_owners_nif(ErlNifEnv *env, int argc,
                                     const ERL_NIF_TERM argv[])
{
    return argc == 3 ? engine_query(env, argc, argv, Q_SHARD_OWNERS)
                     : enif_make_badarg(env);
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
