/*
 * nif/services.c: the cluster service table (core/service_table.h) of an
 * engine resource as NIFs: register and unregister this node's instances
 * (through tether_server:engine_call/1, which sends what they queue), and
 * the lookups, which take only the read lock.
 */
#include <stdlib.h>
#include <string.h>

#include <ei.h>

#include "core/codec.h"
#include "nif/nif.h"
#include "tether/error.h"

/* Creates res's service table as a module of its engine; it shares the
 * registry's read-write lock. */
int tether__nif_services_attach(tether_nif_res_t *res, uint32_t digest_ms)
{
    tether_svctab_config_t scfg;

    tether_svctab_config_default(&scfg);
    scfg.digest_ms = digest_ms;
    scfg.wlock = tether__nif_wlock;
    scfg.wunlock = tether__nif_wunlock;
    scfg.lock_ctx = res->rw;
    return tether_svctab_new(&scfg, res->eng, &res->svc);
}

/* The service table of an engine term, or 0. */
static int get_svc(ErlNifEnv *env, ERL_NIF_TERM t, tether_nif_res_t **out)
{
    return tether__nif_get_res(env, t, out) && (*out)->svc != NULL;
}

/* Fills k for service name t, encoded as registry names are. Returns 1,
 * or 0 (no memory, too large). */
static int svc_key_make(ErlNifEnv *env, ERL_NIF_TERM t, tether_nif_key_t *k)
{
    if (!tether__nif_key_make(env, t, k))
        return 0;
    if (k->len > TETHER_SVC_NAME_MAX) {
        tether__nif_key_free(k);
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
ERL_NIF_TERM svc_register_nif(ErlNifEnv *env, int argc,
                              const ERL_NIF_TERM argv[])
{
    tether_nif_res_t *res;
    ErlNifBinary pid, meta;
    tether_nif_key_t k;
    int rc;

    if (argc != 4 || !get_svc(env, argv[0], &res) || !enif_is_pid(env, argv[2]))
        return enif_make_badarg(env);
    if (!svc_key_make(env, argv[1], &k))
        return tether__nif_error(env, TETHER_ETOOBIG);
    if (!enif_term_to_binary(env, argv[2], &pid)) {
        tether__nif_key_free(&k);
        return tether__nif_error(env, TETHER_ENOMEM);
    }
    if (!enif_term_to_binary(env, argv[3], &meta)) {
        enif_release_binary(&pid);
        tether__nif_key_free(&k);
        return tether__nif_error(env, TETHER_ENOMEM);
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
    tether__nif_key_free(&k);
    return tether__nif_ok(env, rc);
}

/* svc_unregister(Engine, Name) -> ok | {error, not_found}: removes this
 * node's instance of Name and broadcasts the removal. */
ERL_NIF_TERM svc_unregister_nif(ErlNifEnv *env, int argc,
                                const ERL_NIF_TERM argv[])
{
    tether_nif_res_t *res;
    tether_nif_key_t k;
    int rc;

    if (argc != 2 || !get_svc(env, argv[0], &res))
        return enif_make_badarg(env);
    if (!svc_key_make(env, argv[1], &k))
        return tether__nif_error(env, TETHER_ENOTFOUND);
    enif_mutex_lock(res->lock);
    rc = tether_svctab_unregister(res->svc, k.data, k.len);
    enif_mutex_unlock(res->lock);
    tether__nif_key_free(&k);
    return tether__nif_ok(env, rc);
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
    c->one = enif_make_tuple3(c->env, ATOM(ok), p, m);
    c->list = enif_make_list_cell(
        c->env,
        enif_make_tuple3(c->env, tether__nif_make_name(c->env, owner), p, m),
        c->list);
}

/* The body of svc_lookup/2 (local 0) and svc_local/2 (local 1), under
 * the read lock only. */
static ERL_NIF_TERM svc_find(ErlNifEnv *env, int argc,
                             const ERL_NIF_TERM argv[], int local)
{
    tether_nif_res_t *res;
    svc_collect_t c = {env, enif_make_list(env, 0), ATOM(undefined)};
    tether_nif_key_t k;

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
        c.one = ATOM(undefined);
    enif_rwlock_runlock(res->rw);
    tether__nif_key_free(&k);
    return local ? c.one : c.list;
}

/*
 * svc_lookup(Engine, Name) -> [{Node :: binary(), Pid, Meta}]: every
 * instance of Name in the cluster, in no particular order. Reads the
 * table under the read lock only, as reg_whereis does.
 */
ERL_NIF_TERM svc_lookup_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    return svc_find(env, argc, argv, 0);
}

/* svc_local(Engine, Name) -> {ok, Pid, Meta} | undefined: this node's own
 * instance of Name (read lock only). */
ERL_NIF_TERM svc_local_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
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
ERL_NIF_TERM svc_names_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    tether_nif_res_t *res;
    svc_collect_t c = {env, enif_make_list(env, 0), ATOM(undefined)};

    if (argc != 1 || !get_svc(env, argv[0], &res))
        return enif_make_badarg(env);
    enif_rwlock_rlock(res->rw);
    tether_svctab_names(res->svc, svc_name_visit, &c);
    enif_rwlock_runlock(res->rw);
    return c.list;
}

/* svc_info(Engine) -> #{count, digest, added, removed, replaced,
 * syncs_sent, syncs_recv, pulls_sent, bad_msgs, stale_msgs, dropped}. */
ERL_NIF_TERM svc_info_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    static const char *const k[] = {"count",      "digest",     "added",
                                    "removed",    "replaced",   "syncs_sent",
                                    "syncs_recv", "pulls_sent", "bad_msgs",
                                    "stale_msgs", "dropped"};
#define SVC_INFO_N (sizeof k / sizeof k[0])
    tether_nif_res_t *res;
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
    return tether__nif_counters(env, k, v, SVC_INFO_N);
#undef SVC_INFO_N
}
