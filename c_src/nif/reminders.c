/*
 * nif/reminders.c: reminders (core/reminders.h) as NIFs.
 *
 * Every call changes or reads the module inside the engine, so each takes
 * the resource's mutex (the tether server makes the writes; reads may
 * come from any process). Keys are the canonical encoding of the term
 * (core/ring.h), as the C-node encodes the same term; payloads are
 * term_to_binary of the term, at most TETHER_REMINDER_PAYLOAD_MAX bytes.
 */
#include <stdlib.h>
#include <string.h>

#include "core/reminders.h"
#include "nif/nif.h"
#include "tether/error.h"

static ERL_NIF_TERM stat_atoms[TETHER_REMINDERS_STATS_N];

void tether__nif_reminders_load(ErlNifEnv *env)
{
    tether_reminders_stats_t zero = {0};
    tether_reminders_stat_t v[TETHER_REMINDERS_STATS_N];

    tether_reminders_stats_list(&zero, v);
    for (size_t i = 0; i < TETHER_REMINDERS_STATS_N; i++)
        stat_atoms[i] = enif_make_atom(env, v[i].name);
}

/* Reads an optional non-negative integer option of at most max. */
static int opt(ErlNifEnv *env, ERL_NIF_TERM map, const char *name, uint64_t max,
               uint64_t *out)
{
    ERL_NIF_TERM k, t;
    ErlNifUInt64 v;

    if (!enif_make_existing_atom(env, name, &k, ERL_NIF_LATIN1) ||
        !enif_get_map_value(env, map, k, &t))
        return 1;
    if (!enif_get_uint64(env, t, &v) || v > max)
        return 0;
    *out = v;
    return 1;
}

int tether__nif_reminders_attach(tether_nif_res_t *res, ErlNifEnv *env,
                                 ERL_NIF_TERM opts)
{
    tether_reminders_config_t cfg = {.ring = res->ring};
    uint64_t rep = 0, hold = 0, tomb = 0, settle = 0, missed = 0, hand = 0,
             round = 0, op = 0;

    if (!opt(env, opts, "reminder_replicas", TETHER_RING_TOP, &rep) ||
        !opt(env, opts, "reminder_hold_ms", UINT64_MAX / 4, &hold) ||
        !opt(env, opts, "reminder_tomb_ms", UINT32_MAX, &tomb) ||
        !opt(env, opts, "reminder_settle_ms", UINT32_MAX, &settle) ||
        !opt(env, opts, "reminder_missed_ms", UINT32_MAX, &missed) ||
        !opt(env, opts, "reminder_handoff_ms", UINT32_MAX, &hand) ||
        !opt(env, opts, "reminder_round_ms", UINT32_MAX, &round) ||
        !opt(env, opts, "reminder_op_timeout_ms", UINT32_MAX, &op))
        return TETHER_EINVAL;
    cfg.replicas = (uint32_t)rep;
    cfg.hold_ms = hold;
    cfg.tomb_ms = tomb;
    cfg.settle_ms = (uint32_t)settle;
    cfg.missed_ms = (uint32_t)missed;
    cfg.handoff_ms = (uint32_t)hand;
    cfg.round_ms = (uint32_t)round;
    cfg.op_timeout_ms = (uint32_t)op;
    return tether_reminders_new(&cfg, res->eng, &res->reminders);
}

static int get_rm(ErlNifEnv *env, ERL_NIF_TERM t, tether_nif_res_t **res)
{
    return tether__nif_get_res(env, t, res) && (*res)->reminders != NULL;
}

static ERL_NIF_TERM error_of(ErlNifEnv *env, int rc)
{
    if (rc == TETHER_ECLOSED)
        return enif_make_tuple2(env, ATOM(error), ATOM(left));
    if (rc == TETHER_ETOOBIG)
        return enif_make_tuple2(env, ATOM(error), ATOM(payload_too_large));
    return tether__nif_error(env, rc);
}

/*
 * reminders_set(Engine, Key, FireAtMs, Payload, Skip, Ref) -> ok |
 *   {error, bad_key | payload_too_large | left | Reason}: the outcome
 * comes as the action {reminder_reply, Ref, ok | timeout}. badarg for a
 * FireAtMs that is not a 64-bit integer, a Skip not a boolean, a Ref not
 * a 64-bit unsigned integer.
 */
ERL_NIF_TERM reminders_set_nif(ErlNifEnv *env, int argc,
                               const ERL_NIF_TERM argv[])
{
    tether_nif_res_t *res;
    tether_nif_canon_t key;
    ErlNifSInt64 fire_at;
    ErlNifUInt64 ref;
    ErlNifBinary pay;
    int rc;

    if (argc != 6 || !get_rm(env, argv[0], &res) ||
        !enif_get_int64(env, argv[2], &fire_at) ||
        (!enif_is_identical(argv[4], ATOM(true)) &&
         !enif_is_identical(argv[4], ATOM(false))) ||
        !enif_get_uint64(env, argv[5], &ref))
        return enif_make_badarg(env);
    if (!tether__nif_canon(env, argv[1], TETHER_REMINDER_KEY_MAX, &key))
        return enif_make_tuple2(env, ATOM(error), ATOM(bad_key));
    if (!enif_term_to_binary(env, argv[3], &pay)) {
        tether__nif_canon_free(&key);
        return tether__nif_error(env, TETHER_ENOMEM);
    }
    enif_mutex_lock(res->lock);
    rc = tether_reminders_set(
        res->reminders, key.data, key.len, fire_at, pay.data, pay.size,
        enif_is_identical(argv[4], ATOM(true)) ? TETHER_REMINDER_SKIP : 0, ref);
    enif_mutex_unlock(res->lock);
    enif_release_binary(&pay);
    tether__nif_canon_free(&key);
    return rc < 0 ? error_of(env, rc) : ATOM(ok);
}

/* reminders_cancel(Engine, Key, Ref) -> ok | {error, Reason}: answered
 * as set is. */
ERL_NIF_TERM reminders_cancel_nif(ErlNifEnv *env, int argc,
                                  const ERL_NIF_TERM argv[])
{
    tether_nif_res_t *res;
    tether_nif_canon_t key;
    ErlNifUInt64 ref;
    int rc;

    if (argc != 3 || !get_rm(env, argv[0], &res) ||
        !enif_get_uint64(env, argv[2], &ref))
        return enif_make_badarg(env);
    if (!tether__nif_canon(env, argv[1], TETHER_REMINDER_KEY_MAX, &key))
        return enif_make_tuple2(env, ATOM(error), ATOM(bad_key));
    enif_mutex_lock(res->lock);
    rc = tether_reminders_cancel(res->reminders, key.data, key.len, ref);
    enif_mutex_unlock(res->lock);
    tether__nif_canon_free(&key);
    return rc < 0 ? error_of(env, rc) : ATOM(ok);
}

/*
 * reminders_get(Engine, Key, Ref) -> {ok, FireAtMs, PayloadBin} |
 *   not_found | pending (the primary was asked: the answer comes as the
 * action {reminder_reply, Ref, {found, FireAt, PayloadBin} | not_found |
 * timeout}) | {error, bad_key}.
 */
ERL_NIF_TERM reminders_get_nif(ErlNifEnv *env, int argc,
                               const ERL_NIF_TERM argv[])
{
    tether_nif_res_t *res;
    tether_nif_canon_t key;
    ErlNifUInt64 ref;
    int64_t fire_at = 0;
    const uint8_t *p = NULL;
    size_t pl = 0;
    ERL_NIF_TERM ret;
    int rc;

    if (argc != 3 || !get_rm(env, argv[0], &res) ||
        !enif_get_uint64(env, argv[2], &ref))
        return enif_make_badarg(env);
    if (!tether__nif_canon(env, argv[1], TETHER_REMINDER_KEY_MAX, &key))
        return enif_make_tuple2(env, ATOM(error), ATOM(bad_key));
    enif_mutex_lock(res->lock);
    rc = tether_reminders_get(res->reminders, key.data, key.len, ref, &fire_at,
                              &p, &pl);
    if (rc == 1)
        ret = enif_make_tuple3(env, ATOM(ok), enif_make_int64(env, fire_at),
                               tether__nif_make_bytes(env, p, pl));
    else if (rc == 0)
        ret = ATOM(not_found);
    else if (rc == 2)
        ret = ATOM(pending);
    else
        ret = tether__nif_error(env, rc);
    enif_mutex_unlock(res->lock);
    tether__nif_canon_free(&key);
    return ret;
}

/* reminders_subscribers(Engine, N) -> ok: how many subscribers this node
 * has now (held fires go out once it is above 0). */
ERL_NIF_TERM reminders_subscribers_nif(ErlNifEnv *env, int argc,
                                       const ERL_NIF_TERM argv[])
{
    tether_nif_res_t *res;
    ErlNifUInt64 n;

    if (argc != 2 || !get_rm(env, argv[0], &res) ||
        !enif_get_uint64(env, argv[1], &n))
        return enif_make_badarg(env);
    enif_mutex_lock(res->lock);
    tether_reminders_subscribers(res->reminders, (size_t)n);
    enif_mutex_unlock(res->lock);
    return ATOM(ok);
}

/* reminders_load(Engine, RecordBin) -> ok | {error, bad_record}: one
 * persisted record (a reminder_store action's bytes) fed back at start. */
ERL_NIF_TERM reminders_load_nif(ErlNifEnv *env, int argc,
                                const ERL_NIF_TERM argv[])
{
    tether_nif_res_t *res;
    ErlNifBinary b;
    int rc;

    if (argc != 2 || !get_rm(env, argv[0], &res) ||
        !enif_inspect_binary(env, argv[1], &b))
        return enif_make_badarg(env);
    enif_mutex_lock(res->lock);
    rc = tether_reminders_load(res->reminders, b.data, b.size);
    enif_mutex_unlock(res->lock);
    if (rc == TETHER_EPROTO)
        return enif_make_tuple2(env, ATOM(error), ATOM(bad_record));
    return tether__nif_ok(env, rc);
}

static void dump_one(void *ctx, const uint8_t *rec, size_t len)
{
    (void)tether__nif_bins_add(ctx, rec, len);
}

/* reminders_dump(Engine) -> [RecordBin]: every record held (live and
 * tombstones), as reminder_store actions carry them (log compaction). */
ERL_NIF_TERM reminders_dump_nif(ErlNifEnv *env, int argc,
                                const ERL_NIF_TERM argv[])
{
    tether_nif_res_t *res;
    tether_nif_bins_t d = {env, enif_make_list(env, 0)};

    if (argc != 1 || !get_rm(env, argv[0], &res))
        return enif_make_badarg(env);
    enif_mutex_lock(res->lock);
    tether_reminders_each(res->reminders, dump_one, &d);
    enif_mutex_unlock(res->lock);
    return d.list;
}

/* reminders_info(Engine) -> #{Counter => N, overhead_bytes => N}. */
ERL_NIF_TERM reminders_info_nif(ErlNifEnv *env, int argc,
                                const ERL_NIF_TERM argv[])
{
    tether_nif_res_t *res;
    tether_reminders_stats_t st;
    tether_reminders_stat_t v[TETHER_REMINDERS_STATS_N];
    ERL_NIF_TERM keys[TETHER_REMINDERS_STATS_N + 1],
        vals[TETHER_REMINDERS_STATS_N + 1], map;
    size_t over;

    if (argc != 1 || !get_rm(env, argv[0], &res))
        return enif_make_badarg(env);
    enif_mutex_lock(res->lock);
    st = *tether_reminders_stats(res->reminders);
    over = tether_reminders_overhead(res->reminders);
    enif_mutex_unlock(res->lock);
    tether_reminders_stats_list(&st, v);
    for (size_t i = 0; i < TETHER_REMINDERS_STATS_N; i++) {
        keys[i] = stat_atoms[i];
        vals[i] = enif_make_uint64(env, v[i].value);
    }
    keys[TETHER_REMINDERS_STATS_N] = enif_make_atom(env, "overhead_bytes");
    vals[TETHER_REMINDERS_STATS_N] = enif_make_uint64(env, over);
    if (!enif_make_map_from_arrays(env, keys, vals,
                                   TETHER_REMINDERS_STATS_N + 1, &map))
        return tether__nif_error(env, TETHER_ENOMEM);
    return map;
}

ERL_NIF_TERM tether__nif_reminder_action(ErlNifEnv *env,
                                         const tether_action_t *a)
{
    ERL_NIF_TERM st;

    switch (a->kind) {
    case TETHER_ACT_REMINDER:
        return enif_make_tuple4(
            env, enif_make_atom(env, "reminder"),
            tether__nif_make_bytes(env, a->u.reminder.key.ptr,
                                   a->u.reminder.key.len),
            tether__nif_make_bytes(env, a->u.reminder.payload.ptr,
                                   a->u.reminder.payload.len),
            enif_make_uint64(env, a->u.reminder.fence));
    case TETHER_ACT_REMINDER_REPLY:
        switch (a->u.reminder_reply.status) {
        case TETHER_REMINDER_OK:
            st = ATOM(ok);
            break;
        case TETHER_REMINDER_FOUND:
            st = enif_make_tuple3(
                env, enif_make_atom(env, "found"),
                enif_make_int64(env, a->u.reminder_reply.fire_at),
                tether__nif_make_bytes(env, a->u.reminder_reply.payload.ptr,
                                       a->u.reminder_reply.payload.len));
            break;
        case TETHER_REMINDER_NOT_FOUND:
            st = ATOM(not_found);
            break;
        default:
            st = ATOM(timeout);
        }
        return enif_make_tuple3(env, enif_make_atom(env, "reminder_reply"),
                                enif_make_uint64(env, a->u.reminder_reply.ref),
                                st);
    default:
        return enif_make_tuple2(
            env, enif_make_atom(env, "reminder_store"),
            tether__nif_make_bytes(env, a->u.reminder_store.rec.ptr,
                                   a->u.reminder_store.rec.len));
    }
}
