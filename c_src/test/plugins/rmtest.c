/*
 * test/plugins/rmtest.c: reminders from C on a C-node, as a tether_cnode
 * plugin (test support, built to c_src/build/plugins/rmtest.so). At load
 * it subscribes one C callback to the node's reminders
 * (tether_cluster_subscribe_reminders) that records every delivery; the
 * common_test suites read them with erpc:
 *
 *   take()                     -> [{Key, Payload, Fence, ArrivalMs}]
 *                                 (oldest first; the record is emptied)
 *   remind(Key, AtMs, Payload, Skip) -> ok | {error, Reason}, answered
 *                                 once a majority holds it
 *                                 (tether_cluster_remind)
 *   cancel(Key)                -> ok | {error, Reason}
 *   get(Key)                   -> {ok, AtMs, Payload} | not_found |
 *                                 {error, Reason}
 *   subscribe(Bool)            -> ok: the callback subscribed (true, as at
 *                                 load) or not (false: fires are held)
 *
 * ArrivalMs is the wall clock (erlang:system_time(millisecond)) when the
 * callback ran.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tether/tether.h"

static ei_x_buff got;   /* the recorded deliveries, list elements */
static long ngot;

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Appends one ETF value (131-prefixed) as a term. */
static int append_term(ei_x_buff *x, const char *etf, size_t len)
{
    return len < 1 ? -1 : ei_x_append_buf(x, etf + 1, (int)len - 1);
}

static void on_reminder(tether_node_t *node, const char *key, size_t klen,
                        const char *payload, size_t plen, uint64_t fence,
                        void *ctx)
{
    (void)node;
    (void)ctx;
    if (ei_x_encode_tuple_header(&got, 4) == 0 &&
        append_term(&got, key, klen) == 0 &&
        append_term(&got, payload, plen) == 0 &&
        ei_x_encode_ulonglong(&got, fence) == 0 &&
        ei_x_encode_longlong(&got, wall_ms()) == 0)
        ngot++;
}

static const char *reason(int rc)
{
    switch (rc) {
    case TETHER_ETIMEDOUT:
        return "timeout";
    case TETHER_ECLOSED:
        return "left";
    case TETHER_ETOOBIG:
        return "payload_too_large";
    case TETHER_EINVAL:
        return "badarg";
    default:
        return "failed";
    }
}

static void raise_badarg(tether_call_t *call)
{
    (void)tether_call_raise_atom(call, TETHER_ERROR, "badarg");
}

/* Returns ok or {error, Reason} for rc. */
static void return_status(tether_call_t *call, int rc)
{
    ei_x_buff x;

    if (rc == 0) {
        (void)tether_call_return_atom(call, "ok");
        return;
    }
    if (ei_x_new_with_version(&x) == 0 && ei_x_encode_tuple_header(&x, 2) == 0 &&
        ei_x_encode_atom(&x, "error") == 0 &&
        ei_x_encode_atom(&x, reason(rc)) == 0)
        (void)tether_call_return(call, x.buff, (size_t)x.index);
    else
        raise_badarg(call);
    ei_x_free(&x);
}

static void write_done(tether_node_t *node, int status, void *ctx)
{
    (void)node;
    return_status(ctx, status);
}

static void got_one(tether_node_t *node, int status, int64_t at,
                    const char *payload, size_t plen, void *ctx)
{
    tether_call_t *call = ctx;
    ei_x_buff x;

    (void)node;
    if (status < 0) {
        return_status(call, status);
        return;
    }
    if (status == 0) {
        (void)tether_call_return_atom(call, "not_found");
        return;
    }
    if (ei_x_new_with_version(&x) == 0 && ei_x_encode_tuple_header(&x, 3) == 0 &&
        ei_x_encode_atom(&x, "ok") == 0 && ei_x_encode_longlong(&x, at) == 0 &&
        append_term(&x, payload, plen) == 0)
        (void)tether_call_return(call, x.buff, (size_t)x.index);
    else
        raise_badarg(call);
    ei_x_free(&x);
}

/* The term at args[*idx] (advanced past it) as a fresh 131-prefixed
 * buffer. 0 or -1. */
static int arg_term(const char *args, int *idx, ei_x_buff *out)
{
    int start = *idx;

    if (ei_skip_term(args, idx) < 0 || ei_x_new_with_version(out) < 0)
        return -1;
    if (ei_x_append_buf(out, args + start, *idx - start) < 0) {
        ei_x_free(out);
        return -1;
    }
    return 0;
}

static void fn_take(tether_call_t *call, const char *args, int idx, int argc,
                    void *ctx)
{
    ei_x_buff x;

    (void)args;
    (void)idx;
    (void)argc;
    (void)ctx;
    if (ei_x_new_with_version(&x) == 0 &&
        (ngot == 0 || ei_x_encode_list_header(&x, ngot) == 0) &&
        ei_x_append_buf(&x, got.buff, got.index) == 0 &&
        ei_x_encode_empty_list(&x) == 0) {
        (void)tether_call_return(call, x.buff, (size_t)x.index);
        got.index = 0;
        ngot = 0;
    } else {
        raise_badarg(call);
    }
    ei_x_free(&x);
}

static void fn_remind(tether_call_t *call, const char *args, int idx, int argc,
                      void *ctx)
{
    ei_x_buff key, payload;
    long long at;
    int skip = 0, rc;

    (void)argc;
    (void)ctx;
    if (arg_term(args, &idx, &key) < 0)
        return raise_badarg(call);
    if (ei_decode_longlong(args, &idx, &at) < 0 ||
        arg_term(args, &idx, &payload) < 0) {
        ei_x_free(&key);
        return raise_badarg(call);
    }
    if (ei_decode_boolean(args, &idx, &skip) < 0) {
        ei_x_free(&key);
        ei_x_free(&payload);
        return raise_badarg(call);
    }
    rc = tether_cluster_remind(tether_call_node(call), key.buff,
                               (size_t)key.index, at, payload.buff,
                               (size_t)payload.index,
                               skip ? TETHER_CLUSTER_REMINDER_SKIP : 0,
                               write_done, call);
    ei_x_free(&key);
    ei_x_free(&payload);
    if (rc < 0)
        return_status(call, rc);
}

/* cancel(Key) and get(Key): the C call on the key, answered by its
 * callback (or at once with the error). */
static void key_call(tether_call_t *call, const char *args, int idx,
                     int get)
{
    tether_node_t *node = tether_call_node(call);
    ei_x_buff key;
    int rc;

    if (arg_term(args, &idx, &key) < 0)
        return raise_badarg(call);
    rc = get ? tether_cluster_reminder(node, key.buff, (size_t)key.index,
                                       got_one, call)
             : tether_cluster_cancel_reminder(node, key.buff,
                                              (size_t)key.index, write_done,
                                              call);
    ei_x_free(&key);
    if (rc < 0)
        return_status(call, rc);
}

static void fn_cancel(tether_call_t *call, const char *args, int idx, int argc,
                      void *ctx)
{
    (void)argc;
    (void)ctx;
    key_call(call, args, idx, 0);
}

static void fn_get(tether_call_t *call, const char *args, int idx, int argc,
                   void *ctx)
{
    (void)argc;
    (void)ctx;
    key_call(call, args, idx, 1);
}

static void fn_subscribe(tether_call_t *call, const char *args, int idx,
                         int argc, void *ctx)
{
    tether_node_t *node = tether_call_node(call);
    int on = 0, rc;

    (void)argc;
    (void)ctx;
    if (ei_decode_boolean(args, &idx, &on) < 0)
        return raise_badarg(call);
    rc = on ? tether_cluster_subscribe_reminders(node, on_reminder, NULL)
            : tether_cluster_unsubscribe_reminders(node, on_reminder, NULL);
    return_status(call, rc == TETHER_EEXIST || rc == TETHER_ENOTFOUND ? 0 : rc);
}

int tether_plugin_init(tether_node_t *node)
{
    static const struct {
        const char *name;
        int arity;
        tether_function_fn fn;
    } fns[] = {
        {"take", 0, fn_take},
        {"remind", 4, fn_remind},
        {"cancel", 1, fn_cancel},
        {"get", 1, fn_get},
        {"subscribe", 1, fn_subscribe},
    };
    int rc;

    if (ei_x_new(&got) < 0)
        return TETHER_ENOMEM;
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        rc = tether_function_register(node, "rmtest", fns[i].name,
                                      fns[i].arity, fns[i].fn, NULL);
        if (rc < 0)
            return rc;
    }
    return tether_cluster_subscribe_reminders(node, on_reminder, NULL);
}
