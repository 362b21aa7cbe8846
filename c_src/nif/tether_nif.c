/*
 * tether_nif.c: the erl_nif entry points of tether_nif.so.
 *
 * The library wraps one core engine (core/engine.h) per resource of type
 * "tether_engine". The resource owns the engine and a mutex; every engine
 * call is made under that mutex, and nothing under it calls back into
 * Erlang. The resource destructor frees the engine (wiping its keys).
 *
 * Every exported function checks its arguments and answers badarg or an
 * error tuple for bad input; none keeps a pointer into a term past the
 * call: binaries and names are copied into C buffers first. Atoms are made
 * once, in load(). Node names cross this boundary as UTF-8 binaries (the
 * Erlang side converts them with atom_to_binary/binary_to_atom), so names
 * outside Latin-1 survive on OTP 25, whose enif atom functions are
 * Latin-1 only.
 *
 * Every engine call is small (bounded by the engine's own tables), so no
 * function here yields; engine_drain hands out at most DRAIN_MAX actions
 * per call and the caller loops. The two calls whose cost grows with a
 * message's size (recv and send: a MAC over it, and a copy) also exist as
 * dirty-scheduler variants (engine_recv_dirty, engine_send_dirty), which
 * the Erlang side uses for large messages.
 */
#include <stdlib.h>
#include <string.h>

#include <ei.h>
#include <erl_nif.h>
#include <sodium.h>

#include "core/codec.h"
#include "core/engine.h"
#include "core/registry.h"
#include "core/service_table.h"
#include "tether/error.h"
#include "tether/version.h"

/* Actions handed out by one engine_drain call. */
#define DRAIN_MAX 256
/* Name keys up to this size are built on the stack. */
#define NIF_KEY_STACK 512
/* Longest cookie accepted (core/keys.h). */
#define NIF_COOKIE_MAX TETHER_COOKIE_MAX

/*
 * One engine, the lock that serializes calls into it, and its registry.
 * The registry changes only under `lock` (it runs inside the engine) and,
 * around each change of its table, under `rw` as a writer; registry
 * readers (whereis, names) take only `rw` as readers, so they never wait
 * for the engine nor for each other.
 */
typedef struct engine_res {
    ErlNifMutex *lock;
    ErlNifRWLock *rw;
    tether_engine_t *eng;   /* owned; freed by the destructor */
    tether_registry_t *reg; /* a module of eng: freed with it */
    tether_svctab_t *svc;   /* a module of eng: freed with it; same rw */
} engine_res_t;

static ErlNifResourceType *engine_rt;

static ERL_NIF_TERM am_ok;
static ERL_NIF_TERM am_error;
static ERL_NIF_TERM am_true;
static ERL_NIF_TERM am_false;
static ERL_NIF_TERM am_send;
static ERL_NIF_TERM am_connect;
static ERL_NIF_TERM am_member;
static ERL_NIF_TERM am_message;
static ERL_NIF_TERM am_reg_lost;
static ERL_NIF_TERM am_reg_resolve;
static ERL_NIF_TERM am_service;
static ERL_NIF_TERM am_up;
static ERL_NIF_TERM am_down;
static ERL_NIF_TERM am_seeds;
static ERL_NIF_TERM am_seed_retry_ms;
static ERL_NIF_TERM am_drop;
static ERL_NIF_TERM am_defer;
/* Map keys of engine_new's options and engine_info's answer. */
static ERL_NIF_TERM am_name;
static ERL_NIF_TERM am_incarnation;
static ERL_NIF_TERM am_seed;
static ERL_NIF_TERM am_heartbeat_ms;
static ERL_NIF_TERM am_ttl_ms;
static ERL_NIF_TERM am_hello_retry_ms;
static ERL_NIF_TERM am_defer_max;
static ERL_NIF_TERM am_cluster_secret;
static ERL_NIF_TERM am_cookie;
static ERL_NIF_TERM am_identity_seed;
static ERL_NIF_TERM am_public_key;
static ERL_NIF_TERM am_left;
static ERL_NIF_TERM am_join_pending;
static ERL_NIF_TERM am_join_contact;
static ERL_NIF_TERM am_now;
static ERL_NIF_TERM am_stats;
static ERL_NIF_TERM am_yes;
static ERL_NIF_TERM am_no;
static ERL_NIF_TERM am_undefined;
static ERL_NIF_TERM am_deferred;

/* Stats keys, in the order of stat_values(). */
static const char *const stat_names[] = {
    "recv",          "recv_garbage",    "recv_rejected", "recv_bad_term",
    "recv_unknown",  "recv_stale",      "sent",          "send_no_session",
    "part_dropped",  "part_skipped",    "part_deferred", "defer_overflow",
    "defer_flushed", "defer_discarded", "hellos_sent",   "sessions_up",
    "member_events", "ticks",           "restarts_seen", "seed_joins",
};
#define STATS_N (sizeof stat_names / sizeof stat_names[0])
static ERL_NIF_TERM am_stat[STATS_N];

/* ------------------------------------------------------------- helpers */

/* {error, Reason} for a negative TETHER_E* code. */
static ERL_NIF_TERM error_tuple(ErlNifEnv *env, int rc)
{
    const char *r;

    switch (rc) {
    case TETHER_EINVAL:
        r = "invalid";
        break;
    case TETHER_ENOMEM:
        r = "enomem";
        break;
    case TETHER_EAGAIN:
        r = "again";
        break;
    case TETHER_EPROTO:
        r = "protocol";
        break;
    case TETHER_ETOOBIG:
        r = "too_big";
        break;
    case TETHER_EAUTH:
        r = "auth";
        break;
    case TETHER_ENOTFOUND:
        r = "not_found";
        break;
    case TETHER_EEXIST:
        r = "exists";
        break;
    case TETHER_EIO:
        r = "io";
        break;
    case TETHER_ECLOSED:
        r = "closed";
        break;
    case TETHER_ETIMEDOUT:
        r = "timeout";
        break;
    case TETHER_EREPLAY:
        r = "replay";
        break;
    case TETHER_EUNSUPP:
        r = "unsupported";
        break;
    default:
        r = "unknown";
        break;
    }
    return enif_make_tuple2(env, am_error, enif_make_atom(env, r));
}

/* ok, or {error, Reason} for a negative code. */
static ERL_NIF_TERM ok_or_error(ErlNifEnv *env, int rc)
{
    return rc < 0 ? error_tuple(env, rc) : am_ok;
}

/* Copies a node name (a binary of 1..TETHER_NODE_NAME_MAX bytes, no NUL,
 * or an ASCII atom) into out, NUL-terminated. Returns 1, or 0 if the term
 * is not one. */
static int get_name(ErlNifEnv *env, ERL_NIF_TERM t,
                    char out[TETHER_NODE_NAME_MAX + 1])
{
    ErlNifBinary b;
    int n;

    /* An ASCII atom (a node() as it usually is) saves the caller an
     * atom_to_binary; other atoms are refused (OTP 25's enif atom text is
     * Latin-1), and the caller passes the UTF-8 binary instead. */
    if (enif_is_atom(env, t)) {
        n = enif_get_atom(env, t, out, TETHER_NODE_NAME_MAX + 1,
                          ERL_NIF_LATIN1);
        if (n <= 1)
            return 0;
        for (int i = 0; i < n - 1; i++)
            if ((unsigned char)out[i] >= 0x80)
                return 0;
        return 1;
    }
    if (!enif_inspect_binary(env, t, &b) || b.size == 0 ||
        b.size > TETHER_NODE_NAME_MAX || memchr(b.data, 0, b.size) != NULL)
        return 0;
    memcpy(out, b.data, b.size);
    out[b.size] = '\0';
    return 1;
}

/* A binary term holding a copy of the C string s. */
static ERL_NIF_TERM make_name(ErlNifEnv *env, const char *s)
{
    ERL_NIF_TERM t;
    size_t n = strlen(s);
    unsigned char *p = enif_make_new_binary(env, n, &t);

    if (p == NULL) /* the emulator aborts first; never reached in practice */
        return am_error;
    if (n > 0)
        memcpy(p, s, n);
    return t;
}

/* A binary term holding a copy of len bytes. */
static ERL_NIF_TERM make_bytes(ErlNifEnv *env, const uint8_t *data, size_t len)
{
    ERL_NIF_TERM t;
    unsigned char *p = enif_make_new_binary(env, len, &t);

    if (p == NULL) /* as in make_name() */
        return am_error;
    if (len > 0)
        memcpy(p, data, len);
    return t;
}

/* Finds the engine resource in t. Returns 1, or 0 if t is none. */
static int get_res(ErlNifEnv *env, ERL_NIF_TERM t, engine_res_t **out)
{
    void *obj;

    if (!enif_get_resource(env, t, engine_rt, &obj))
        return 0;
    *out = obj;
    return (*out)->eng != NULL;
}

/*
 * Reads a proper list of at most TETHER_PARTITION_GROUP_MAX names into a
 * heap array of heap strings (*out, *n); the caller frees it with
 * free_names(). Returns 1, or 0 for a bad list (nothing left allocated).
 */
static void free_names(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static int get_names(ErlNifEnv *env, ERL_NIF_TERM list, char ***out, size_t *n)
{
    unsigned len;
    ERL_NIF_TERM head, tail = list;
    char **v;
    size_t i = 0;

    if (!enif_get_list_length(env, list, &len) || len == 0 ||
        len > TETHER_PARTITION_GROUP_MAX)
        return 0;
    v = calloc(len, sizeof *v);
    if (v == NULL)
        return 0;
    while (enif_get_list_cell(env, tail, &head, &tail)) {
        char name[TETHER_NODE_NAME_MAX + 1];
        if (!get_name(env, head, name) ||
            (v[i] = malloc(strlen(name) + 1)) == NULL)
            goto fail;
        memcpy(v[i], name, strlen(name) + 1);
        i++;
    }
    *out = v;
    *n = i;
    return 1;
fail:
    free_names(v, i);
    return 0;
}

/* Erlang's system time in ms (the wall clock of the engine's HLC). */
static uint64_t system_time_ms(void)
{
    return (uint64_t)(enif_monotonic_time(ERL_NIF_MSEC) +
                      enif_time_offset(ERL_NIF_MSEC));
}

/* Write-lock hooks of the registry (core/registry.h). */
static void reg_wlock(void *ctx)
{
    enif_rwlock_rwlock(ctx);
}

static void reg_wunlock(void *ctx)
{
    enif_rwlock_rwunlock(ctx);
}

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

/* ----------------------------------------------------------- the NIFs */

/* version() -> binary(): the C library's version string. */
static ERL_NIF_TERM version_nif(ErlNifEnv *env, int argc,
                                const ERL_NIF_TERM argv[])
{
    (void)argv;
    if (argc != 0)
        return enif_make_badarg(env);
    return make_name(env, tether_version());
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
 *              hello_retry_ms => N, defer_max => N,
 *              cluster_secret => <<_:256>> | cookie => binary(),
 *              identity_seed => <<_:256>>, seeds => [binary()],
 *              seed_retry_ms => N})
 *   -> {ok, Engine} | {error, Reason}
 * Key material: the cluster secret (or else the cookie) makes our identity
 * and trusts every name; identity_seed overrides our identity (peers then
 * need our public key); with identity_seed alone nobody is trusted until
 * engine_trust_add. Seeds are joined by the engine itself, in turn,
 * until one answers (core/engine.h). Bad options are badarg; an engine
 * refusal is {error, Reason}.
 */
static ERL_NIF_TERM engine_new_nif(ErlNifEnv *env, int argc,
                                   const ERL_NIF_TERM argv[])
{
    tether_engine_config_t cfg;
    tether_registry_config_t rcfg;
    tether_svctab_config_t scfg;
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
                 defer = TETHER_ENGINE_DEFAULT_DEFER, seed_retry = 0;
    engine_res_t *res = NULL;
    int rc;

    if (argc != 1 || !enif_is_map(env, argv[0]))
        return enif_make_badarg(env);
    tether_engine_config_default(&cfg);
    if (!enif_get_map_value(env, argv[0], am_name, &t) ||
        !get_name(env, t, name))
        return enif_make_badarg(env);
    cfg.name = name;
    if (!enif_get_map_value(env, argv[0], am_incarnation, &t) ||
        !enif_get_uint64(env, t, &inc) || inc == 0)
        return enif_make_badarg(env);
    cfg.incarnation = inc;
    if (!enif_get_map_value(env, argv[0], am_seed, &t) ||
        !enif_inspect_binary(env, t, &b) || b.size != TETHER_ENGINE_SEED_BYTES)
        return enif_make_badarg(env);
    memcpy(cfg.seed, b.data, b.size);
    if (!opt_uint(env, argv[0], am_heartbeat_ms, UINT32_MAX, &hb) ||
        !opt_uint(env, argv[0], am_ttl_ms, UINT32_MAX, &ttl) ||
        !opt_uint(env, argv[0], am_hello_retry_ms, UINT32_MAX, &retry) ||
        !opt_uint(env, argv[0], am_defer_max, 1u << 20, &defer) ||
        !opt_uint(env, argv[0], am_seed_retry_ms, UINT32_MAX, &seed_retry))
        goto bad_arg;
    if (enif_get_map_value(env, argv[0], am_seeds, &t) &&
        !enif_is_empty_list(env, t) &&
        (!get_names(env, t, &seeds, &nseeds) ||
         nseeds > TETHER_ENGINE_SEEDS_MAX))
        goto bad_arg;
    cfg.seeds = (const char *const *)seeds;
    cfg.nseeds = nseeds;
    cfg.seed_retry_ms = (uint32_t)seed_retry;
    cfg.heartbeat_ms = (uint32_t)hb;
    cfg.ttl_ms = (uint32_t)ttl;
    cfg.hello_retry_ms = (uint32_t)retry;
    cfg.defer_max = (size_t)defer;
    if (enif_get_map_value(env, argv[0], am_cluster_secret, &t)) {
        if (!enif_inspect_binary(env, t, &b) || b.size != sizeof secret)
            goto bad_arg;
        memcpy(secret, b.data, b.size);
        cfg.cluster_secret = secret;
    } else if (enif_get_map_value(env, argv[0], am_cookie, &t)) {
        if (!enif_inspect_binary(env, t, &b) || b.size == 0 ||
            b.size > sizeof cookie)
            goto bad_arg;
        memcpy(cookie, b.data, b.size);
        cfg.cookie = cookie;
        cfg.cookie_len = b.size;
    }
    if (enif_get_map_value(env, argv[0], am_identity_seed, &t)) {
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

    res = enif_alloc_resource(engine_rt, sizeof *res);
    if (res == NULL) {
        rc = TETHER_ENOMEM;
        goto fail;
    }
    res->eng = NULL;
    res->reg = NULL;
    res->svc = NULL;
    res->rw = enif_rwlock_create("tether_registry");
    res->lock = enif_mutex_create("tether_engine");
    if (res->lock == NULL || res->rw == NULL) {
        rc = TETHER_ENOMEM;
        goto fail;
    }
    rc = tether_engine_new(&cfg, &res->eng);
    if (rc < 0)
        goto fail;
    tether_registry_config_default(&rcfg);
    rcfg.digest_ms = (uint32_t)hb;
    rcfg.wlock = reg_wlock;
    rcfg.wunlock = reg_wunlock;
    rcfg.lock_ctx = res->rw;
    rcfg.pid_attach = pid_attach;
    rcfg.pid_detach = pid_detach;
    rc = tether_registry_new(&rcfg, res->eng, &res->reg);
    if (rc < 0)
        goto fail;
    tether_engine_set_wall(res->eng, system_time_ms());
    /* The service table shares the registry's read-write lock. */
    tether_svctab_config_default(&scfg);
    scfg.digest_ms = (uint32_t)hb;
    scfg.wlock = reg_wlock;
    scfg.wunlock = reg_wunlock;
    scfg.lock_ctx = res->rw;
    rc = tether_svctab_new(&scfg, res->eng, &res->svc);
    if (rc < 0)
        goto fail;
    res_term = enif_make_resource(env, res);
    enif_release_resource(res); /* the term holds it now */
    ret = enif_make_tuple2(env, am_ok, res_term);
    goto done;
bad_arg:
    ret = enif_make_badarg(env);
    goto done;
fail:
    if (res != NULL)
        enif_release_resource(res); /* the destructor frees what exists */
    ret = error_tuple(env, rc);
done:
    if (seeds != NULL)
        free_names(seeds, nseeds);
    sodium_memzero(secret, sizeof secret);
    sodium_memzero(cookie, sizeof cookie);
    sodium_memzero(idseed, sizeof idseed);
    sodium_memzero(cfg.seed, sizeof cfg.seed);
    return ret;
}

/* Frees the engine and the lock once no term refers to the resource. */
static void engine_dtor(ErlNifEnv *env, void *obj)
{
    engine_res_t *res = obj;

    (void)env;
    tether_engine_free(res->eng); /* the registry and services with it */
    res->eng = NULL;
    res->reg = NULL;
    res->svc = NULL;
    if (res->lock != NULL)
        enif_mutex_destroy(res->lock);
    res->lock = NULL;
    if (res->rw != NULL)
        enif_rwlock_destroy(res->rw);
    res->rw = NULL;
}

/* engine_recv(Engine, From :: binary(), Bytes :: binary())
 *   -> ok | {error, Reason}: one message from peer From. */
static ERL_NIF_TERM engine_recv_nif(ErlNifEnv *env, int argc,
                                    const ERL_NIF_TERM argv[])
{
    engine_res_t *res;
    char from[TETHER_NODE_NAME_MAX + 1];
    ErlNifBinary b;
    uint8_t *copy;
    int rc;

    if (argc != 3 || !get_res(env, argv[0], &res) ||
        !get_name(env, argv[1], from) || !enif_inspect_binary(env, argv[2], &b))
        return enif_make_badarg(env);
    copy = malloc(b.size ? b.size : 1);
    if (copy == NULL)
        return error_tuple(env, TETHER_ENOMEM);
    if (b.size)
        memcpy(copy, b.data, b.size);
    enif_mutex_lock(res->lock);
    rc = tether_engine_recv(res->eng, from, copy, b.size);
    enif_mutex_unlock(res->lock);
    free(copy);
    return ok_or_error(env, rc);
}

/* Shared shape of the NIFs taking (Engine, Node :: binary()). */
typedef int (*name_op_t)(tether_engine_t *, const char *);

static ERL_NIF_TERM name_op(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[],
                            name_op_t op)
{
    engine_res_t *res;
    char name[TETHER_NODE_NAME_MAX + 1];
    int rc;

    if (argc != 2 || !get_res(env, argv[0], &res) ||
        !get_name(env, argv[1], name))
        return enif_make_badarg(env);
    enif_mutex_lock(res->lock);
    rc = op(res->eng, name);
    enif_mutex_unlock(res->lock);
    return ok_or_error(env, rc);
}

/* engine_peer_up(Engine, Node) -> ok | {error, Reason}: a connection
 * to Node is up. */
static ERL_NIF_TERM engine_peer_up_nif(ErlNifEnv *env, int argc,
                                       const ERL_NIF_TERM argv[])
{
    return name_op(env, argc, argv, tether_engine_peer_up);
}

/* engine_peer_down(Engine, Node) -> ok | {error, Reason}: the connection
 * to Node is lost. */
static ERL_NIF_TERM engine_peer_down_nif(ErlNifEnv *env, int argc,
                                         const ERL_NIF_TERM argv[])
{
    return name_op(env, argc, argv, tether_engine_peer_down);
}

/* engine_join(Engine, Contact) -> ok | {error, Reason}. */
static ERL_NIF_TERM engine_join_nif(ErlNifEnv *env, int argc,
                                    const ERL_NIF_TERM argv[])
{
    return name_op(env, argc, argv, tether_engine_join);
}

/* engine_tick(Engine, NowMs :: non_neg_integer()) -> ok: the time (the
 * caller's monotonic clock), and the wall clock read here (Erlang's
 * system time, the one registrations are stamped with). */
static ERL_NIF_TERM engine_tick_nif(ErlNifEnv *env, int argc,
                                    const ERL_NIF_TERM argv[])
{
    engine_res_t *res;
    ErlNifUInt64 now;
    int rc;

    if (argc != 2 || !get_res(env, argv[0], &res) ||
        !enif_get_uint64(env, argv[1], &now))
        return enif_make_badarg(env);
    enif_mutex_lock(res->lock);
    rc = tether_engine_tick(res->eng, now);
    tether_engine_set_wall(res->eng, system_time_ms());
    enif_mutex_unlock(res->lock);
    return ok_or_error(env, rc);
}

/* engine_next_deadline(Engine) -> non_neg_integer(): when tick is due. */
static ERL_NIF_TERM engine_next_deadline_nif(ErlNifEnv *env, int argc,
                                             const ERL_NIF_TERM argv[])
{
    engine_res_t *res;
    uint64_t d;

    if (argc != 1 || !get_res(env, argv[0], &res))
        return enif_make_badarg(env);
    enif_mutex_lock(res->lock);
    d = tether_engine_next_deadline(res->eng);
    enif_mutex_unlock(res->lock);
    return enif_make_uint64(env, d);
}

static ERL_NIF_TERM make_slice(ErlNifEnv *env, const tether_bytes_t *b)
{
    return make_bytes(env, b->ptr, b->len);
}

/*
 * One drained action as a term: the NIF's one place that turns engine
 * output into Erlang terms (the server's act/2 is the other half).
 *   {send, To, Bytes}                 {connect, To}
 *   {member, up | down, Node}         {message, From, Etf}
 *   {reg_lost, NameEtf, LoserEtf, WinnerEtf | <<>>, Method}
 *   {reg_resolve, NameEtf, WinnerEtf, LoserEtf}
 *   {service, up | down, NameEtf, Node}
 * Node names are binaries; the Etf fields are binaries the server decodes.
 */
static ERL_NIF_TERM action_term(ErlNifEnv *env, const tether_action_t *a)
{
    ERL_NIF_TERM peer = make_name(env, a->peer);

    switch (a->kind) {
    case TETHER_ACT_SEND:
        return enif_make_tuple3(env, am_send, peer,
                                make_slice(env, &a->u.send.bytes));
    case TETHER_ACT_CONNECT:
        return enif_make_tuple2(env, am_connect, peer);
    case TETHER_ACT_MEMBER:
        return enif_make_tuple3(env, am_member,
                                a->u.member.up ? am_up : am_down, peer);
    case TETHER_ACT_MESSAGE:
        return enif_make_tuple3(env, am_message, peer,
                                make_slice(env, &a->u.message.etf));
    case TETHER_ACT_REG_LOST:
        return enif_make_tuple5(env, am_reg_lost,
                                make_slice(env, &a->u.reg_lost.name),
                                make_slice(env, &a->u.reg_lost.loser),
                                make_slice(env, &a->u.reg_lost.winner),
                                enif_make_int(env, a->u.reg_lost.method));
    case TETHER_ACT_REG_RESOLVE:
        return enif_make_tuple4(env, am_reg_resolve,
                                make_slice(env, &a->u.reg_resolve.name),
                                make_slice(env, &a->u.reg_resolve.winner),
                                make_slice(env, &a->u.reg_resolve.loser));
    case TETHER_ACT_SERVICE:
        return enif_make_tuple4(env, am_service,
                                a->u.service.up ? am_up : am_down,
                                make_slice(env, &a->u.service.name), peer);
    }
    return am_undefined; /* not reached: every kind is above */
}

/*
 * engine_drain(Engine) -> [Action]: up to DRAIN_MAX pending actions,
 * oldest first (see action_term for their shapes); the caller repeats
 * until []. The actions are taken under the lock and turned into terms
 * after it.
 */
static ERL_NIF_TERM engine_drain_nif(ErlNifEnv *env, int argc,
                                     const ERL_NIF_TERM argv[])
{
    engine_res_t *res;
    tether_action_t *acts;
    ERL_NIF_TERM terms[DRAIN_MAX];
    size_t n = 0;

    if (argc != 1 || !get_res(env, argv[0], &res))
        return enif_make_badarg(env);
    acts = malloc(DRAIN_MAX * sizeof *acts);
    if (acts == NULL)
        return error_tuple(env, TETHER_ENOMEM);
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
static ERL_NIF_TERM engine_leave_nif(ErlNifEnv *env, int argc,
                                     const ERL_NIF_TERM argv[])
{
    engine_res_t *res;
    int rc;

    if (argc != 1 || !get_res(env, argv[0], &res))
        return enif_make_badarg(env);
    enif_mutex_lock(res->lock);
    rc = tether_engine_leave(res->eng);
    enif_mutex_unlock(res->lock);
    return ok_or_error(env, rc);
}

/* engine_members(Engine) -> [binary()]: live members, sorted bytewise. */
static ERL_NIF_TERM engine_members_nif(ErlNifEnv *env, int argc,
                                       const ERL_NIF_TERM argv[])
{
    engine_res_t *res;
    const char **names;
    size_t n;
    ERL_NIF_TERM list;

    if (argc != 1 || !get_res(env, argv[0], &res))
        return enif_make_badarg(env);
    names = malloc(TETHER_MEMBERS_MAX * sizeof *names);
    if (names == NULL)
        return error_tuple(env, TETHER_ENOMEM);
    list = enif_make_list(env, 0);
    /* Names point into the engine: build the terms before unlocking. Only
     * binaries are made here, never a call into Erlang. */
    enif_mutex_lock(res->lock);
    n = tether_engine_members(res->eng, names, TETHER_MEMBERS_MAX);
    if (n > TETHER_MEMBERS_MAX)
        n = TETHER_MEMBERS_MAX;
    for (size_t i = n; i > 0; i--)
        list = enif_make_list_cell(env, make_name(env, names[i - 1]), list);
    enif_mutex_unlock(res->lock);
    free(names);
    return list;
}

/* engine_partition(Engine, A :: [binary()], B :: [binary()], drop | defer)
 *   -> {ok, Ref :: pos_integer()} | {error, Reason}. */
static ERL_NIF_TERM engine_partition_nif(ErlNifEnv *env, int argc,
                                         const ERL_NIF_TERM argv[])
{
    engine_res_t *res;
    char **a = NULL, **b = NULL;
    size_t na = 0, nb = 0;
    uint64_t ref = 0;
    int mode, rc;

    if (argc != 4 || !get_res(env, argv[0], &res))
        return enif_make_badarg(env);
    if (enif_is_identical(argv[3], am_drop))
        mode = TETHER_PARTITION_DROP;
    else if (enif_is_identical(argv[3], am_defer))
        mode = TETHER_PARTITION_DEFER;
    else
        return enif_make_badarg(env);
    if (!get_names(env, argv[1], &a, &na))
        return enif_make_badarg(env);
    if (!get_names(env, argv[2], &b, &nb)) {
        free_names(a, na);
        return enif_make_badarg(env);
    }
    enif_mutex_lock(res->lock);
    rc = tether_engine_partition(res->eng, (const char *const *)a, na,
                                 (const char *const *)b, nb, mode, &ref);
    enif_mutex_unlock(res->lock);
    free_names(a, na);
    free_names(b, nb);
    if (rc < 0)
        return error_tuple(env, rc);
    return enif_make_tuple2(env, am_ok, enif_make_uint64(env, ref));
}

/* engine_heal(Engine, Ref) -> ok | {error, not_found}. */
static ERL_NIF_TERM engine_heal_nif(ErlNifEnv *env, int argc,
                                    const ERL_NIF_TERM argv[])
{
    engine_res_t *res;
    ErlNifUInt64 ref;
    int rc;

    if (argc != 2 || !get_res(env, argv[0], &res) ||
        !enif_get_uint64(env, argv[1], &ref))
        return enif_make_badarg(env);
    enif_mutex_lock(res->lock);
    rc = tether_engine_heal(res->eng, ref);
    enif_mutex_unlock(res->lock);
    return ok_or_error(env, rc);
}

/* engine_heal_all(Engine) -> ok. */
static ERL_NIF_TERM engine_heal_all_nif(ErlNifEnv *env, int argc,
                                        const ERL_NIF_TERM argv[])
{
    engine_res_t *res;

    if (argc != 1 || !get_res(env, argv[0], &res))
        return enif_make_badarg(env);
    enif_mutex_lock(res->lock);
    tether_engine_heal_all(res->eng);
    enif_mutex_unlock(res->lock);
    return am_ok;
}

/* A list of binaries for n names. */
static ERL_NIF_TERM names_list(ErlNifEnv *env, char *const *v, size_t n)
{
    ERL_NIF_TERM list = enif_make_list(env, 0);

    for (size_t i = n; i > 0; i--)
        list = enif_make_list_cell(env, make_name(env, v[i - 1]), list);
    return list;
}

/* engine_partitions(Engine) -> [{Ref, drop | defer, Healed :: boolean(),
 *                                [binary()], [binary()]}], sorted by Ref. */
static ERL_NIF_TERM engine_partitions_nif(ErlNifEnv *env, int argc,
                                          const ERL_NIF_TERM argv[])
{
    engine_res_t *res;
    const tether_partition_table_t *t;
    ERL_NIF_TERM list = enif_make_list(env, 0);

    if (argc != 1 || !get_res(env, argv[0], &res))
        return enif_make_badarg(env);
    /* The table lives in the engine: copy it into terms under the lock. */
    enif_mutex_lock(res->lock);
    t = tether_engine_partitions(res->eng);
    for (size_t i = t->n; i > 0; i--) {
        const tether_partition_t *p = &t->v[i - 1];
        ERL_NIF_TERM e = enif_make_tuple5(
            env, enif_make_uint64(env, p->ref),
            p->mode == TETHER_PARTITION_DROP ? am_drop : am_defer,
            p->healed ? am_true : am_false, names_list(env, p->a, p->na),
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
static ERL_NIF_TERM engine_send_nif(ErlNifEnv *env, int argc,
                                    const ERL_NIF_TERM argv[])
{
    engine_res_t *res;
    char to[TETHER_NODE_NAME_MAX + 1];
    ErlNifBinary b;
    uint8_t *copy;
    int rc;

    if (argc != 3 || !get_res(env, argv[0], &res) ||
        !get_name(env, argv[1], to) || !enif_inspect_binary(env, argv[2], &b) ||
        b.size == 0)
        return enif_make_badarg(env);
    /* The receiving side decodes with binary_to_term (erlang_module is
     * opaque), so any term an rpc carries may go; bytes that are no term
     * at all are refused there. */
    if (b.data[0] != TETHER_ETF_VERSION)
        return error_tuple(env, TETHER_EINVAL);
    copy = malloc(b.size);
    if (copy == NULL)
        return error_tuple(env, TETHER_ENOMEM);
    memcpy(copy, b.data, b.size);
    enif_mutex_lock(res->lock);
    rc = tether_engine_send(res->eng, to, TETHER_MSG_SHELL, copy, b.size, 0);
    enif_mutex_unlock(res->lock);
    free(copy);
    return ok_or_error(env, rc);
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
static ERL_NIF_TERM engine_seal_nif(ErlNifEnv *env, int argc,
                                    const ERL_NIF_TERM argv[])
{
    engine_res_t *res;
    char to[TETHER_NODE_NAME_MAX + 1];
    ErlNifBinary etf;
    uint8_t *out = NULL;
    size_t out_len = 0;
    ERL_NIF_TERM bin;
    int rc;

    if (argc != 3 || !get_res(env, argv[0], &res) ||
        !get_name(env, argv[1], to) ||
        !enif_inspect_binary(env, argv[2], &etf) || etf.size == 0)
        return enif_make_badarg(env);
    enif_mutex_lock(res->lock);
    rc = tether_engine_seal(res->eng, to, TETHER_MSG_SHELL, etf.data, etf.size,
                            &out, &out_len);
    enif_mutex_unlock(res->lock);
    if (rc == TETHER_EAGAIN)
        return am_deferred;
    if (rc < 0)
        return error_tuple(env, rc);
    bin = make_bytes(env, out, out_len);
    free(out);
    return enif_make_tuple2(env, am_ok, bin);
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
static ERL_NIF_TERM engine_open_nif(ErlNifEnv *env, int argc,
                                    const ERL_NIF_TERM argv[])
{
    engine_res_t *res;
    char from[TETHER_NODE_NAME_MAX + 1];
    ErlNifBinary b;
    const uint8_t *payload = NULL;
    size_t plen = 0;
    uint8_t type = 0;
    ERL_NIF_TERM term = 0;
    int rc, decoded = 0;

    if (argc != 3 || !get_res(env, argv[0], &res) ||
        !get_name(env, argv[1], from) || !enif_inspect_binary(env, argv[2], &b))
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
        return am_deferred;
    if (rc < 0)
        return error_tuple(env, rc);
    if (!decoded)
        return error_tuple(env, TETHER_EPROTO);
    return enif_make_tuple2(env, am_ok, term);
}

/* engine_trust_add(Engine, Node :: binary(), PublicKey :: <<_:256>>)
 *   -> ok | {error, exists | invalid | enomem}: trust Node's identity key
 * (as made by `tether_cnode keygen`). */
static ERL_NIF_TERM engine_trust_add_nif(ErlNifEnv *env, int argc,
                                         const ERL_NIF_TERM argv[])
{
    engine_res_t *res;
    char name[TETHER_NODE_NAME_MAX + 1];
    uint8_t pk[TETHER_KEY_PUBLIC_BYTES];
    ErlNifBinary b;
    int rc;

    if (argc != 3 || !get_res(env, argv[0], &res) ||
        !get_name(env, argv[1], name) ||
        !enif_inspect_binary(env, argv[2], &b) || b.size != sizeof pk)
        return enif_make_badarg(env);
    memcpy(pk, b.data, sizeof pk);
    enif_mutex_lock(res->lock);
    rc = tether_engine_trust_add(res->eng, name, pk);
    enif_mutex_unlock(res->lock);
    return ok_or_error(env, rc);
}

/* engine_info(Engine) -> #{name, incarnation, now, left, join_pending,
 * join_contact, public_key, stats => #{...}}: for tests, debugging and
 * metrics. */
static ERL_NIF_TERM engine_info_nif(ErlNifEnv *env, int argc,
                                    const ERL_NIF_TERM argv[])
{
    engine_res_t *res;
    tether_engine_stats_t st;
    char name[TETHER_NODE_NAME_MAX + 1], contact[TETHER_NODE_NAME_MAX + 1];
    uint8_t pk[TETHER_KEY_PUBLIC_BYTES];
    uint64_t inc, now;
    int left, pending;
    ERL_NIF_TERM keys[8], vals[8], skeys[STATS_N], svals[STATS_N], map, smap;

    if (argc != 1 || !get_res(env, argv[0], &res))
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
    enif_mutex_unlock(res->lock);

    const uint64_t sv[STATS_N] = {
        st.recv,          st.recv_garbage,    st.recv_rejected,
        st.recv_bad_term, st.recv_unknown,    st.recv_stale,
        st.sent,          st.send_no_session, st.part_dropped,
        st.part_skipped,  st.part_deferred,   st.defer_overflow,
        st.defer_flushed, st.defer_discarded, st.hellos_sent,
        st.sessions_up,   st.member_events,   st.ticks,
        st.restarts_seen, st.seed_joins,
    };
    for (size_t i = 0; i < STATS_N; i++) {
        skeys[i] = am_stat[i];
        svals[i] = enif_make_uint64(env, sv[i]);
    }
    if (!enif_make_map_from_arrays(env, skeys, svals, STATS_N, &smap))
        return error_tuple(env, TETHER_ENOMEM);
    keys[0] = am_name, vals[0] = make_name(env, name);
    keys[1] = am_incarnation, vals[1] = enif_make_uint64(env, inc);
    keys[2] = am_now, vals[2] = enif_make_uint64(env, now);
    keys[3] = am_left, vals[3] = left ? am_true : am_false;
    keys[4] = am_join_pending, vals[4] = pending ? am_true : am_false;
    keys[5] = am_join_contact, vals[5] = make_name(env, contact);
    keys[6] = am_stats, vals[6] = smap;
    keys[7] = am_public_key, vals[7] = make_bytes(env, pk, sizeof pk);
    if (!enif_make_map_from_arrays(env, keys, vals, 8, &map))
        return error_tuple(env, TETHER_ENOMEM);
    return map;
}

/* ------------------------------------------------------------ registry */

/*
 * A registry key: the name's external term format, written by
 * key_encode() for common shapes and by term_to_binary otherwise. Holds
 * the bytes on the stack or in `bin`.
 */
typedef struct key {
    uint8_t stack[NIF_KEY_STACK];
    ErlNifBinary bin;
    int heap;
    const uint8_t *data;
    size_t len;
} reg_key_t;

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
static int reg_key_make(ErlNifEnv *env, ERL_NIF_TERM t, reg_key_t *k)
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

static void reg_key_free(reg_key_t *k)
{
    if (k->heap)
        enif_release_binary(&k->bin);
    k->heap = 0;
}

/* The registry of an engine term, or 0. */
static int get_reg(ErlNifEnv *env, ERL_NIF_TERM t, engine_res_t **out)
{
    return get_res(env, t, out) && (*out)->reg != NULL;
}

/* The envelopes of a direct registration, gathered as [{Peer, Bytes}]. */
typedef struct sealed_acc {
    ErlNifEnv *env;
    ERL_NIF_TERM list;
} sealed_acc_t;

static void reg_sealed_cb(void *ctx, const char *peer, const uint8_t *bytes,
                          size_t len)
{
    sealed_acc_t *a = ctx;
    ERL_NIF_TERM p = make_bytes(a->env, (const uint8_t *)peer, strlen(peer));

    a->list = enif_make_list_cell(
        a->env, enif_make_tuple2(a->env, p, make_bytes(a->env, bytes, len)),
        a->list);
}

/* The body of reg_register/5 (acc NULL: the broadcast goes through the
 * engine's actions) and reg_register_sealed/5 (acc gathers the sealed
 * envelopes). */
static ERL_NIF_TERM reg_register(ErlNifEnv *env, int argc,
                                 const ERL_NIF_TERM argv[], sealed_acc_t *acc)
{
    engine_res_t *res;
    ErlNifBinary pid;
    ErlNifUInt64 wall;
    int method, rc;
    reg_key_t k;

    if (argc != 5 || !get_reg(env, argv[0], &res) ||
        !enif_is_pid(env, argv[2]) || !enif_get_int(env, argv[3], &method) ||
        method < 0 || method > TETHER_REG_METHOD_MAX ||
        !enif_get_uint64(env, argv[4], &wall))
        return enif_make_badarg(env);
    if (!reg_key_make(env, argv[1], &k))
        return enif_make_badarg(env);
    if (!enif_term_to_binary(env, argv[2], &pid)) {
        reg_key_free(&k);
        return error_tuple(env, TETHER_ENOMEM);
    }
    enif_mutex_lock(res->lock);
    if (acc == NULL)
        rc = tether_registry_register(res->reg, k.data, k.len, pid.data,
                                      pid.size, method, wall);
    else
        rc = tether_registry_register_sealed(res->reg, k.data, k.len, pid.data,
                                             pid.size, method, wall,
                                             reg_sealed_cb, acc);
    enif_mutex_unlock(res->lock);
    enif_release_binary(&pid);
    reg_key_free(&k);
    if (rc == TETHER_EEXIST)
        return am_no;
    if (rc < 0)
        return error_tuple(env, rc);
    return acc == NULL ? am_yes : enif_make_tuple2(env, am_yes, acc->list);
}

/*
 * reg_register(Engine, Name, Pid, Method :: 0..2, WallMs)
 *   -> yes | no | {error, Reason}: registers Name -> Pid as this node's,
 * stamped at WallMs (erlang:system_time(millisecond)), and broadcasts it.
 * `no' when Name is held by anyone. The engine is not told of process
 * lifetimes: the caller monitors Pid and unregisters.
 */
static ERL_NIF_TERM reg_register_nif(ErlNifEnv *env, int argc,
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
static ERL_NIF_TERM reg_register_sealed_nif(ErlNifEnv *env, int argc,
                                            const ERL_NIF_TERM argv[])
{
    sealed_acc_t acc = {env, enif_make_list(env, 0)};

    return reg_register(env, argc, argv, &acc);
}

/* reg_unregister(Engine, Name) -> ok | {error, not_found}: removes this
 * node's own entry for Name and broadcasts the removal. */
static ERL_NIF_TERM reg_unregister_nif(ErlNifEnv *env, int argc,
                                       const ERL_NIF_TERM argv[])
{
    engine_res_t *res;
    reg_key_t k;
    int rc;

    if (argc != 2 || !get_reg(env, argv[0], &res))
        return enif_make_badarg(env);
    if (!reg_key_make(env, argv[1], &k))
        return error_tuple(env, TETHER_ENOTFOUND);
    enif_mutex_lock(res->lock);
    rc = tether_registry_unregister(res->reg, k.data, k.len);
    enif_mutex_unlock(res->lock);
    reg_key_free(&k);
    return ok_or_error(env, rc);
}

/*
 * reg_resolve(Engine, NameEtf :: binary(), KeepEtf :: binary()) -> ok |
 *   {error, not_found | invalid}: the verdict of our registrant's resolver
 * on a conflict the engine asked us to resolve ({tether_reg_resolve,
 * NameEtf, WinnerEtf, LoserEtf}); KeepEtf is one of those two pid
 * binaries, or <<>> for none (core/registry.h, tether_registry_resolve).
 * The bytes are the ones the engine handed out, so they match its keys.
 */
static ERL_NIF_TERM reg_resolve_nif(ErlNifEnv *env, int argc,
                                    const ERL_NIF_TERM argv[])
{
    engine_res_t *res;
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
    return ok_or_error(env, rc);
}

/*
 * reg_whereis(Engine, Name) -> pid() | undefined. Reads the table under
 * the registry's read lock only: never waits for the engine, and readers
 * run side by side.
 */
static ERL_NIF_TERM reg_whereis_nif(ErlNifEnv *env, int argc,
                                    const ERL_NIF_TERM argv[])
{
    engine_res_t *res;
    uint8_t pid[TETHER_REG_PID_MAX];
    size_t plen = 0;
    ERL_NIF_TERM t;
    void *slot;
    reg_key_t k;
    int rc;

    if (argc != 2 || !get_reg(env, argv[0], &res))
        return enif_make_badarg(env);
    if (!reg_key_make(env, argv[1], &k))
        return am_undefined;
    enif_rwlock_rlock(res->rw);
    if (tether_registry_whereis_data(res->reg, k.data, k.len, &slot) == 0) {
        t = enif_make_copy(env, ((pid_slot_t *)slot)->pid);
        enif_rwlock_runlock(res->rw);
        reg_key_free(&k);
        return t;
    }
    rc = tether_registry_whereis(res->reg, k.data, k.len, pid, sizeof pid,
                                 &plen);
    enif_rwlock_runlock(res->rw);
    reg_key_free(&k);
    if (rc < 0 || enif_binary_to_term(env, pid, plen, &t, 0) == 0)
        return am_undefined;
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
    e = enif_make_tuple5(c->env, n, p, make_name(c->env, owner),
                         enif_make_uint64(c->env, stamp),
                         enif_make_int(c->env, method));
    c->list = enif_make_list_cell(c->env, e, c->list);
}

static ERL_NIF_TERM reg_collect(ErlNifEnv *env, int argc,
                                const ERL_NIF_TERM argv[], int full)
{
    engine_res_t *res;
    collect_t c = {env, enif_make_list(env, 0), full};

    if (argc != 1 || !get_reg(env, argv[0], &res))
        return enif_make_badarg(env);
    enif_rwlock_rlock(res->rw);
    tether_registry_foreach(res->reg, collect_visit, &c);
    enif_rwlock_runlock(res->rw);
    return c.list;
}

/* reg_names(Engine) -> [Name]: every registered name (read lock only). */
static ERL_NIF_TERM reg_names_nif(ErlNifEnv *env, int argc,
                                  const ERL_NIF_TERM argv[])
{
    return reg_collect(env, argc, argv, 0);
}

/* reg_entries(Engine) -> [{Name, Pid, Owner :: binary(), Stamp, Method}]:
 * the whole table, for tests and debugging. */
static ERL_NIF_TERM reg_entries_nif(ErlNifEnv *env, int argc,
                                    const ERL_NIF_TERM argv[])
{
    return reg_collect(env, argc, argv, 1);
}

/* The map #{Key => Value} of n counters named by k (atoms), or
 * {error, enomem}. */
static ERL_NIF_TERM counters_map(ErlNifEnv *env, const char *const *k,
                                 const uint64_t *v, size_t n)
{
    ERL_NIF_TERM map = enif_make_new_map(env);

    for (size_t i = 0; i < n; i++)
        if (!enif_make_map_put(env, map, enif_make_atom(env, k[i]),
                               enif_make_uint64(env, v[i]), &map))
            return error_tuple(env, TETHER_ENOMEM);
    return map;
}

/* reg_info(Engine) -> #{count, digest, added, removed, conflicts, lost,
 * syncs_sent, pulls_sent, bad_msgs, stale_msgs}. */
static ERL_NIF_TERM reg_info_nif(ErlNifEnv *env, int argc,
                                 const ERL_NIF_TERM argv[])
{
    engine_res_t *res;
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
    return counters_map(env, k, v, 10);
}

/* ------------------------------------------------------------ services */

/* The service table of an engine term, or 0. */
static int get_svc(ErlNifEnv *env, ERL_NIF_TERM t, engine_res_t **out)
{
    return get_res(env, t, out) && (*out)->svc != NULL;
}

/* Fills k for service name t, encoded as registry names are. Returns 1,
 * or 0 (no memory, too large). */
static int svc_key_make(ErlNifEnv *env, ERL_NIF_TERM t, reg_key_t *k)
{
    if (!reg_key_make(env, t, k))
        return 0;
    if (k->len > TETHER_SVC_NAME_MAX) {
        reg_key_free(k);
        return 0;
    }
    return 1;
}

/*
 * svc_register(Engine, Name, Pid, Meta) -> ok | {error, Reason}: registers
 * (or replaces) this node's instance of service Name as Pid with Meta, and
 * broadcasts it. {error, too_big} past the name, meta or table bounds,
 * {error, invalid} for a meta that cannot cross (a fun) or when the engine
 * left. The caller monitors Pid and unregisters.
 */
static ERL_NIF_TERM svc_register_nif(ErlNifEnv *env, int argc,
                                     const ERL_NIF_TERM argv[])
{
    engine_res_t *res;
    ErlNifBinary pid, meta;
    reg_key_t k;
    int rc;

    if (argc != 4 || !get_svc(env, argv[0], &res) || !enif_is_pid(env, argv[2]))
        return enif_make_badarg(env);
    if (!svc_key_make(env, argv[1], &k))
        return error_tuple(env, TETHER_ETOOBIG);
    if (!enif_term_to_binary(env, argv[2], &pid)) {
        reg_key_free(&k);
        return error_tuple(env, TETHER_ENOMEM);
    }
    if (!enif_term_to_binary(env, argv[3], &meta)) {
        enif_release_binary(&pid);
        reg_key_free(&k);
        return error_tuple(env, TETHER_ENOMEM);
    }
    rc = TETHER_ETOOBIG;
    if (meta.size <= TETHER_SVC_META_MAX) {
        enif_mutex_lock(res->lock);
        rc = tether_svctab_register(res->svc, k.data, k.len, pid.data, pid.size,
                                    meta.data, meta.size);
        enif_mutex_unlock(res->lock);
    }
    enif_release_binary(&meta);
    enif_release_binary(&pid);
    reg_key_free(&k);
    return ok_or_error(env, rc);
}

/* svc_unregister(Engine, Name) -> ok | {error, not_found}: removes this
 * node's instance of Name and broadcasts the removal. */
static ERL_NIF_TERM svc_unregister_nif(ErlNifEnv *env, int argc,
                                       const ERL_NIF_TERM argv[])
{
    engine_res_t *res;
    reg_key_t k;
    int rc;

    if (argc != 2 || !get_svc(env, argv[0], &res))
        return enif_make_badarg(env);
    if (!svc_key_make(env, argv[1], &k))
        return error_tuple(env, TETHER_ENOTFOUND);
    enif_mutex_lock(res->lock);
    rc = tether_svctab_unregister(res->svc, k.data, k.len);
    enif_mutex_unlock(res->lock);
    reg_key_free(&k);
    return ok_or_error(env, rc);
}

/* Builds instances as terms (lookup visitor): {Node, Pid, Meta} cells of
 * `list`, or {ok, Pid, Meta} in `one` for svc_local. */
typedef struct svc_collect {
    ErlNifEnv *env;
    ERL_NIF_TERM list;
    ERL_NIF_TERM one;
} svc_collect_t;

static void svc_collect_visit(void *ctx, const uint8_t *name, size_t nlen,
                              const char *owner, const uint8_t *pid,
                              size_t plen, const uint8_t *meta, size_t mlen)
{
    svc_collect_t *c = ctx;
    ERL_NIF_TERM p, m;

    (void)name;
    (void)nlen;
    if (enif_binary_to_term(c->env, pid, plen, &p, 0) == 0 ||
        enif_binary_to_term(c->env, meta, mlen, &m, 0) == 0)
        return;
    c->one = enif_make_tuple3(c->env, am_ok, p, m);
    c->list = enif_make_list_cell(
        c->env, enif_make_tuple3(c->env, make_name(c->env, owner), p, m),
        c->list);
}

/* The body of svc_lookup/2 (local 0) and svc_local/2 (local 1), under
 * the read lock only. */
static ERL_NIF_TERM svc_find(ErlNifEnv *env, int argc,
                             const ERL_NIF_TERM argv[], int local)
{
    engine_res_t *res;
    svc_collect_t c = {env, enif_make_list(env, 0), am_undefined};
    reg_key_t k;

    if (argc != 2 || !get_svc(env, argv[0], &res))
        return enif_make_badarg(env);
    if (!svc_key_make(env, argv[1], &k))
        return local ? c.one : c.list;
    enif_rwlock_rlock(res->rw);
    if (!local)
        (void)tether_svctab_lookup(res->svc, k.data, k.len, svc_collect_visit,
                                   &c);
    else if (tether_svctab_local(res->svc, k.data, k.len, svc_collect_visit,
                                 &c) < 0)
        c.one = am_undefined;
    enif_rwlock_runlock(res->rw);
    reg_key_free(&k);
    return local ? c.one : c.list;
}

/*
 * svc_lookup(Engine, Name) -> [{Node :: binary(), Pid, Meta}]: every
 * instance of Name in the cluster, in no particular order. Reads the
 * table under the read lock only, as reg_whereis does.
 */
static ERL_NIF_TERM svc_lookup_nif(ErlNifEnv *env, int argc,
                                   const ERL_NIF_TERM argv[])
{
    return svc_find(env, argc, argv, 0);
}

/* svc_local(Engine, Name) -> {ok, Pid, Meta} | undefined: this node's own
 * instance of Name (read lock only). */
static ERL_NIF_TERM svc_local_nif(ErlNifEnv *env, int argc,
                                  const ERL_NIF_TERM argv[])
{
    return svc_find(env, argc, argv, 1);
}

static void svc_name_visit(void *ctx, const uint8_t *name, size_t nlen,
                           size_t instances)
{
    svc_collect_t *c = ctx;
    ERL_NIF_TERM n;

    (void)instances;
    if (enif_binary_to_term(c->env, name, nlen, &n, 0) == 0)
        return;
    c->list = enif_make_list_cell(c->env, n, c->list);
}

/* svc_names(Engine) -> [Name]: every service with at least one instance,
 * each once (read lock only). */
static ERL_NIF_TERM svc_names_nif(ErlNifEnv *env, int argc,
                                  const ERL_NIF_TERM argv[])
{
    engine_res_t *res;
    svc_collect_t c = {env, enif_make_list(env, 0), am_undefined};

    if (argc != 1 || !get_svc(env, argv[0], &res))
        return enif_make_badarg(env);
    enif_rwlock_rlock(res->rw);
    tether_svctab_names(res->svc, svc_name_visit, &c);
    enif_rwlock_runlock(res->rw);
    return c.list;
}

/* svc_info(Engine) -> #{count, digest, added, removed, replaced,
 * syncs_sent, syncs_recv, pulls_sent, bad_msgs, stale_msgs, dropped}. */
static ERL_NIF_TERM svc_info_nif(ErlNifEnv *env, int argc,
                                 const ERL_NIF_TERM argv[])
{
    static const char *const k[] = {"count",      "digest",     "added",
                                    "removed",    "replaced",   "syncs_sent",
                                    "syncs_recv", "pulls_sent", "bad_msgs",
                                    "stale_msgs", "dropped"};
#define SVC_INFO_N (sizeof k / sizeof k[0])
    engine_res_t *res;
    tether_svctab_stats_t st;
    uint64_t v[SVC_INFO_N];

    if (argc != 1 || !get_svc(env, argv[0], &res))
        return enif_make_badarg(env);
    enif_mutex_lock(res->lock);
    st = *tether_svctab_stats(res->svc);
    v[0] = tether_svctab_count(res->svc);
    v[1] = tether_svctab_digest(res->svc);
    enif_mutex_unlock(res->lock);
    v[2] = st.added, v[3] = st.removed, v[4] = st.replaced;
    v[5] = st.syncs_sent, v[6] = st.syncs_recv, v[7] = st.pulls_sent;
    v[8] = st.bad_msgs, v[9] = st.stale_msgs, v[10] = st.dropped;
    return counters_map(env, k, v, SVC_INFO_N);
#undef SVC_INFO_N
}

/* ------------------------------------------------------------- loading */

static int load(ErlNifEnv *env, void **priv_data, ERL_NIF_TERM load_info)
{
    (void)priv_data;
    (void)load_info;
    if (tether__crypto_init() < 0)
        return -1;
    engine_rt =
        enif_open_resource_type(env, NULL, "tether_engine", engine_dtor,
                                ERL_NIF_RT_CREATE | ERL_NIF_RT_TAKEOVER, NULL);
    if (engine_rt == NULL)
        return -1;
    am_ok = enif_make_atom(env, "ok");
    am_error = enif_make_atom(env, "error");
    am_true = enif_make_atom(env, "true");
    am_false = enif_make_atom(env, "false");
    am_send = enif_make_atom(env, "send");
    am_connect = enif_make_atom(env, "connect");
    am_member = enif_make_atom(env, "member");
    am_message = enif_make_atom(env, "message");
    am_reg_lost = enif_make_atom(env, "reg_lost");
    am_reg_resolve = enif_make_atom(env, "reg_resolve");
    am_service = enif_make_atom(env, "service");
    am_up = enif_make_atom(env, "up");
    am_down = enif_make_atom(env, "down");
    am_seeds = enif_make_atom(env, "seeds");
    am_seed_retry_ms = enif_make_atom(env, "seed_retry_ms");
    am_drop = enif_make_atom(env, "drop");
    am_defer = enif_make_atom(env, "defer");
    am_name = enif_make_atom(env, "name");
    am_incarnation = enif_make_atom(env, "incarnation");
    am_seed = enif_make_atom(env, "seed");
    am_heartbeat_ms = enif_make_atom(env, "heartbeat_ms");
    am_ttl_ms = enif_make_atom(env, "ttl_ms");
    am_hello_retry_ms = enif_make_atom(env, "hello_retry_ms");
    am_defer_max = enif_make_atom(env, "defer_max");
    am_cluster_secret = enif_make_atom(env, "cluster_secret");
    am_cookie = enif_make_atom(env, "cookie");
    am_identity_seed = enif_make_atom(env, "identity_seed");
    am_public_key = enif_make_atom(env, "public_key");
    am_left = enif_make_atom(env, "left");
    am_join_pending = enif_make_atom(env, "join_pending");
    am_join_contact = enif_make_atom(env, "join_contact");
    am_now = enif_make_atom(env, "now");
    am_stats = enif_make_atom(env, "stats");
    am_yes = enif_make_atom(env, "yes");
    am_no = enif_make_atom(env, "no");
    am_undefined = enif_make_atom(env, "undefined");
    am_deferred = enif_make_atom(env, "deferred");
    for (size_t i = 0; i < STATS_N; i++)
        am_stat[i] = enif_make_atom(env, stat_names[i]);
    return 0;
}

static int upgrade(ErlNifEnv *env, void **priv_data, void **old_priv_data,
                   ERL_NIF_TERM load_info)
{
    (void)old_priv_data;
    return load(env, priv_data, load_info);
}

static ErlNifFunc nif_funcs[] = {
    {"version", 0, version_nif, 0},
    {"engine_new", 1, engine_new_nif, 0},
    {"engine_recv", 3, engine_recv_nif, 0},
    {"engine_peer_up", 2, engine_peer_up_nif, 0},
    {"engine_peer_down", 2, engine_peer_down_nif, 0},
    {"engine_tick", 2, engine_tick_nif, 0},
    {"engine_next_deadline", 1, engine_next_deadline_nif, 0},
    {"engine_drain", 1, engine_drain_nif, 0},
    {"engine_join", 2, engine_join_nif, 0},
    {"engine_leave", 1, engine_leave_nif, 0},
    {"engine_members", 1, engine_members_nif, 0},
    {"engine_partition", 4, engine_partition_nif, 0},
    {"engine_heal", 2, engine_heal_nif, 0},
    {"engine_heal_all", 1, engine_heal_all_nif, 0},
    {"engine_partitions", 1, engine_partitions_nif, 0},
    {"engine_send", 3, engine_send_nif, 0},
    /* The same two on a dirty CPU scheduler, for payloads whose MAC and
     * copy take longer than a NIF may block a normal scheduler (up to
     * TETHER_ENV_MAX_PAYLOAD); the Erlang side picks one by size. */
    {"engine_recv_dirty", 3, engine_recv_nif, ERL_NIF_DIRTY_JOB_CPU_BOUND},
    {"engine_send_dirty", 3, engine_send_nif, ERL_NIF_DIRTY_JOB_CPU_BOUND},
    {"engine_seal", 3, engine_seal_nif, 0},
    {"engine_open", 3, engine_open_nif, 0},
    {"engine_seal_dirty", 3, engine_seal_nif, ERL_NIF_DIRTY_JOB_CPU_BOUND},
    {"engine_open_dirty", 3, engine_open_nif, ERL_NIF_DIRTY_JOB_CPU_BOUND},
    {"engine_info", 1, engine_info_nif, 0},
    {"engine_trust_add", 3, engine_trust_add_nif, 0},
    {"reg_register", 5, reg_register_nif, 0},
    {"reg_register_sealed", 5, reg_register_sealed_nif, 0},
    {"reg_unregister", 2, reg_unregister_nif, 0},
    {"reg_resolve", 3, reg_resolve_nif, 0},
    {"reg_whereis", 2, reg_whereis_nif, 0},
    {"reg_names", 1, reg_names_nif, 0},
    {"reg_entries", 1, reg_entries_nif, 0},
    {"reg_info", 1, reg_info_nif, 0},
    {"svc_register", 4, svc_register_nif, 0},
    {"svc_unregister", 2, svc_unregister_nif, 0},
    {"svc_lookup", 2, svc_lookup_nif, 0},
    {"svc_local", 2, svc_local_nif, 0},
    {"svc_names", 1, svc_names_nif, 0},
    {"svc_info", 1, svc_info_nif, 0},
};

ERL_NIF_INIT(tether_nif, nif_funcs, load, NULL, upgrade, NULL)
