/*
 * kv.c: a key-value service for a tether C-node, callable from stock
 * Erlang. Built as a plugin (priv/plugins/kv.so, loaded with
 * `tether_cnode --load`) and linked into the standalone kv_node.
 *
 * Module functions (rpc:call, erpc:call, multicall, ...):
 *   kv:put(Key, Value) -> ok
 *   kv:get(Key)        -> {ok, Value} | not_found
 *   kv:delete(Key)     -> ok
 *   kv:keys()          -> [Key]            (any order)
 * The registered service kv, over the same store:
 *   gen_server:call({kv, Node}, {put, K, V})  -> ok
 *   gen_server:call({kv, Node}, {get, K})     -> {ok, V} | not_found
 *   gen_server:call({kv, Node}, {delete, K})  -> ok
 *   gen_server:call({kv, Node}, keys)         -> [Key]
 *   gen_server:call({kv, Node}, {crash, R})   -> the service exits with
 *                                                reason R (a demo of
 *                                                crash reporting)
 *   gen_server:cast({kv, Node}, {put, K, V})
 * Any other call is answered {error, bad_request}.
 *
 * Keys and values are any terms. Keys are compared as Erlang compares
 * them (=:=), values come back exactly as stored.
 */
#include <stdlib.h>
#include <string.h>

#include "kv_store.h"
#include "tether/tether.h"

/* The one store shared by the functions and the service. */
static kv_store_t *store;

/* Copies the term at b[idx] into x as a 131-prefixed term; advances idx. */
static int slice(const char *b, int *idx, ei_x_buff *x)
{
    int start = *idx;
    if (ei_skip_term(b, idx) < 0 || ei_x_new_with_version(x) < 0)
        return TETHER_EINVAL;
    if (ei_x_append_buf(x, b + start, *idx - start) < 0) {
        ei_x_free(x);
        return TETHER_ENOMEM;
    }
    return 0;
}

/* Builds the reply to get: {ok, Value} or not_found. */
static int get_reply(const char *b, int *idx, ei_x_buff *out)
{
    ei_x_buff k;
    int rc = slice(b, idx, &k);
    if (rc < 0)
        return rc;
    const char *v;
    size_t vlen;
    rc = kv_store_get(store, k.buff, (size_t)k.index, &v, &vlen);
    ei_x_free(&k);
    if (ei_x_new_with_version(out) < 0)
        return TETHER_ENOMEM;
    int e;
    if (rc == TETHER_ENOTFOUND) {
        e = ei_x_encode_atom(out, "not_found");
    } else if (rc < 0) {
        ei_x_free(out);
        return rc;
    } else {
        e = ei_x_encode_tuple_header(out, 2);
        e |= ei_x_encode_atom(out, "ok");
        e |= ei_x_append_buf(out, v + 1, (int)vlen - 1);
    }
    if (e) {
        ei_x_free(out);
        return TETHER_ENOMEM;
    }
    return 0;
}

static int do_put(const char *b, int *idx)
{
    ei_x_buff k, v;
    int rc = slice(b, idx, &k);
    if (rc < 0)
        return rc;
    rc = slice(b, idx, &v);
    if (rc == 0) {
        rc = kv_store_put(store, k.buff, (size_t)k.index, v.buff,
                          (size_t)v.index);
        ei_x_free(&v);
    }
    ei_x_free(&k);
    return rc;
}

static int do_delete(const char *b, int *idx)
{
    ei_x_buff k;
    int rc = slice(b, idx, &k);
    if (rc < 0)
        return rc;
    rc = kv_store_delete(store, k.buff, (size_t)k.index);
    ei_x_free(&k);
    return rc == TETHER_ENOTFOUND ? 0 : rc;
}

static int keys_reply(ei_x_buff *out)
{
    if (ei_x_new_with_version(out) < 0)
        return TETHER_ENOMEM;
    int rc = kv_store_keys(store, out);
    if (rc < 0)
        ei_x_free(out);
    return rc;
}

/* ---- module functions ---------------------------------------------- */

static void fail(tether_call_t *call, int rc)
{
    (void)tether_call_raise_atom(
        call, TETHER_ERROR, rc == TETHER_ENOMEM ? "system_limit" : "badarg");
}

static void fn_put(tether_call_t *call, const char *args, int idx, int argc,
                   void *ctx)
{
    (void)argc;
    (void)ctx;
    int rc = do_put(args, &idx);
    if (rc < 0)
        fail(call, rc);
    else
        (void)tether_call_return_atom(call, "ok");
}

static void fn_get(tether_call_t *call, const char *args, int idx, int argc,
                   void *ctx)
{
    (void)argc;
    (void)ctx;
    ei_x_buff r;
    int rc = get_reply(args, &idx, &r);
    if (rc < 0) {
        fail(call, rc);
        return;
    }
    (void)tether_call_return(call, r.buff, (size_t)r.index);
    ei_x_free(&r);
}

static void fn_delete(tether_call_t *call, const char *args, int idx, int argc,
                      void *ctx)
{
    (void)argc;
    (void)ctx;
    int rc = do_delete(args, &idx);
    if (rc < 0)
        fail(call, rc);
    else
        (void)tether_call_return_atom(call, "ok");
}

static void fn_keys(tether_call_t *call, const char *args, int idx, int argc,
                    void *ctx)
{
    (void)args;
    (void)idx;
    (void)argc;
    (void)ctx;
    ei_x_buff r;
    int rc = keys_reply(&r);
    if (rc < 0) {
        fail(call, rc);
        return;
    }
    (void)tether_call_return(call, r.buff, (size_t)r.index);
    ei_x_free(&r);
}

/* ---- the service ----------------------------------------------------- */

static void svc_call(tether_service_t *svc, tether_from_t *from, const char *b,
                     int idx, void *ctx)
{
    (void)ctx;
    char tag[MAXATOMLEN_UTF8];
    int arity = 0, type, size, t = idx;
    ei_x_buff r;
    if (ei_get_type(b, &t, &type, &size) == 0 &&
        (type == ERL_SMALL_TUPLE_EXT || type == ERL_LARGE_TUPLE_EXT)) {
        (void)ei_decode_tuple_header(b, &idx, &arity);
    }
    if (ei_decode_atom(b, &idx, tag) < 0)
        goto bad;
    if (strcmp(tag, "keys") == 0 && arity == 0) {
        if (keys_reply(&r) < 0)
            goto bad;
        (void)tether_reply(from, r.buff, (size_t)r.index);
        ei_x_free(&r);
        return;
    }
    if (strcmp(tag, "get") == 0 && arity == 2) {
        if (get_reply(b, &idx, &r) < 0)
            goto bad;
        (void)tether_reply(from, r.buff, (size_t)r.index);
        ei_x_free(&r);
        return;
    }
    if (strcmp(tag, "put") == 0 && arity == 3) {
        if (do_put(b, &idx) < 0)
            goto bad;
        (void)tether_reply_atom(from, "ok");
        return;
    }
    if (strcmp(tag, "delete") == 0 && arity == 2) {
        if (do_delete(b, &idx) < 0)
            goto bad;
        (void)tether_reply_atom(from, "ok");
        return;
    }
    if (strcmp(tag, "crash") == 0 && arity == 2) {
        ei_x_buff reason;
        tether_from_free(from); /* no reply: the caller sees the exit */
        if (slice(b, &idx, &reason) < 0)
            return;
        tether_service_exit(svc, reason.buff, (size_t)reason.index);
        ei_x_free(&reason);
        return;
    }
bad:
    if (ei_x_new_with_version(&r) == 0) {
        if (ei_x_encode_tuple_header(&r, 2) == 0 &&
            ei_x_encode_atom(&r, "error") == 0 &&
            ei_x_encode_atom(&r, "bad_request") == 0) {
            (void)tether_reply(from, r.buff, (size_t)r.index);
            ei_x_free(&r);
            return;
        }
        ei_x_free(&r);
    }
    tether_from_free(from);
}

static void svc_cast(tether_service_t *svc, const char *b, int idx, void *ctx)
{
    (void)svc;
    (void)ctx;
    char tag[MAXATOMLEN_UTF8];
    int arity;
    if (ei_decode_tuple_header(b, &idx, &arity) == 0 && arity == 3 &&
        ei_decode_atom(b, &idx, tag) == 0 && strcmp(tag, "put") == 0)
        (void)do_put(b, &idx);
}

static void svc_terminate(tether_service_t *svc, const char *reason, size_t len,
                          void *ctx)
{
    (void)ctx;
    char text[256] = "";
    (void)tether_term_format(reason, len, text, sizeof text);
    tether_node_log(tether_service_node(svc), TETHER_LOG_INFO,
                    "kv service exited: %s", text);
    /* On a crash the store stays: the module functions keep using it,
     * whatever the reason (a service may crash with reason shutdown).
     * Only when the node itself is going down does nothing run any more. */
    if (tether_node_stopping(tether_service_node(svc))) {
        kv_store_free(store);
        store = NULL;
    }
}

int tether_plugin_init(tether_node_t *node)
{
    static const struct {
        const char *name;
        int arity;
        tether_function_fn fn;
    } fns[] = {
        {"put", 2, fn_put},
        {"get", 1, fn_get},
        {"delete", 1, fn_delete},
        {"keys", 0, fn_keys},
    };
    static const tether_service_ops_t ops = {
        .call = svc_call,
        .cast = svc_cast,
        .terminate = svc_terminate,
    };
    if (store == NULL && (store = kv_store_new()) == NULL)
        return TETHER_ENOMEM;
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        int rc = tether_function_register(node, "kv", fns[i].name, fns[i].arity,
                                          fns[i].fn, NULL);
        if (rc < 0)
            return rc;
    }
    return tether_service_register(node, "kv", &ops, NULL, NULL);
}
