/*
 * nif/election.c: leader election (core/election.h) as NIFs.
 *
 * election_lead and election_resign change the engine: the tether server
 * calls them, under the resource's mutex like every engine call.
 * election_fence, election_is_leader, election_leader and
 * election_candidates read the per-name views of the module under the
 * resource's read lock only, in the calling process, with no message to
 * any process; election_fence and election_is_leader of an atom name
 * skip even the lock (see name_cache below), so tether:fence/1 costs
 * less than an ETS lookup.
 * A quorum lease is checked against the engine's time now, told by the
 * caller's monotonic clock (the offset of the last tick), so a lease
 * that ran out reads as such even before the server's next tick.
 *
 * A name is the canonical encoding of the term (core/ring.h), as the
 * C-node encodes the same term: both shells find the same name.
 */
#include <stdlib.h>
#include <string.h>

#include "core/election.h"
#include "nif/nif.h"
#include "tether/error.h"

static ERL_NIF_TERM stat_atoms[TETHER_ELECTION_STATS_N];

void tether__nif_election_load(ErlNifEnv *env)
{
    tether_election_stats_t zero = {0};
    tether_election_stat_t v[TETHER_ELECTION_STATS_N];

    tether_election_stats_list(&zero, v);
    for (size_t i = 0; i < TETHER_ELECTION_STATS_N; i++)
        stat_atoms[i] = enif_make_atom(env, v[i].name);
}

int tether__nif_election_attach(tether_nif_res_t *res, uint32_t lease_ms,
                                uint32_t round_ms)
{
    tether_election_config_t cfg = {
        .lease_ms = lease_ms,
        .round_ms = round_ms,
        .wlock = tether__nif_wlock,
        .wunlock = tether__nif_wunlock,
        .lock_ctx = res->rw,
    };

    return tether_election_new(&cfg, res->eng, &res->election);
}

uint64_t tether__nif_engine_now(const tether_nif_res_t *res)
{
    int64_t off = __atomic_load_n(&res->clock_offset_ms, __ATOMIC_RELAXED);
    int64_t now = enif_monotonic_time(ERL_NIF_MSEC) - off;

    return now > 0 ? (uint64_t)now : 0;
}

/* The engine resource of t with its election module. Returns 1 or 0. */
static int get_el(ErlNifEnv *env, ERL_NIF_TERM t, tether_nif_res_t **res)
{
    return tether__nif_get_res(env, t, res) && (*res)->election != NULL;
}

/* A node name as a term: an atom when ASCII, else a binary (the Erlang
 * side makes the UTF-8 atom: OTP 25's enif atoms are Latin-1). */
static ERL_NIF_TERM node_term(ErlNifEnv *env, const char *name)
{
    size_t n = strlen(name);

    for (size_t i = 0; i < n; i++)
        if ((unsigned char)name[i] >= 0x80)
            return tether__nif_make_name(env, name);
    return enif_make_atom_len(env, name, n);
}

/* Reads a proper list of at most TETHER_ELECTION_VOTERS_MAX node names
 * into a heap array (freed with tether__nif_free_names). 1 or 0. */
static int get_voters(ErlNifEnv *env, ERL_NIF_TERM list, char ***v, size_t *n)
{
    *v = NULL;
    *n = 0;
    if (enif_is_empty_list(env, list))
        return 1;
    return tether__nif_get_names(env, list, v, n) &&
           *n <= TETHER_ELECTION_VOTERS_MAX;
}

/*
 * election_lead(Engine, Name, Pid, Priority, Quorum, Voters) ->
 *   {ok, {leader, Fence}} | {ok, follower} | {error, already_candidate
 *   | no_quorum | voters_mismatch | bad_name | left | too_many_names |
 *   invalid}: Pid becomes this node's candidate for Name. badarg for a
 * Pid that is not a pid, a Priority that is not a 64-bit integer, a
 * Quorum that is not a boolean, or Voters that are not a list of names.
 */
ERL_NIF_TERM election_lead_nif(ErlNifEnv *env, int argc,
                               const ERL_NIF_TERM argv[])
{
    tether_nif_res_t *res;
    tether_election_opts_t o = {0};
    tether_nif_canon_t name;
    ErlNifSInt64 prio;
    ErlNifBinary pid;
    char **voters = NULL;
    size_t nvoters = 0;
    uint64_t fence = 0;
    int outcome = 0, rc;
    ERL_NIF_TERM ret;

    if (argc != 6 || !get_el(env, argv[0], &res) ||
        !enif_is_pid(env, argv[2]) || !enif_get_int64(env, argv[3], &prio) ||
        (!enif_is_identical(argv[4], ATOM(true)) &&
         !enif_is_identical(argv[4], ATOM(false))) ||
        !get_voters(env, argv[5], &voters, &nvoters))
        return enif_make_badarg(env);
    if (!tether__nif_canon(env, argv[1], TETHER_ELECTION_NAME_MAX, &name)) {
        tether__nif_free_names(voters, nvoters);
        return enif_make_tuple2(env, ATOM(error), ATOM(bad_name));
    }
    if (!enif_term_to_binary(env, argv[2], &pid)) {
        ret = tether__nif_error(env, TETHER_ENOMEM);
        goto done;
    }
    o.priority = prio;
    o.quorum = enif_is_identical(argv[4], ATOM(true));
    o.voters = (const char *const *)voters;
    o.nvoters = nvoters;
    enif_mutex_lock(res->lock);
    rc = tether_election_lead(res->election, name.data, name.len, pid.data,
                              pid.size, &o, &outcome, &fence);
    enif_mutex_unlock(res->lock);
    enif_release_binary(&pid);
    if (rc == TETHER_EEXIST)
        ret = enif_make_tuple2(env, ATOM(error), ATOM(already_candidate));
    else if (rc == TETHER_ECLOSED)
        ret = enif_make_tuple2(env, ATOM(error), ATOM(left));
    else if (rc == TETHER_ETOOBIG)
        ret = enif_make_tuple2(env, ATOM(error), ATOM(too_many_names));
    else if (rc < 0)
        ret = tether__nif_error(env, rc);
    else if (outcome == TETHER_ELECTION_LEADER)
        ret = enif_make_tuple2(
            env, ATOM(ok),
            enif_make_tuple2(env, ATOM(leader), enif_make_uint64(env, fence)));
    else if (outcome == TETHER_ELECTION_FOLLOWER)
        ret = enif_make_tuple2(env, ATOM(ok), ATOM(follower));
    else
        ret = enif_make_tuple2(env, ATOM(error),
                               outcome == TETHER_ELECTION_NO_QUORUM
                                   ? ATOM(no_quorum)
                                   : ATOM(voters_mismatch));
done:
    tether__nif_canon_free(&name);
    tether__nif_free_names(voters, nvoters);
    return ret;
}

/* election_resign(Engine, Name) -> ok | {error, not_candidate}. */
ERL_NIF_TERM election_resign_nif(ErlNifEnv *env, int argc,
                                 const ERL_NIF_TERM argv[])
{
    tether_nif_res_t *res;
    tether_nif_canon_t name;
    int rc;

    if (argc != 2 || !get_el(env, argv[0], &res))
        return enif_make_badarg(env);
    if (!tether__nif_canon(env, argv[1], TETHER_ELECTION_NAME_MAX, &name))
        return enif_make_tuple2(env, ATOM(error), ATOM(not_candidate));
    enif_mutex_lock(res->lock);
    rc = tether_election_resign(res->election, name.data, name.len);
    enif_mutex_unlock(res->lock);
    tether__nif_canon_free(&name);
    return rc < 0 ? enif_make_tuple2(env, ATOM(error), ATOM(not_candidate))
                  : ATOM(ok);
}

/* A scheduler thread's memory of atom names: (engine, atom) -> the
 * election's name, so that fence/1 and is_leader/1 of an atom skip the
 * canonical encoding, the hash and the read lock (tether:fence/1 then
 * costs about as much as ets:lookup/2). Sound because an atom is never
 * freed, a name lives as long as its engine, and engines are told apart
 * by serial numbers that are never reused. Direct-mapped; a miss takes
 * the general path and fills the slot. */
#define NAME_CACHE 64

typedef struct name_slot {
    uint64_t serial; /* 0: empty */
    ERL_NIF_TERM atom;
    const tether_election_name_t *name;
} name_slot_t;

static __thread name_slot_t name_cache[NAME_CACHE];

static name_slot_t *name_slot(const tether_nif_res_t *res, ERL_NIF_TERM t)
{
    return &name_cache[((t >> 6) ^ res->serial) & (NAME_CACHE - 1)];
}

/* The clock of tether_election_name_fence: the engine's time now. */
static uint64_t engine_clock(const void *res)
{
    return tether__nif_engine_now(res);
}

/* The status of Name here, or -1 for a bad argument. */
static int fence_of(ErlNifEnv *env, const ERL_NIF_TERM argv[], uint64_t *fence)
{
    tether_nif_res_t *res;
    tether_nif_canon_t name;
    const tether_election_name_t *n;
    name_slot_t *slot;

    if (!get_el(env, argv[0], &res))
        return -1;
    slot = name_slot(res, argv[1]);
    if (slot->serial == res->serial && slot->atom == argv[1])
        return tether_election_name_fence(slot->name, engine_clock, res, fence);
    if (!tether__nif_canon(env, argv[1], TETHER_ELECTION_NAME_MAX, &name))
        return -1;
    enif_rwlock_rlock(res->rw);
    n = tether_election_find(res->election, name.data, name.len);
    enif_rwlock_runlock(res->rw);
    tether__nif_canon_free(&name);
    if (n == NULL)
        return TETHER_ELECTION_FOLLOWER;
    if (enif_is_atom(env, argv[1])) {
        slot->serial = res->serial;
        slot->atom = argv[1];
        slot->name = n;
    }
    return tether_election_name_fence(n, engine_clock, res, fence);
}

/* election_fence(Engine, Name) -> {ok, Fence} | {error, not_leader |
 * no_quorum}; badarg for a term that cannot be a name (a closure). */
ERL_NIF_TERM election_fence_nif(ErlNifEnv *env, int argc,
                                const ERL_NIF_TERM argv[])
{
    uint64_t fence = 0;
    int st = argc == 2 ? fence_of(env, argv, &fence) : -1;

    switch (st) {
    case TETHER_ELECTION_LEADER:
        return enif_make_tuple2(env, ATOM(ok), enif_make_uint64(env, fence));
    case TETHER_ELECTION_NO_QUORUM:
        return enif_make_tuple2(env, ATOM(error), ATOM(no_quorum));
    case TETHER_ELECTION_FOLLOWER:
        return enif_make_tuple2(env, ATOM(error), ATOM(not_leader));
    default:
        return enif_make_badarg(env);
    }
}

/* election_is_leader(Engine, Name) -> boolean(). */
ERL_NIF_TERM election_is_leader_nif(ErlNifEnv *env, int argc,
                                    const ERL_NIF_TERM argv[])
{
    int st = argc == 2 ? fence_of(env, argv, NULL) : -1;

    if (st < 0)
        return enif_make_badarg(env);
    return st == TETHER_ELECTION_LEADER ? ATOM(true) : ATOM(false);
}

/* election_leader(Engine, Name) -> {ok, Node, Pid} | {error, no_leader}:
 * the leader as this node knows it. */
ERL_NIF_TERM election_leader_nif(ErlNifEnv *env, int argc,
                                 const ERL_NIF_TERM argv[])
{
    tether_nif_res_t *res;
    tether_nif_canon_t name;
    char node[TETHER_NODE_NAME_MAX + 1];
    uint8_t pid[TETHER_ELECTION_PID_MAX];
    size_t plen = 0;
    ERL_NIF_TERM pterm;
    int rc;

    if (argc != 2 || !get_el(env, argv[0], &res) ||
        !tether__nif_canon(env, argv[1], TETHER_ELECTION_NAME_MAX, &name))
        return enif_make_badarg(env);
    enif_rwlock_rlock(res->rw);
    rc = tether_election_leader(res->election, name.data, name.len,
                                tether__nif_engine_now(res), node, pid,
                                sizeof pid, &plen, NULL);
    enif_rwlock_runlock(res->rw);
    tether__nif_canon_free(&name);
    if (rc < 0 || plen == 0 ||
        enif_binary_to_term(env, pid, plen, &pterm, ERL_NIF_BIN2TERM_SAFE) !=
            plen)
        return enif_make_tuple2(env, ATOM(error), ATOM(no_leader));
    return enif_make_tuple3(env, ATOM(ok), node_term(env, node), pterm);
}

/* election_candidates(Engine, Name) -> [{Node, Priority}], best first. */
ERL_NIF_TERM election_candidates_nif(ErlNifEnv *env, int argc,
                                     const ERL_NIF_TERM argv[])
{
    tether_nif_res_t *res;
    tether_nif_canon_t name;
    tether_election_candidate_t *v = NULL;
    size_t n;
    ERL_NIF_TERM list = enif_make_list(env, 0);

    if (argc != 2 || !get_el(env, argv[0], &res) ||
        !tether__nif_canon(env, argv[1], TETHER_ELECTION_NAME_MAX, &name))
        return enif_make_badarg(env);
    enif_rwlock_rlock(res->rw);
    n = tether_election_candidates(res->election, name.data, name.len, NULL, 0);
    if (n > 0 && (v = malloc(n * sizeof *v)) != NULL)
        n = tether_election_candidates(res->election, name.data, name.len, v,
                                       n);
    enif_rwlock_runlock(res->rw);
    tether__nif_canon_free(&name);
    for (size_t i = v != NULL ? n : 0; i > 0; i--)
        list = enif_make_list_cell(
            env,
            enif_make_tuple2(env, node_term(env, v[i - 1].node),
                             enif_make_int64(env, v[i - 1].priority)),
            list);
    free(v);
    return list;
}

/* election_info(Engine) -> #{Counter => N}. */
ERL_NIF_TERM election_info_nif(ErlNifEnv *env, int argc,
                               const ERL_NIF_TERM argv[])
{
    tether_nif_res_t *res;
    tether_election_stats_t st;
    tether_election_stat_t v[TETHER_ELECTION_STATS_N];
    ERL_NIF_TERM keys[TETHER_ELECTION_STATS_N], vals[TETHER_ELECTION_STATS_N],
        map;

    if (argc != 1 || !get_el(env, argv[0], &res))
        return enif_make_badarg(env);
    enif_mutex_lock(res->lock);
    st = *tether_election_stats(res->election);
    enif_mutex_unlock(res->lock);
    tether_election_stats_list(&st, v);
    for (size_t i = 0; i < TETHER_ELECTION_STATS_N; i++) {
        keys[i] = stat_atoms[i];
        vals[i] = enif_make_uint64(env, v[i].value);
    }
    if (!enif_make_map_from_arrays(env, keys, vals, TETHER_ELECTION_STATS_N,
                                   &map))
        return tether__nif_error(env, TETHER_ENOMEM);
    return map;
}
