/*
 * nif/engine.c: the engine resource (core/engine.h) as NIFs: creating it
 * (with its registry and service table), feeding it bytes, connection
 * events and time, draining its typed actions as terms (action_term(),
 * the one place engine output becomes Erlang terms), membership,
 * partitions, the direct path (seal/open) and info.
 *
 * Every engine call is small (bounded by the engine's own tables, and a
 * tick by the engine's flush slice, TETHER_ENGINE_DEFER_SLICE_BYTES), so
 * no function here yields; engine_drain hands out at most DRAIN_MAX
 * actions per call and the caller loops, a large SEND's envelope as a
 * binary that owns the engine's buffer (no copy). The calls whose cost
 * grows with a message's size (recv, send, seal, open: a MAC over it, and
 * a copy) also exist as dirty-scheduler variants, which the Erlang side
 * uses for large messages.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ei.h>
#include <sodium.h>

#include "core/codec.h"
#include "core/relay.h"
#include "core/ring.h"
#include "nif/nif.h"
#include "tether/error.h"

/* The counters' names as atoms, in tether_engine_stats_list's order. */
static ERL_NIF_TERM stat_atoms[TETHER_ENGINE_STATS_N];
static ERL_NIF_TERM am_tick_max_cpu_us;

static void engine_atoms(ErlNifEnv *env)
{
    am_tick_max_cpu_us = enif_make_atom(env, "tick_max_cpu_us");
    tether_engine_stats_t zero = {0};
    tether_engine_stat_t v[TETHER_ENGINE_STATS_N];

    tether_engine_stats_list(&zero, v);
    for (size_t i = 0; i < TETHER_ENGINE_STATS_N; i++)
        stat_atoms[i] = enif_make_atom(env, v[i].name);
}

/* Reads an optional positive integer option (0 < v <= max) from a map.
 * Returns 1 if absent (v untouched) or valid, 0 if present and bad. */
static int opt_uint(ErlNifEnv *env, ERL_NIF_TERM map, ERL_NIF_TERM key,
                    ErlNifUInt64 max, ErlNifUInt64 *v)
{
    ERL_NIF_TERM t;
    ErlNifUInt64 u;

    if (!enif_get_map_value(env, map, key, &t))
        return 1;
    if (!enif_get_uint64(env, t, &u) || u == 0 || u > max)
        return 0;
    *v = u;
    return 1;
}

/*
 * engine_new(#{name := binary(), incarnation := pos_integer(),
 *              seed := <<_:256>>, heartbeat_ms => N, ttl_ms => N,
 *              hello_retry_ms => N, defer_max => N, defer_max_bytes => N,
 *              cluster_secret => <<_:256>> | cookie => binary(),
 *              identity_seed => <<_:256>>, seeds => [binary()],
 *              seed_retry_ms => N, join_timeout_ms => N,
 *              reconnect_max_ms => N, reconnect_attempts => N,
 *              ring_size => power of two, election_lease_ms => N,
 *              reminder_replicas => 1..8, reminder_hold_ms => N,
 *              reminder_tomb_ms => N, reminder_settle_ms => N,
 *              reminder_missed_ms => N, reminder_handoff_ms => N,
 *              reminder_round_ms => N, reminder_op_timeout_ms => N,
 *              map_sync_ms => N})
 *   -> {ok, Engine} | {error, Reason}
 * Key material: the cluster secret (or else the cookie) makes our identity
 * and trusts every name; identity_seed overrides our identity (peers then
 * need our public key); with identity_seed alone nobody is trusted until
 * engine_trust_add. Seeds are joined by the engine itself, in turn,
 * until one answers (core/engine.h). Bad options are badarg; an engine
 * refusal is {error, Reason}.
 */
/* The last engine's serial number (tether_nif_res_t.serial). */
static uint64_t serials;

ERL_NIF_TERM engine_new_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    tether_engine_config_t cfg;
    char name[TETHER_NODE_NAME_MAX + 1];
    char **seeds = NULL;
    size_t nseeds = 0;
    uint8_t secret[TETHER_CLUSTER_SECRET_BYTES];
    uint8_t cookie[NIF_COOKIE_MAX];
    uint8_t idseed[TETHER_KEY_SEED_BYTES];
    ErlNifBinary b;
    ERL_NIF_TERM t, res_term, ret;
    ErlNifUInt64 inc = 0, hb = TETHER_ENGINE_DEFAULT_HB_MS,
                 ttl = TETHER_ENGINE_DEFAULT_TTL_MS, retry = 0,
                 defer = TETHER_ENGINE_DEFAULT_DEFER,
                 defer_bytes = TETHER_ENGINE_DEFAULT_DEFER_BYTES,
                 seed_retry = 0, join_timeout = 0, reconnect_max = 0,
                 reconnects = 0, ring_size = TETHER_RING_DEFAULT_SHARDS,
                 lease_ms = 0, map_sync_ms = 0;
    tether_nif_res_t *res = NULL;
    int rc;

    if (argc != 1 || !enif_is_map(env, argv[0]))
        return enif_make_badarg(env);
    tether_engine_config_default(&cfg);
    if (!enif_get_map_value(env, argv[0], ATOM(name), &t) ||
        !tether__nif_get_name(env, t, name))
        return enif_make_badarg(env);
    cfg.name = name;
    if (!enif_get_map_value(env, argv[0], ATOM(incarnation), &t) ||
        !enif_get_uint64(env, t, &inc) || inc == 0)
        return enif_make_badarg(env);
    cfg.incarnation = inc;
    if (!enif_get_map_value(env, argv[0], ATOM(seed), &t) ||
        !enif_inspect_binary(env, t, &b) || b.size != TETHER_ENGINE_SEED_BYTES)
        return enif_make_badarg(env);
    memcpy(cfg.seed, b.data, b.size);
    if (!opt_uint(env, argv[0], ATOM(heartbeat_ms), UINT32_MAX, &hb) ||
        !opt_uint(env, argv[0], ATOM(ttl_ms), UINT32_MAX, &ttl) ||
        !opt_uint(env, argv[0], ATOM(hello_retry_ms), UINT32_MAX, &retry) ||
        !opt_uint(env, argv[0], ATOM(defer_max), 1u << 20, &defer) ||
        !opt_uint(env, argv[0], ATOM(defer_max_bytes),
                  TETHER_ENGINE_DEFER_BYTES_MAX, &defer_bytes) ||
        !opt_uint(env, argv[0], ATOM(seed_retry_ms), UINT32_MAX, &seed_retry) ||
        !opt_uint(env, argv[0], ATOM(join_timeout_ms), UINT32_MAX,
                  &join_timeout) ||
        !opt_uint(env, argv[0], ATOM(reconnect_max_ms), UINT32_MAX,
                  &reconnect_max) ||
        !opt_uint(env, argv[0], ATOM(reconnect_attempts), 1000, &reconnects) ||
        !opt_uint(env, argv[0], ATOM(ring_size), TETHER_RING_SHARDS_MAX,
                  &ring_size) ||
        !opt_uint(env, argv[0], ATOM(election_lease_ms), UINT32_MAX,
                  &lease_ms) ||
        !opt_uint(env, argv[0], ATOM(map_sync_ms), UINT32_MAX, &map_sync_ms) ||
        (ring_size & (ring_size - 1)) != 0)
        goto bad_arg;
    if (enif_get_map_value(env, argv[0], ATOM(seeds), &t) &&
        !enif_is_empty_list(env, t) &&
        (!tether__nif_get_names(env, t, &seeds, &nseeds) ||
         nseeds > TETHER_ENGINE_SEEDS_MAX))
        goto bad_arg;
    cfg.seeds = (const char *const *)seeds;
    cfg.nseeds = nseeds;
    cfg.seed_retry_ms = (uint32_t)seed_retry;
    cfg.join_timeout_ms = (uint32_t)join_timeout;
    cfg.reconnect_max_ms = (uint32_t)reconnect_max;
    cfg.reconnect_attempts = (uint32_t)reconnects;
    cfg.heartbeat_ms = (uint32_t)hb;
    cfg.ttl_ms = (uint32_t)ttl;
    cfg.hello_retry_ms = (uint32_t)retry;
    cfg.defer_max = (size_t)defer;
    cfg.defer_max_bytes = (size_t)defer_bytes;
    if (enif_get_map_value(env, argv[0], ATOM(cluster_secret), &t)) {
        if (!enif_inspect_binary(env, t, &b) || b.size != sizeof secret)
            goto bad_arg;
        memcpy(secret, b.data, b.size);
        cfg.cluster_secret = secret;
    } else if (enif_get_map_value(env, argv[0], ATOM(cookie), &t)) {
        if (!enif_inspect_binary(env, t, &b) || b.size == 0 ||
            b.size > sizeof cookie)
            goto bad_arg;
        memcpy(cookie, b.data, b.size);
        cfg.cookie = cookie;
        cfg.cookie_len = b.size;
    }
    if (enif_get_map_value(env, argv[0], ATOM(identity_seed), &t)) {
        if (!enif_inspect_binary(env, t, &b) || b.size != sizeof idseed)
            goto bad_arg;
        memcpy(idseed, b.data, b.size);
        cfg.identity_seed = idseed;
    }
    if (cfg.cluster_secret == NULL && cfg.cookie == NULL &&
        cfg.identity_seed == NULL)
        goto bad_arg; /* no key material at all */
    if (cfg.ttl_ms <= cfg.heartbeat_ms)
        goto bad_arg;

    res = enif_alloc_resource(tether__nif_engine_rt, sizeof *res);
    if (res == NULL) {
        rc = TETHER_ENOMEM;
        goto fail;
    }
    memset(res, 0, sizeof *res);
    res->serial = __atomic_add_fetch(&serials, 1, __ATOMIC_RELAXED);
    res->rw = enif_rwlock_create("tether_registry");
    res->lock = enif_mutex_create("tether_engine");
    if (res->lock == NULL || res->rw == NULL) {
        rc = TETHER_ENOMEM;
        goto fail;
    }
    rc = tether_engine_new(&cfg, &res->eng);
    if (rc < 0)
        goto fail;
    rc = tether__nif_registry_attach(res, (uint32_t)hb);
    if (rc == 0)
        rc = tether__nif_services_attach(res, (uint32_t)hb);
    if (rc == 0)
        rc = tether__nif_ring_attach(res, (uint32_t)ring_size);
    if (rc == 0)
        rc = tether__nif_election_attach(res, (uint32_t)lease_ms, (uint32_t)hb);
    if (rc == 0)
        rc = tether__nif_reminders_attach(res, env, argv[0]);
    if (rc == TETHER_EINVAL) { /* a bad reminder_* option */
        enif_release_resource(res);
        ret = enif_make_badarg(env);
        goto done;
    }
    if (rc == 0)
        rc = tether__nif_maps_attach(res, (uint32_t)map_sync_ms);
    if (rc < 0)
        goto fail;
    tether_engine_set_wall(res->eng, tether__nif_system_ms());
    res_term = enif_make_resource(env, res);
    enif_release_resource(res); /* the term holds it now */
    ret = enif_make_tuple2(env, ATOM(ok), res_term);
    goto done;
bad_arg:
    ret = enif_make_badarg(env);
    goto done;
fail:
    if (res != NULL)
        enif_release_resource(res); /* the destructor frees what exists */
    ret = tether__nif_error(env, rc);
done:
    if (seeds != NULL)
        tether__nif_free_names(seeds, nseeds);
    sodium_memzero(secret, sizeof secret);
    sodium_memzero(cookie, sizeof cookie);
    sodium_memzero(idseed, sizeof idseed);
    sodium_memzero(cfg.seed, sizeof cfg.seed);
    return ret;
}

/* Frees the engine and the lock once no term refers to the resource. */
void tether__nif_engine_dtor(ErlNifEnv *env, void *obj)
{
    tether_nif_res_t *res = obj;

    (void)env;
    if (res->maps != NULL)
        tether__nif_maps_detach(res);
    tether_engine_free(res->eng); /* its registry, services and ring too */
    tether__nif_ring_detach(res);
    res->eng = NULL;
    res->reg = NULL;
    res->svc = NULL;
    res->ring = NULL;
    res->election = NULL;
    res->reminders = NULL;
    res->maps = NULL;
    if (res->lock != NULL)
        enif_mutex_destroy(res->lock);
    res->lock = NULL;
    if (res->rw != NULL)
        enif_rwlock_destroy(res->rw);
    res->rw = NULL;
}

/* engine_recv(Engine, From :: binary(), Bytes :: binary())
 *   -> ok | {error, Reason}: one message from peer From. */
ERL_NIF_TERM engine_recv_nif(ErlNifEnv *env, int argc,
                             const ERL_NIF_TERM argv[])
{
    tether_nif_res_t *res;
    char from[TETHER_NODE_NAME_MAX + 1];
    ErlNifBinary b;
    tether_opener_t o;
    uint8_t *copy;
    int apart, rc;

    if (argc != 3 || !tether__nif_get_res(env, argv[0], &res) ||
        !tether__nif_get_name(env, argv[1], from) ||
        !enif_inspect_binary(env, argv[2], &b))
        return enif_make_badarg(env);
    copy = malloc(b.size ? b.size : 1);
    if (copy == NULL)
        return tether__nif_error(env, TETHER_ENOMEM);
    if (b.size)
        memcpy(copy, b.data, b.size);
    enif_mutex_lock(res->lock);
    apart = tether_engine_recv_begin(res->eng, from, copy, b.size, &o) == 0;
    rc = apart ? 0 : tether_engine_recv(res->eng, from, copy, b.size);
    enif_mutex_unlock(res->lock);
    if (apart) {
        /* A large envelope: its MAC is verified without the lock, so the
         * registry and every other call on the engine go on meanwhile. */
        (void)tether_engine_recv_verify(&o, copy, b.size);
        enif_mutex_lock(res->lock);
        rc = tether_engine_recv_end(res->eng, from, copy, b.size, &o);
        enif_mutex_unlock(res->lock);
    }
    sodium_memzero(&o, sizeof o);
    free(copy);
    return tether__nif_ok(env, rc);
}

/* Shared shape of the NIFs taking (Engine, Node :: binary()). */
typedef int (*name_op_t)(tether_engine_t *, const char *);

static ERL_NIF_TERM name_op(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[],
                            name_op_t op)
{
    tether_nif_res_t *res;
    char name[TETHER_NODE_NAME_MAX + 1];
    int rc;

    if (argc != 2 || !tether__nif_get_res(env, argv[0], &res) ||
        !tether__nif_get_name(env, argv[1], name))
        return enif_make_badarg(env);
    enif_mutex_lock(res->lock);
    rc = op(res->eng, name);
    enif_mutex_unlock(res->lock);
    return tether__nif_ok(env, rc);
}

/* engine_peer_up(Engine, Node) -> ok | {error, Reason}: a connection
 * to Node is up. */
ERL_NIF_TERM engine_peer_up_nif(ErlNifEnv *env, int argc,
                                const ERL_NIF_TERM argv[])
{
    return name_op(env, argc, argv, tether_engine_peer_up);
}

/* engine_peer_down(Engine, Node) -> ok | {error, Reason}: the connection
 * to Node is lost. */
ERL_NIF_TERM engine_peer_down_nif(ErlNifEnv *env, int argc,
                                  const ERL_NIF_TERM argv[])
{
    return name_op(env, argc, argv, tether_engine_peer_down);
}

/* engine_join(Engine, Contact) -> ok | {error, Reason}. */
ERL_NIF_TERM engine_join_nif(ErlNifEnv *env, int argc,
                             const ERL_NIF_TERM argv[])
{
    return name_op(env, argc, argv, tether_engine_join);
}

/* The share of a scheduler's timeslice (1 ms, as erl_nif counts it) that
 * `us` microseconds took, as enif_consume_timeslice wants it: 1..100. */
static int timeslice_percent(ErlNifSInt64 us)
{
    return us >= 1000 ? 100 : us <= 10 ? 1 : (int)(us / 10);
}

/* The calling thread's CPU time in microseconds. */
static uint64_t thread_cpu_us(void)
{
    struct timespec t;

    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t) != 0)
        return 0;
    return (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u;
}

/* engine_tick(Engine, NowMs :: non_neg_integer()) -> ok: the time (the
 * caller's monotonic clock), and the wall clock read here (Erlang's
 * system time, the one registrations are stamped with). */
ERL_NIF_TERM engine_tick_nif(ErlNifEnv *env, int argc,
                             const ERL_NIF_TERM argv[])
{
    tether_nif_res_t *res;
    ErlNifUInt64 now;
    ErlNifSInt64 t0, spent_us;
    uint64_t cpu0, cpu;
    int rc;

    if (argc != 2 || !tether__nif_get_res(env, argv[0], &res) ||
        !enif_get_uint64(env, argv[1], &now))
        return enif_make_badarg(env);
    enif_mutex_lock(res->lock);
    t0 = enif_monotonic_time(ERL_NIF_USEC);
    cpu0 = thread_cpu_us();
    rc = tether_engine_tick(res->eng, now);
    cpu = thread_cpu_us() - cpu0;
    spent_us = enif_monotonic_time(ERL_NIF_USEC) - t0;
    if (cpu > res->tick_max_cpu_us && cpu0 != 0)
        res->tick_max_cpu_us = cpu;
    tether_engine_set_wall(res->eng, tether__nif_system_ms());
    /* The same clock as the caller's (Erlang's monotonic ms). */
    __atomic_store_n(&res->clock_offset_ms,
                     enif_monotonic_time(ERL_NIF_MSEC) -
                         (ErlNifSInt64)tether_engine_now(res->eng),
                     __ATOMIC_RELAXED);
    enif_mutex_unlock(res->lock);
    /* A tick may seal a slice of a healed backlog (up to about half a
     * millisecond): the scheduler is told, so that a server busy with
     * a backlog yields to other processes as its reductions would. */
    (void)enif_consume_timeslice(env, timeslice_percent(spent_us));
    return tether__nif_ok(env, rc);
}

/* engine_next_deadline(Engine) -> non_neg_integer(): when tick is due. */
ERL_NIF_TERM engine_next_deadline_nif(ErlNifEnv *env, int argc,
                                      const ERL_NIF_TERM argv[])
{
    tether_nif_res_t *res;
    uint64_t d;

    if (argc != 1 || !tether__nif_get_res(env, argv[0], &res))
        return enif_make_badarg(env);
    enif_mutex_lock(res->lock);
    d = tether_engine_next_deadline(res->eng);
    enif_mutex_unlock(res->lock);
    return enif_make_uint64(env, d);
}

static ERL_NIF_TERM make_slice(ErlNifEnv *env, const tether_bytes_t *b)
{
    return tether__nif_make_bytes(env, b->ptr, b->len);
}

/*
 * A SEND's envelope or a MESSAGE's term from this size up becomes a binary
 * without a copy: the engine's buffer is taken (tether_engine_action_take)
 * and handed to the VM as a resource binary that frees it. A copy of a
 * 4 MiB envelope cost the server 2-10 ms in engine_drain on a loaded VM
 * (10-40 ms for a 4 MiB message received); a resource costs more than a
 * copy of a small one.
 */
#define OWNED_MIN (64u << 10)

/* The resource behind such a binary: the buffer it frees. */
typedef struct owned_bytes {
    uint8_t *data;
} owned_bytes_t;

static ErlNifResourceType *owned_bytes_rt;

static void owned_bytes_dtor(ErlNifEnv *env, void *obj)
{
    (void)env;
    free(((owned_bytes_t *)obj)->data);
}

int tether__nif_engine_load(ErlNifEnv *env)
{
    engine_atoms(env);
    owned_bytes_rt =
        enif_open_resource_type(env, NULL, "tether_bytes", owned_bytes_dtor,
                                ERL_NIF_RT_CREATE | ERL_NIF_RT_TAKEOVER, NULL);
    return owned_bytes_rt == NULL ? -1 : 0;
}

/* The one byte string `b` of a SEND or MESSAGE action as a binary: taken
 * from the action when large (see OWNED_MIN), else copied. */
static ERL_NIF_TERM owned_slice(ErlNifEnv *env, tether_action_t *a,
                                const tether_bytes_t *b)
{
    size_t len = b->len;
    owned_bytes_t *o;
    ERL_NIF_TERM t;

    if (len < OWNED_MIN ||
        (o = enif_alloc_resource(owned_bytes_rt, sizeof *o)) == NULL)
        return make_slice(env, b);
    o->data = tether_engine_action_take(a);
    if (o->data == NULL) { /* not reached: both kinds have their block */
        enif_release_resource(o);
        return make_slice(env, b);
    }
    t = enif_make_resource_binary(env, o, o->data, len);
    enif_release_resource(o);
    return t;
}

/* A join's outcome: ok | {refused, Param, Ours, Theirs} | timeout. */
static ERL_NIF_TERM join_status(ErlNifEnv *env, const tether_action_t *a)
{
    switch (a->u.join.status) {
    case TETHER_JOIN_OK:
        return ATOM(ok);
    case TETHER_JOIN_REFUSED:
        return enif_make_tuple4(env, ATOM(refused),
                                enif_make_atom(env, a->u.join.param),
                                enif_make_uint64(env, a->u.join.ours),
                                enif_make_uint64(env, a->u.join.theirs));
    default:
        return ATOM(timeout);
    }
}

/*
 * One drained action as a term: the NIF's one place that turns engine
 * output into Erlang terms (the server's act/2 is the other half).
 *   {send, To, Bytes}                 {connect, To}
 *   {member, up | down, Node}         {message, From, Etf}
 *   {reg_lost, NameEtf, LoserEtf, WinnerEtf | <<>>, Method}
 *   {reg_resolve, NameEtf, WinnerEtf, LoserEtf}
 *   {service, up | down, NameEtf, Node}
 *   {join, Contact, ok | {refused, Param, Ours, Theirs} | timeout}
 *   {shard, Generation, acquired | released, Shard}
 *   {leader, NameEtf, elected | revoked, Fence}
 *   {map, NameEtf, KeyEtf, ValueEtf | removed}
 *   {log, error | warning | info, Text}
 * Node names are binaries; the Etf fields are binaries the server decodes.
 */
static ERL_NIF_TERM action_term(ErlNifEnv *env, tether_action_t *a)
{
    ERL_NIF_TERM peer = tether__nif_make_name(env, a->peer);

    switch (a->kind) {
    case TETHER_ACT_SEND:
        return enif_make_tuple3(env, ATOM(send), peer,
                                owned_slice(env, a, &a->u.send.bytes));
    case TETHER_ACT_CONNECT:
        return enif_make_tuple2(env, ATOM(connect), peer);
    case TETHER_ACT_MEMBER:
        return enif_make_tuple3(env, ATOM(member),
                                a->u.member.up ? ATOM(up) : ATOM(down), peer);
    case TETHER_ACT_MESSAGE:
        return enif_make_tuple3(env, ATOM(message), peer,
                                owned_slice(env, a, &a->u.message.etf));
    case TETHER_ACT_REG_LOST:
        return enif_make_tuple5(env, ATOM(reg_lost),
                                make_slice(env, &a->u.reg_lost.name),
                                make_slice(env, &a->u.reg_lost.loser),
                                make_slice(env, &a->u.reg_lost.winner),
                                enif_make_int(env, a->u.reg_lost.method));
    case TETHER_ACT_REG_RESOLVE:
        return enif_make_tuple4(env, ATOM(reg_resolve),
                                make_slice(env, &a->u.reg_resolve.name),
                                make_slice(env, &a->u.reg_resolve.winner),
                                make_slice(env, &a->u.reg_resolve.loser));
    case TETHER_ACT_JOIN:
        return enif_make_tuple3(env, ATOM(join), peer, join_status(env, a));
    case TETHER_ACT_SHARD:
        return enif_make_tuple4(
            env, ATOM(shard), enif_make_uint64(env, a->u.shard.generation),
            a->u.shard.acquired ? ATOM(acquired) : ATOM(released),
            enif_make_uint(env, a->u.shard.shard));
    case TETHER_ACT_LOG:
        return enif_make_tuple3(
            env, ATOM(log),
            a->u.log.level == TETHER_ACT_LOG_ERROR     ? ATOM(error)
            : a->u.log.level == TETHER_ACT_LOG_WARNING ? ATOM(warning)
                                                       : ATOM(info),
            make_slice(env, &a->u.log.text));
    case TETHER_ACT_LEADER:
        return enif_make_tuple4(
            env, ATOM(leader), make_slice(env, &a->u.leader.name),
            a->u.leader.elected ? ATOM(elected) : ATOM(revoked),
            enif_make_uint64(env, a->u.leader.fence));
    case TETHER_ACT_MAP_STORE:
        return enif_make_tuple3(env, ATOM(map_store),
                                make_slice(env, &a->u.map_store.name),
                                make_slice(env, &a->u.map_store.rec));
    case TETHER_ACT_MAP:
        return enif_make_tuple4(env, ATOM(map), make_slice(env, &a->u.map.name),
                                make_slice(env, &a->u.map.key),
                                a->u.map.removed
                                    ? ATOM(removed)
                                    : make_slice(env, &a->u.map.value));
    case TETHER_ACT_REMINDER:
    case TETHER_ACT_REMINDER_REPLY:
    case TETHER_ACT_REMINDER_STORE:
        return tether__nif_reminder_action(env, a);
    case TETHER_ACT_SERVICE:
        return enif_make_tuple4(env, ATOM(service),
                                a->u.service.up ? ATOM(up) : ATOM(down),
                                make_slice(env, &a->u.service.name), peer);
    }
    return ATOM(undefined); /* not reached: every kind is above */
}

/*
 * engine_drain(Engine) -> [Action]: up to DRAIN_MAX pending actions,
 * oldest first (see action_term for their shapes); the caller repeats
 * until []. The actions are taken under the lock and turned into terms
 * after it.
 */
ERL_NIF_TERM engine_drain_nif(ErlNifEnv *env, int argc,
                              const ERL_NIF_TERM argv[])
{
    tether_nif_res_t *res;
    tether_action_t *acts;
    ERL_NIF_TERM terms[DRAIN_MAX];
    size_t n = 0;

    if (argc != 1 || !tether__nif_get_res(env, argv[0], &res))
        return enif_make_badarg(env);
    acts = malloc(DRAIN_MAX * sizeof *acts);
    if (acts == NULL)
        return tether__nif_error(env, TETHER_ENOMEM);
    enif_mutex_lock(res->lock);
    while (n < DRAIN_MAX && tether_engine_next_action(res->eng, &acts[n]))
        n++;
    enif_mutex_unlock(res->lock);
    for (size_t i = 0; i < n; i++) {
        terms[i] = action_term(env, &acts[i]);
        tether_engine_action_release(&acts[i]);
    }
    free(acts);
    return enif_make_list_from_array(env, terms, (unsigned)n);
}

/* engine_leave(Engine) -> ok | {error, closed}. */
ERL_NIF_TERM engine_leave_nif(ErlNifEnv *env, int argc,
                              const ERL_NIF_TERM argv[])
{
    tether_nif_res_t *res;
    int rc;

    if (argc != 1 || !tether__nif_get_res(env, argv[0], &res))
        return enif_make_badarg(env);
    enif_mutex_lock(res->lock);
    rc = tether_engine_leave(res->eng);
    enif_mutex_unlock(res->lock);
    return tether__nif_ok(env, rc);
}

/* engine_members(Engine) -> [binary()]: live members, sorted bytewise. */
ERL_NIF_TERM engine_members_nif(ErlNifEnv *env, int argc,
                                const ERL_NIF_TERM argv[])
{
    tether_nif_res_t *res;
    const char **names;
    size_t n;
    ERL_NIF_TERM list;

    if (argc != 1 || !tether__nif_get_res(env, argv[0], &res))
        return enif_make_badarg(env);
    names = malloc(TETHER_MEMBERS_MAX * sizeof *names);
    if (names == NULL)
        return tether__nif_error(env, TETHER_ENOMEM);
    list = enif_make_list(env, 0);
    /* Names point into the engine: build the terms before unlocking. Only
     * binaries are made here, never a call into Erlang. */
    enif_mutex_lock(res->lock);
    n = tether_engine_members(res->eng, names, TETHER_MEMBERS_MAX);
    if (n > TETHER_MEMBERS_MAX)
        n = TETHER_MEMBERS_MAX;
    for (size_t i = n; i > 0; i--)
        list = enif_make_list_cell(
            env, tether__nif_make_name(env, names[i - 1]), list);
    enif_mutex_unlock(res->lock);
    free(names);
    return list;
}

/* engine_partition(Engine, A :: [binary()], B :: [binary()], drop | defer)
 *   -> {ok, Ref :: pos_integer()} | {error, Reason}. */
ERL_NIF_TERM engine_partition_nif(ErlNifEnv *env, int argc,
                                  const ERL_NIF_TERM argv[])
{
    tether_nif_res_t *res;
    char **a = NULL, **b = NULL;
    size_t na = 0, nb = 0;
    uint64_t ref = 0;
    int mode, rc;

    if (argc != 4 || !tether__nif_get_res(env, argv[0], &res))
        return enif_make_badarg(env);
    if (enif_is_identical(argv[3], ATOM(drop)))
        mode = TETHER_PARTITION_DROP;
    else if (enif_is_identical(argv[3], ATOM(defer)))
        mode = TETHER_PARTITION_DEFER;
    else
        return enif_make_badarg(env);
    if (!tether__nif_get_names(env, argv[1], &a, &na))
        return enif_make_badarg(env);
    if (!tether__nif_get_names(env, argv[2], &b, &nb)) {
        tether__nif_free_names(a, na);
        return enif_make_badarg(env);
    }
    enif_mutex_lock(res->lock);
    rc = tether_engine_partition(res->eng, (const char *const *)a, na,
                                 (const char *const *)b, nb, mode, &ref);
    enif_mutex_unlock(res->lock);
    tether__nif_free_names(a, na);
    tether__nif_free_names(b, nb);
    if (rc < 0)
        return tether__nif_error(env, rc);
    return enif_make_tuple2(env, ATOM(ok), enif_make_uint64(env, ref));
}

/* engine_heal(Engine, Ref) -> ok | {error, not_found}. */
ERL_NIF_TERM engine_heal_nif(ErlNifEnv *env, int argc,
                             const ERL_NIF_TERM argv[])
{
    tether_nif_res_t *res;
    ErlNifUInt64 ref;
    int rc;

    if (argc != 2 || !tether__nif_get_res(env, argv[0], &res) ||
        !enif_get_uint64(env, argv[1], &ref))
        return enif_make_badarg(env);
    enif_mutex_lock(res->lock);
    rc = tether_engine_heal(res->eng, ref);
    enif_mutex_unlock(res->lock);
    return tether__nif_ok(env, rc);
}

/* engine_heal_all(Engine) -> ok. */
ERL_NIF_TERM engine_heal_all_nif(ErlNifEnv *env, int argc,
                                 const ERL_NIF_TERM argv[])
{
    tether_nif_res_t *res;

    if (argc != 1 || !tether__nif_get_res(env, argv[0], &res))
        return enif_make_badarg(env);
    enif_mutex_lock(res->lock);
    tether_engine_heal_all(res->eng);
    enif_mutex_unlock(res->lock);
    return ATOM(ok);
}

/* A list of binaries for n names. */
static ERL_NIF_TERM names_list(ErlNifEnv *env, char *const *v, size_t n)
{
    ERL_NIF_TERM list = enif_make_list(env, 0);

    for (size_t i = n; i > 0; i--)
        list = enif_make_list_cell(env, tether__nif_make_name(env, v[i - 1]),
                                   list);
    return list;
}

/* engine_partitions(Engine) -> [{Ref, drop | defer, Healed :: boolean(),
 *                                [binary()], [binary()]}], sorted by Ref. */
ERL_NIF_TERM engine_partitions_nif(ErlNifEnv *env, int argc,
                                   const ERL_NIF_TERM argv[])
{
    tether_nif_res_t *res;
    const tether_partition_table_t *t;
    ERL_NIF_TERM list = enif_make_list(env, 0);

    if (argc != 1 || !tether__nif_get_res(env, argv[0], &res))
        return enif_make_badarg(env);
    /* The table lives in the engine: copy it into terms under the lock. */
    enif_mutex_lock(res->lock);
    t = tether_engine_partitions(res->eng);
    for (size_t i = t->n; i > 0; i--) {
        const tether_partition_t *p = &t->v[i - 1];
        ERL_NIF_TERM e = enif_make_tuple5(
            env, enif_make_uint64(env, p->ref),
            p->mode == TETHER_PARTITION_DROP ? ATOM(drop) : ATOM(defer),
            p->healed ? ATOM(true) : ATOM(false), names_list(env, p->a, p->na),
            names_list(env, p->b, p->nb));
        list = enif_make_list_cell(env, e, list);
    }
    enif_mutex_unlock(res->lock);
    return list;
}

/* engine_send(Engine, To :: binary(), Etf :: binary()) -> ok |
 * {error, closed | too_big | invalid}: an Erlang-side module message (one
 * term in external format) to the same module on peer To, subject to
 * partitions (drop: {error, closed}; defer: queued, in order). */
/*
 * Reads the arguments (Engine, To :: binary(), Etf :: binary()) of a
 * SHELL message into *res, to and *b. Returns 1, or 0 with *bad the term
 * to answer: badarg, or {error, invalid} when Etf does not start as a
 * term in external format. (enif_make_badarg's term may be 0: it is
 * passed back, never tested.) The receiving side decodes with
 * binary_to_term (erlang_module is opaque), so any term an rpc carries
 * may go; bytes that are no term at all are refused there.
 */
static int shell_args(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[],
                      tether_nif_res_t **res,
                      char to[TETHER_NODE_NAME_MAX + 1], ErlNifBinary *b,
                      ERL_NIF_TERM *bad)
{
    if (argc != 3 || !tether__nif_get_res(env, argv[0], res) ||
        !tether__nif_get_name(env, argv[1], to) ||
        !enif_inspect_binary(env, argv[2], b) || b->size == 0) {
        *bad = enif_make_badarg(env);
        return 0;
    }
    if (b->data[0] != TETHER_ETF_VERSION) {
        *bad = tether__nif_error(env, TETHER_EINVAL);
        return 0;
    }
    return 1;
}

ERL_NIF_TERM engine_send_nif(ErlNifEnv *env, int argc,
                             const ERL_NIF_TERM argv[])
{
    tether_nif_res_t *res;
    char to[TETHER_NODE_NAME_MAX + 1];
    ErlNifBinary b;
    ERL_NIF_TERM bad;
    uint8_t *copy;
    int rc;

    if (!shell_args(env, argc, argv, &res, to, &b, &bad))
        return bad;
    copy = malloc(b.size);
    if (copy == NULL)
        return tether__nif_error(env, TETHER_ENOMEM);
    memcpy(copy, b.data, b.size);
    enif_mutex_lock(res->lock);
    rc = tether_engine_send(res->eng, to, TETHER_MSG_SHELL, copy, b.size, 0);
    enif_mutex_unlock(res->lock);
    free(copy);
    return tether__nif_ok(env, rc);
}

/* engine_relay(Engine, To :: binary(), Etf :: binary()) -> ok |
 * {error, closed | too_big | invalid}: a SHELL message for peer To
 * signed by our identity key and sent through the other members, for a
 * path to To that is cut (core/relay.h, tether_relay_send). `closed': no
 * member took it. Queues SEND actions: called through the server. */
ERL_NIF_TERM engine_relay_nif(ErlNifEnv *env, int argc,
                              const ERL_NIF_TERM argv[])
{
    tether_nif_res_t *res;
    char to[TETHER_NODE_NAME_MAX + 1];
    ErlNifBinary b;
    ERL_NIF_TERM bad;
    int rc;

    if (!shell_args(env, argc, argv, &res, to, &b, &bad))
        return bad;
    enif_mutex_lock(res->lock);
    rc = tether_relay_send(res->eng, to, b.data, b.size, 0);
    enif_mutex_unlock(res->lock);
    return tether__nif_ok(env, rc);
}

/* ---------------------------------------------------- the direct path */

/*
 * engine_seal(Engine, To :: binary(), Etf :: binary()) ->
 *   {ok, Envelope :: binary()} | deferred | {error, closed | too_big |
 *   invalid}: an Erlang-side module message (one term in external format,
 * a SHELL message, core/engine.h) sealed for peer To, for the calling process
 * to carry itself (core/engine.h, tether_engine_seal). `deferred': a defer
 * partition holds it in the engine, which sends it on heal. The receiver
 * validates the term; bytes that are not one are refused there.
 */
ERL_NIF_TERM engine_seal_nif(ErlNifEnv *env, int argc,
                             const ERL_NIF_TERM argv[])
{
    tether_nif_res_t *res;
    char to[TETHER_NODE_NAME_MAX + 1];
    ErlNifBinary etf;
    uint8_t *out = NULL;
    size_t out_len = 0;
    ERL_NIF_TERM bin;
    int rc;

    if (argc != 3 || !tether__nif_get_res(env, argv[0], &res) ||
        !tether__nif_get_name(env, argv[1], to) ||
        !enif_inspect_binary(env, argv[2], &etf) || etf.size == 0)
        return enif_make_badarg(env);
    enif_mutex_lock(res->lock);
    rc = tether_engine_seal(res->eng, to, TETHER_MSG_SHELL, etf.data, etf.size,
                            &out, &out_len);
    enif_mutex_unlock(res->lock);
    if (rc == TETHER_EAGAIN)
        return ATOM(deferred);
    if (rc < 0)
        return tether__nif_error(env, rc);
    bin = tether__nif_make_bytes(env, out, out_len);
    free(out);
    return enif_make_tuple2(env, ATOM(ok), bin);
}

/*
 * engine_open(Engine, From :: binary(), Envelope :: binary()) ->
 *   {ok, Term} | deferred | {error, Reason}: the Erlang-side module message
 * that peer From sealed with engine_seal/3. It is decoded without the
 * `safe' option: a request names its module, function and atoms as an
 * rpc over Erlang distribution does, and only a trusted member that
 * holds the session (the envelope's MAC proves it) can make one.
 * `deferred': a defer partition holds it; it reaches the server's module
 * handler on heal.
 */
ERL_NIF_TERM engine_open_nif(ErlNifEnv *env, int argc,
                             const ERL_NIF_TERM argv[])
{
    tether_nif_res_t *res;
    char from[TETHER_NODE_NAME_MAX + 1];
    ErlNifBinary b;
    const uint8_t *payload = NULL;
    size_t plen = 0;
    uint8_t type = 0;
    ERL_NIF_TERM term = 0;
    int rc, decoded = 0;

    if (argc != 3 || !tether__nif_get_res(env, argv[0], &res) ||
        !tether__nif_get_name(env, argv[1], from) ||
        !enif_inspect_binary(env, argv[2], &b))
        return enif_make_badarg(env);
    /* The payload points into b, which the caller's term keeps alive; it
     * is decoded (copied) before the lock is released. */
    enif_mutex_lock(res->lock);
    rc = tether_engine_open(res->eng, from, b.data, b.size, &type, &payload,
                            &plen);
    if (rc == 0 && type == TETHER_MSG_SHELL)
        decoded = enif_binary_to_term(env, payload, plen, &term, 0) == plen;
    enif_mutex_unlock(res->lock);
    if (rc == TETHER_EAGAIN)
        return ATOM(deferred);
    if (rc < 0)
        return tether__nif_error(env, rc);
    if (!decoded)
        return tether__nif_error(env, TETHER_EPROTO);
    return enif_make_tuple2(env, ATOM(ok), term);
}

/* engine_trust_add(Engine, Node :: binary(), PublicKey :: <<_:256>>)
 *   -> ok | {error, exists | invalid | enomem}: trust Node's identity key
 * (as made by `tether_cnode keygen`). */
ERL_NIF_TERM engine_trust_add_nif(ErlNifEnv *env, int argc,
                                  const ERL_NIF_TERM argv[])
{
    tether_nif_res_t *res;
    char name[TETHER_NODE_NAME_MAX + 1];
    uint8_t pk[TETHER_KEY_PUBLIC_BYTES];
    ErlNifBinary b;
    int rc;

    if (argc != 3 || !tether__nif_get_res(env, argv[0], &res) ||
        !tether__nif_get_name(env, argv[1], name) ||
        !enif_inspect_binary(env, argv[2], &b) || b.size != sizeof pk)
        return enif_make_badarg(env);
    memcpy(pk, b.data, sizeof pk);
    enif_mutex_lock(res->lock);
    rc = tether_engine_trust_add(res->eng, name, pk);
    enif_mutex_unlock(res->lock);
    return tether__nif_ok(env, rc);
}

/* engine_info(Engine) -> #{name, incarnation, now, left, join_pending,
 * join_contact, public_key, stats => #{...}}: for tests, debugging and
 * metrics. */
ERL_NIF_TERM engine_info_nif(ErlNifEnv *env, int argc,
                             const ERL_NIF_TERM argv[])
{
    tether_nif_res_t *res;
    tether_engine_stats_t st;
    char name[TETHER_NODE_NAME_MAX + 1], contact[TETHER_NODE_NAME_MAX + 1];
    uint8_t pk[TETHER_KEY_PUBLIC_BYTES];
    uint64_t inc, now;
    int left, pending;
    uint64_t tick_max;
    ERL_NIF_TERM keys[9], vals[9], skeys[TETHER_ENGINE_STATS_N],
        svals[TETHER_ENGINE_STATS_N], map, smap;
    tether_engine_stat_t sv[TETHER_ENGINE_STATS_N];

    if (argc != 1 || !tether__nif_get_res(env, argv[0], &res))
        return enif_make_badarg(env);
    enif_mutex_lock(res->lock);
    st = *tether_engine_stats(res->eng);
    memcpy(name, tether_engine_name(res->eng), sizeof name);
    memcpy(contact, tether_engine_join_contact(res->eng),
           strlen(tether_engine_join_contact(res->eng)) + 1);
    inc = tether_engine_incarnation(res->eng);
    now = tether_engine_now(res->eng);
    left = tether_engine_has_left(res->eng);
    pending = tether_engine_join_pending(res->eng);
    memcpy(pk, tether_engine_public_key(res->eng), sizeof pk);
    tick_max = res->tick_max_cpu_us;
    enif_mutex_unlock(res->lock);

    tether_engine_stats_list(&st, sv);
    for (size_t i = 0; i < TETHER_ENGINE_STATS_N; i++) {
        skeys[i] = stat_atoms[i];
        svals[i] = enif_make_uint64(env, sv[i].value);
    }
    if (!enif_make_map_from_arrays(env, skeys, svals, TETHER_ENGINE_STATS_N,
                                   &smap))
        return tether__nif_error(env, TETHER_ENOMEM);
    keys[0] = ATOM(name), vals[0] = tether__nif_make_name(env, name);
    keys[1] = ATOM(incarnation), vals[1] = enif_make_uint64(env, inc);
    keys[2] = ATOM(now), vals[2] = enif_make_uint64(env, now);
    keys[3] = ATOM(left), vals[3] = left ? ATOM(true) : ATOM(false);
    keys[4] = ATOM(join_pending), vals[4] = pending ? ATOM(true) : ATOM(false);
    keys[5] = ATOM(join_contact), vals[5] = tether__nif_make_name(env, contact);
    keys[6] = ATOM(stats), vals[6] = smap;
    keys[7] = ATOM(public_key),
    vals[7] = tether__nif_make_bytes(env, pk, sizeof pk);
    keys[8] = am_tick_max_cpu_us, vals[8] = enif_make_uint64(env, tick_max);
    if (!enif_make_map_from_arrays(env, keys, vals, 9, &map))
        return tether__nif_error(env, TETHER_ENOMEM);
    return map;
}
