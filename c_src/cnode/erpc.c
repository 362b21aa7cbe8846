/*
 * cnode/erpc.c: erpc on a C-node.
 *
 * The pure half of the erpc and rex protocols (see cnode/api.h): outcome
 * encoders and the reader of erpc exit reasons; no node, no threads:
 * bytes in, bytes out.
 *
 * Incoming erpc: a SPAWN_REQUEST of erpc:execute_call/4 (or
 * execute_cast/3) reaches the spawn hook, which starts one C process per
 * call; the process sends itself a start message and its handler runs
 * the function (after the runtime set up the requester's monitor and
 * link); the outcome ends the process with erpc's exit reason, which the
 * caller's monitor reports (rpc:call, erpc:call, multicall,
 * send_request). The process only points at the call through a small
 * cell, so a process killed meanwhile (erpc abandons a call that timed
 * out) leaves the call to be freed when it completes.
 */
#include <stdlib.h>
#include <string.h>

#include "cnode/internal.h"
#include "tether/term.h"

/* Appends a 131-prefixed term without its version byte. */
static int put_term(ei_x_buff *x, const char *t, size_t len)
{
    if (t == NULL || len < 2 || (unsigned char)t[0] != 131)
        return -1;
    return ei_x_append_buf(x, t + 1, (int)(len - 1));
}

int tether__erpc_encode_outcome(ei_x_buff *x, tether_reply_mode_t mode,
                                const char *ref, size_t ref_len,
                                tether_class_t cls, const char *value,
                                size_t value_len, const char *stack,
                                size_t stack_len)
{
    if (x == NULL || !tether_term_valid(value, value_len) ||
        (cls == TETHER_ERROR && !tether_term_valid(stack, stack_len)))
        return TETHER_EINVAL;
    int saved = x->index, rc = 0;
    if (mode == TETHER_MODE_ERPC) {
        static const char *const tags[] = {"return", "throw", "error", "exit"};
        if (ref == NULL || ref_len == 0 || (unsigned)cls > TETHER_EXIT)
            return TETHER_EINVAL;
        rc |= ei_x_encode_tuple_header(x, cls == TETHER_ERROR ? 4 : 3);
        rc |= ei_x_append_buf(x, ref, (int)ref_len);
        rc |= ei_x_encode_atom(x, tags[cls]);
        rc |= put_term(x, value, value_len);
        if (cls == TETHER_ERROR)
            rc |= put_term(x, stack, stack_len);
    } else if (mode == TETHER_MODE_INNER) {
        static const char *const tags[] = {"return", "throw", "error", "exit"};
        if ((unsigned)cls > TETHER_EXIT)
            return TETHER_EINVAL;
        rc |= ei_x_encode_tuple_header(x, cls == TETHER_ERROR ? 3 : 2);
        rc |= ei_x_encode_atom(x, tags[cls]);
        rc |= put_term(x, value, value_len);
        if (cls == TETHER_ERROR)
            rc |= put_term(x, stack, stack_len);
    } else if (mode == TETHER_MODE_REX || mode == TETHER_MODE_CAST) {
        switch (cls) {
        case TETHER_RETURN:
        case TETHER_THROW:
            rc |= put_term(x, value, value_len);
            break;
        case TETHER_EXIT:
            rc |= ei_x_encode_tuple_header(x, 2);
            rc |= ei_x_encode_atom(x, "badrpc");
            rc |= ei_x_encode_tuple_header(x, 2);
            rc |= ei_x_encode_atom(x, "EXIT");
            rc |= put_term(x, value, value_len);
            break;
        case TETHER_ERROR:
            rc |= ei_x_encode_tuple_header(x, 2);
            rc |= ei_x_encode_atom(x, "badrpc");
            rc |= ei_x_encode_tuple_header(x, 2);
            rc |= ei_x_encode_atom(x, "EXIT");
            rc |= ei_x_encode_tuple_header(x, 2);
            rc |= put_term(x, value, value_len);
            rc |= put_term(x, stack, stack_len);
            break;
        default:
            rc = -1;
        }
    } else {
        rc = -1;
    }
    if (rc != 0) {
        x->index = saved;
        return TETHER_EINVAL;
    }
    return 0;
}

int tether__erpc_encode_stack(ei_x_buff *x, const char *module,
                              const char *function, int arity, const char *args,
                              size_t args_len)
{
    if (x == NULL || module == NULL || function == NULL)
        return TETHER_EINVAL;
    int saved = x->index, rc = 0;
    rc |= ei_x_encode_version(x);
    rc |= ei_x_encode_list_header(x, 1);
    rc |= ei_x_encode_tuple_header(x, 4);
    rc |= ei_x_encode_atom(x, module);
    rc |= ei_x_encode_atom(x, function);
    if (args)
        rc |= ei_x_append_buf(x, args, (int)args_len);
    else
        rc |= ei_x_encode_long(x, arity);
    rc |= ei_x_encode_empty_list(x);
    rc |= ei_x_encode_empty_list(x);
    if (rc != 0) {
        x->index = saved;
        return TETHER_ENOMEM;
    }
    return 0;
}

/* True if the term at b[idx] is the atom `a`. */
static bool atom_at(const char *b, int idx, const char *a)
{
    char s[MAXATOMLEN_UTF8];
    return ei_decode_atom(b, &idx, s) == 0 && strcmp(s, a) == 0;
}

int tether__erpc_decode_reason(const char *reason, size_t len, const char *res,
                               size_t res_len, ei_x_buff *x)
{
    if (x == NULL || !tether_term_valid(reason, len))
        return TETHER_EINVAL;
    int saved = x->index, rc = 0, arity, idx = 1, status = -1;
    int type, size;
    const char *b = reason;
    if (x->index == 0)
        rc |= ei_x_encode_version(x);
    if (ei_get_type(b, &idx, &type, &size) == 0 &&
        (type == ERL_SMALL_TUPLE_EXT || type == ERL_LARGE_TUPLE_EXT) &&
        ei_decode_tuple_header(b, &idx, &arity) == 0 &&
        (arity == 3 || arity == 4)) {
        int r0 = idx;
        if (ei_skip_term(b, &idx) == 0 && (size_t)(idx - r0) == res_len &&
            memcmp(b + r0, res, res_len) == 0) {
            int tag = idx;
            char t[MAXATOMLEN_UTF8];
            if (ei_decode_atom(b, &idx, t) == 0) {
                int v0 = idx;
                if (ei_skip_term(b, &idx) == 0) {
                    int v1 = idx;
                    if (arity == 3 && strcmp(t, "return") == 0) {
                        rc |= ei_x_append_buf(x, b + v0, v1 - v0);
                        status = TETHER_RETURN;
                    } else if (arity == 3 && strcmp(t, "throw") == 0) {
                        rc |= ei_x_append_buf(x, b + v0, v1 - v0);
                        status = TETHER_THROW;
                    } else if (arity == 3 && strcmp(t, "exit") == 0) {
                        rc |= ei_x_encode_tuple_header(x, 2);
                        rc |= ei_x_encode_atom(x, "exception");
                        rc |= ei_x_append_buf(x, b + v0, v1 - v0);
                        status = TETHER_EXIT;
                    } else if (arity == 4 && strcmp(t, "error") == 0) {
                        int s0 = idx;
                        if (ei_skip_term(b, &idx) == 0) {
                            rc |= ei_x_encode_tuple_header(x, 3);
                            rc |= ei_x_encode_atom(x, "exception");
                            rc |= ei_x_append_buf(x, b + v0, v1 - v0);
                            rc |= ei_x_append_buf(x, b + s0, idx - s0);
                            status = TETHER_ERROR;
                        }
                    } else if (arity == 3 && strcmp(t, "error") == 0) {
                        /* {Ref, error, {erpc, _} = ErpcErr} */
                        rc |= ei_x_append_buf(x, b + v0, v1 - v0);
                        status = TETHER_ERROR;
                    }
                }
            }
            (void)tag;
        }
    }
    if (status < 0) {
        if (atom_at(b, 1, "noconnection")) {
            rc |= ei_x_encode_tuple_header(x, 2);
            rc |= ei_x_encode_atom(x, "erpc");
            rc |= ei_x_encode_atom(x, "noconnection");
            status = TETHER_ERROR;
        } else {
            rc |= ei_x_encode_tuple_header(x, 2);
            rc |= ei_x_encode_atom(x, "signal");
            rc |= ei_x_append_buf(x, b + 1, (int)len - 1);
            status = TETHER_EXIT;
        }
    }
    if (rc != 0) {
        x->index = saved;
        return TETHER_ENOMEM;
    }
    return status;
}

/* ---- erpc processes ------------------------------------------------ */

/* What an erpc process points at; freed with the process. */
typedef struct cell {
    tether_call_t *call;
    bool started;
} cell_t;

/* Ends the erpc process with the outcome as its exit reason (ERPC) or
 * normally (CAST), unless the process is gone (erpc abandoned the call). */
static void erpc_deliver(tether_call_t *c)
{
    tether_proc_t *p = tether_procs_find(c->node->procs, &c->pid);
    cell_t *cell = p ? tether_proc_arg(p) : NULL;
    if (p && tether_proc_alive(p) && cell && cell->call == c) {
        cell->call = NULL;
        if (c->mode == TETHER_MODE_ERPC)
            tether_proc_exit(p, c->out.buff, (size_t)c->out.index);
        else
            tether_proc_exit(p, NULL, 0);
    }
}

static void erpc_exit(tether_proc_t *self, const char *reason, size_t len,
                      void *arg)
{
    (void)self;
    (void)reason;
    (void)len;
    cell_t *cell = arg;
    /* A call in flight is freed when it completes. */
    if (cell->call && !cell->started)
        tether__call_free(cell->call);
    free(cell);
}

static void erpc_handler(tether_proc_t *self, const tether_msg_t *msg,
                         void *arg)
{
    (void)self;
    (void)msg;
    cell_t *cell = arg;
    if (cell->started || cell->call == NULL)
        return; /* only the start message matters */
    cell->started = true;
    tether__call_run(cell->call);
}

/*
 * The spawn hook: erpc:execute_call(Ref, M, F, A) and
 * erpc:execute_cast(M, F, A) start a C process; anything else is notsup.
 */
static int spawn_hook(tether_node_t *node, const tether_spawn_req_t *req,
                      erlang_pid *pid, const char **error_atom)
{
    tether_reply_mode_t mode;
    if (strcmp(req->module, "erpc") == 0 &&
        strcmp(req->function, "execute_call") == 0 && req->arity == 4)
        mode = TETHER_MODE_ERPC;
    else if (strcmp(req->module, "erpc") == 0 &&
             strcmp(req->function, "execute_cast") == 0 && req->arity == 3)
        mode = TETHER_MODE_CAST;
    else {
        *error_atom = "notsup";
        LOG(node, TETHER_LOG_DEBUG, "spawn of %s:%s/%ld from '%s': notsup",
            req->module, req->function, req->arity, req->peer);
        return TETHER_EUNSUPP;
    }
    *error_atom = "badarg";
    if (!tether_term_valid(req->args, req->args_len))
        return TETHER_EINVAL;
    tether_call_t *c = tether__call_new(node, mode, req->args, req->args_len);
    if (c == NULL) {
        *error_atom = "system_limit";
        return TETHER_ENOMEM;
    }
    int idx = 1, n;
    if (ei_decode_list_header(c->buf, &idx, &n) < 0 || n != req->arity)
        goto bad;
    if (mode == TETHER_MODE_ERPC) {
        c->ref0 = idx;
        if (ei_skip_term(c->buf, &idx) < 0)
            goto bad;
        c->ref1 = idx;
    }
    /* call_parse may rebuild the buffer; Ref, before M, keeps its place. */
    if (tether__call_parse(c, idx) < 0)
        goto bad;
    cell_t *cell = calloc(1, sizeof *cell);
    if (cell == NULL)
        goto nomem;
    cell->call = c;
    c->deliver = erpc_deliver;
    tether_proc_spec_t spec = {erpc_handler, erpc_exit, cell};
    tether_proc_t *p;
    if (tether_proc_spawn(node->procs, &spec, &p) < 0) {
        free(cell);
        goto nomem;
    }
    c->pid = *tether_proc_pid(p);
    *pid = c->pid;
    /* The start message: the function runs from the process's handler,
     * after the runtime set up the requester's monitor and link. */
    char go[TETHER_ATOM_TERM_MAX];
    size_t gl = tether_term_atom(go, sizeof go, "go");
    (void)tether_proc_send(p, &c->pid, go, gl);
    return 0;
bad:
    tether__call_free(c);
    *error_atom = "badarg";
    return TETHER_EINVAL;
nomem:
    tether__call_free(c);
    *error_atom = "system_limit";
    return TETHER_ENOMEM;
}

void tether__erpc_start(tether_node_t *node)
{
    tether_node_set_spawn_handler(node, spawn_hook);
}

void tether__erpc_stop(tether_node_t *node)
{
    tether_node_set_spawn_handler(node, NULL);
}
