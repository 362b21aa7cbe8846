/*
 * cnode/erlang_call.c: calls from C into Erlang (tether/erlang_call.h),
 * made the way erpc:call/5 makes them: a SPAWN_REQUEST of
 * erpc:execute_call(Ref, M, F, A) with a monitor, sent from rex
 * (spawn_out.c); the outcome is read from the monitor's DOWN reason.
 * A refused spawn, the timeout and the connection going down end the
 * call with erpc's own errors ({erpc, Why}).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cnode/internal.h"
#include "tether/erlang_call.h"
#include "tether/term.h"

typedef struct tether__out_call out_call_t;

/* One call waiting for its outcome (node->outs). */
struct tether__out_call {
    out_call_t *next;
    char peer[TETHER_NAME_MAX];
    char module[TETHER_NAME_MAX];
    char function[TETHER_NAME_MAX];
    unsigned timeout_ms;
    erlang_ref req_id;
    ei_x_buff res; /* our Ref term, without 131 */
    tether_timer_id_t timer;
    bool has_timer;
    tether_result_fn done;
    void *ctx;
    size_t args_len;
    char args[];
};

static void out_unlink(tether_node_t *node, out_call_t *oc)
{
    for (out_call_t **pp = &node->outs; *pp; pp = &(*pp)->next)
        if (*pp == oc) {
            *pp = oc->next;
            return;
        }
}

static void out_free(out_call_t *oc)
{
    ei_x_free(&oc->res);
    free(oc);
}

/* Ends oc with status and term (131-prefixed), then frees it. */
static void out_finish(tether_node_t *node, out_call_t *oc, int status,
                       const char *term, size_t len)
{
    out_unlink(node, oc);
    if (oc->has_timer)
        (void)tether_node_timer_cancel(node, oc->timer);
    oc->done(node, status, term, len, oc->ctx);
    out_free(oc);
}

/* ERROR {erpc, Atom}: what erpc:call raises for its own failures. */
static void out_fail(tether_node_t *node, out_call_t *oc, const char *atom)
{
    ei_x_buff x;
    if (ei_x_new_with_version(&x) < 0) {
        out_finish(node, oc, TETHER_ENOMEM, NULL, 0);
        return;
    }
    int rc = ei_x_encode_tuple_header(&x, 2);
    rc |= ei_x_encode_atom(&x, "erpc");
    rc |= ei_x_encode_atom(&x, atom);
    if (rc == 0)
        out_finish(node, oc, TETHER_ERROR, x.buff, (size_t)x.index);
    else
        out_finish(node, oc, TETHER_ENOMEM, NULL, 0);
    ei_x_free(&x);
}

static out_call_t *out_find(tether_node_t *node, const erlang_ref *ref)
{
    for (out_call_t *oc = node->outs; oc; oc = oc->next)
        if (tether_ref_eq(&oc->req_id, ref))
            return oc;
    return NULL;
}

static void out_timeout(tether_node_t *node, void *arg)
{
    out_call_t *oc = arg;
    oc->has_timer = false;
    out_fail(node, oc, "timeout");
}

static void out_reply(tether_node_t *node, const erlang_ref *req_id,
                      const erlang_pid *pid, const char *err, size_t err_len)
{
    out_call_t *oc = out_find(node, req_id);
    if (oc == NULL || pid != NULL)
        return; /* success: the answer comes as the DOWN */
    char a[MAXATOMLEN_UTF8];
    int idx = 1;
    if (err && err_len > 1 && ei_decode_atom(err, &idx, a) == 0)
        out_fail(node, oc, a);
    else
        out_fail(node, oc, "badarg");
}

static bool out_down(tether_node_t *node, const erlang_ref *ref,
                     const char *reason, size_t len)
{
    out_call_t *oc = out_find(node, ref);
    if (oc == NULL)
        return false;
    ei_x_buff x;
    if (ei_x_new_with_version(&x) < 0) {
        out_finish(node, oc, TETHER_ENOMEM, NULL, 0);
        return true;
    }
    int st = tether__erpc_decode_reason(reason, len, oc->res.buff,
                                        (size_t)oc->res.index, &x);
    if (st < 0)
        out_finish(node, oc, st, reason, len);
    else
        out_finish(node, oc, st, x.buff, (size_t)x.index);
    ei_x_free(&x);
    return true;
}

static void out_nodedown(tether_node_t *node, const char *peer)
{
    out_call_t *oc = node->outs;
    while (oc) {
        out_call_t *next = oc->next;
        if (strcmp(oc->peer, peer) == 0)
            out_fail(node, oc, "noconnection");
        oc = next;
    }
}

/* Sends the SPAWN_REQUEST of oc (loop thread). */
static void out_start(tether_node_t *node, void *arg)
{
    out_call_t *oc = arg;
    if (node->rex == NULL) {
        oc->done(node, TETHER_ECLOSED, NULL, 0, oc->ctx);
        out_free(oc);
        return;
    }
    tether_procs_t *procs = node->procs;
    erlang_ref res;
    tether_procs_make_ref(procs, &res);
    tether_procs_make_ref(procs, &oc->req_id);
    ei_x_buff args;
    int rc = ei_x_new_with_version(&args);
    if (rc == 0) {
        rc |= ei_x_encode_ref(&oc->res, &res);
        rc |= ei_x_encode_list_header(&args, 4);
        rc |= ei_x_encode_ref(&args, &res);
        rc |= ei_x_encode_atom(&args, oc->module);
        rc |= ei_x_encode_atom(&args, oc->function);
        rc |= ei_x_append_buf(&args, oc->args + 1, (int)oc->args_len - 1);
        rc |= ei_x_encode_empty_list(&args);
    }
    oc->next = node->outs;
    node->outs = oc;
    if (rc != 0) {
        ei_x_free(&args);
        out_finish(node, oc, TETHER_ENOMEM, NULL, 0);
        return;
    }
    rc = tether__node_spawn_request(node, oc->peer, &oc->req_id, &node->rex_pid,
                                    &node->rex_pid, "erpc", "execute_call",
                                    args.buff, (size_t)args.index);
    ei_x_free(&args);
    if (rc < 0) {
        out_fail(node, oc, rc == TETHER_EINVAL ? "badarg" : "noconnection");
        return;
    }
    if (oc->timeout_ms &&
        tether_node_timer_add(node, oc->timeout_ms, out_timeout, oc,
                              &oc->timer) == 0)
        oc->has_timer = true;
}

int tether_erlang_call(tether_node_t *node, const char *peer,
                       const char *module, const char *function,
                       const char *args, size_t args_len, unsigned timeout_ms,
                       tether_result_fn done, void *ctx)
{
    int idx = 1, type, size;
    if (node == NULL || peer == NULL || !tether_node_name_valid(peer) ||
        !tether__name_ok(module) || !tether__name_ok(function) ||
        done == NULL || !tether_term_valid(args, args_len) ||
        ei_get_type(args, &idx, &type, &size) < 0 ||
        (type != ERL_LIST_EXT && type != ERL_NIL_EXT && type != ERL_STRING_EXT))
        return TETHER_EINVAL;
    out_call_t *oc = calloc(1, sizeof *oc + args_len);
    if (oc == NULL)
        return TETHER_ENOMEM;
    if (ei_x_new(&oc->res) < 0) {
        free(oc);
        return TETHER_ENOMEM;
    }
    snprintf(oc->peer, sizeof oc->peer, "%s", peer);
    snprintf(oc->module, sizeof oc->module, "%s", module);
    snprintf(oc->function, sizeof oc->function, "%s", function);
    oc->timeout_ms = timeout_ms;
    oc->done = done;
    oc->ctx = ctx;
    oc->args_len = args_len;
    memcpy(oc->args, args, args_len);
    if (tether_node_on_loop(node)) {
        out_start(node, oc);
        return 0;
    }
    int rc = tether_node_post(node, out_start, oc);
    if (rc < 0)
        out_free(oc);
    return rc;
}

typedef struct sync_call {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    int status;
    ei_x_buff *result;
} sync_call_t;

static void sync_done(tether_node_t *node, int status, const char *term,
                      size_t len, void *ctx)
{
    (void)node;
    sync_call_t *s = ctx;
    pthread_mutex_lock(&s->lock);
    s->status = status;
    if (term && len > 1) {
        if (s->result->index == 0)
            (void)ei_x_encode_version(s->result);
        if (ei_x_append_buf(s->result, term + 1, (int)len - 1) < 0)
            s->status = TETHER_ENOMEM;
    }
    s->done = true;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

int tether_erlang_call_sync(tether_node_t *node, const char *peer,
                            const char *module, const char *function,
                            const char *args, size_t args_len,
                            unsigned timeout_ms, ei_x_buff *result)
{
    if (node == NULL || result == NULL || tether_node_on_loop(node))
        return TETHER_EINVAL;
    sync_call_t s = {.result = result};
    pthread_mutex_init(&s.lock, NULL);
    pthread_cond_init(&s.cond, NULL);
    int rc = tether_erlang_call(node, peer, module, function, args, args_len,
                                timeout_ms, sync_done, &s);
    if (rc == 0) {
        pthread_mutex_lock(&s.lock);
        while (!s.done)
            pthread_cond_wait(&s.cond, &s.lock);
        pthread_mutex_unlock(&s.lock);
        rc = s.status;
    }
    pthread_cond_destroy(&s.cond);
    pthread_mutex_destroy(&s.lock);
    return rc;
}

void tether__erlang_call_start(tether_node_t *node)
{
    tether_spawn_out_ops_t ops = {out_reply, out_down, out_nodedown};
    tether__node_set_spawn_out(node, &ops);
}

void tether__erlang_call_fini(tether_node_t *node)
{
    tether__node_set_spawn_out(node, NULL);
    while (node->outs) {
        out_call_t *oc = node->outs;
        node->outs = oc->next;
        out_free(oc);
    }
}
