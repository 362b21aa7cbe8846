/*
 * cnode/api.c: functions, rex, services, sending, outgoing erpc calls and
 * the node's worker pool (tether/service.h; internal side in cnode/api.h
 * and cnode/internal.h).
 *
 * A call from another node arrives in one of three ways:
 *   erpc   SPAWN_REQUEST of erpc:execute_call/4 (or execute_cast/3): the
 *          spawn hook starts one C process per call, which sends itself a
 *          start message; its handler runs the function; the outcome
 *          ends the process with erpc's exit reason, which the caller's
 *          monitor reports (rpc:call, erpc:call, multicall, send_request).
 *   rex    {'$gen_call', From, {call | block_call, M, F, A, Gl}} to the
 *          registered process rex (rpc:block_call), or the plain
 *          {From, {call, M, F, A, Gl}}; the outcome is rpc's reply.
 *   cast   erpc:execute_cast/3 and rex's {'$gen_cast', {cast, ...}}: run,
 *          nothing goes back.
 *
 * A tether_call_t belongs to the function from the moment it is handed
 * over until it completes; completing it on the loop thread inside the
 * function delivers at once, from anywhere else it is posted to the loop.
 * The erpc process only points at the call through a small cell, so a
 * process killed meanwhile (erpc abandons a call that timed out) leaves
 * the call to be freed when it completes.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cnode/internal.h"
#include "tether/service.h"
#include "tether/term.h"

#define WORKERS_MAX 64

#define ARITY_MAX 255

typedef struct tether__fn_entry {
    struct tether__fn_entry *next;
    char module[TETHER_NAME_MAX];
    char function[TETHER_NAME_MAX];
    int arity;
    tether_function_fn fn;
    void *ctx;
} fn_entry_t;

/* ---- the table ----------------------------------------------------- */

static unsigned fn_hash(const char *m, const char *f, int arity)
{
    unsigned h = 2166136261u;
    for (const char *p = m; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    h = (h ^ ':') * 16777619u;
    for (const char *p = f; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    h = (h ^ (unsigned)arity) * 16777619u;
    return h % TETHER__FN_BUCKETS;
}

static fn_entry_t *fn_find(tether_node_t *node, const char *m, const char *f,
                           int arity)
{
    for (fn_entry_t *e = node->fns[fn_hash(m, f, arity)]; e; e = e->next)
        if (e->arity == arity && strcmp(e->module, m) == 0 &&
            strcmp(e->function, f) == 0)
            return e;
    return NULL;
}

bool tether__name_ok(const char *s)
{
    return s && s[0] && strnlen(s, TETHER_NAME_MAX) < TETHER_NAME_MAX;
}

int tether_function_register(tether_node_t *node, const char *module,
                             const char *function, int arity,
                             tether_function_fn fn, void *ctx)
{
    if (node == NULL || !tether__name_ok(module) ||
        !tether__name_ok(function) || arity < 0 || arity > ARITY_MAX ||
        fn == NULL)
        return TETHER_EINVAL;
    if (fn_find(node, module, function, arity))
        return TETHER_EEXIST;
    fn_entry_t *e = calloc(1, sizeof *e);
    if (e == NULL)
        return TETHER_ENOMEM;
    snprintf(e->module, sizeof e->module, "%s", module);
    snprintf(e->function, sizeof e->function, "%s", function);
    e->arity = arity;
    e->fn = fn;
    e->ctx = ctx;
    unsigned h = fn_hash(module, function, arity);
    e->next = node->fns[h];
    node->fns[h] = e;
    return 0;
}

/* ---- calls --------------------------------------------------------- */

void tether__call_free(tether_call_t *call)
{
    if (call == NULL)
        return;
    ei_x_free(&call->out);
    free(call->buf);
    tether_from_free(call->from);
    free(call);
}

tether_call_t *tether__call_new(tether_node_t *node, tether_reply_mode_t mode,
                                const char *buf, size_t len)
{
    tether_call_t *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->buf = malloc(len ? len : 1);
    if (c->buf == NULL || ei_x_new_with_version(&c->out) < 0) {
        free(c->buf);
        free(c);
        return NULL;
    }
    memcpy(c->buf, buf, len);
    c->len = len;
    c->node = node;
    c->mode = mode;
    return c;
}

/*
 * Reads M, F and the argument list at buf[idx] into the call; the list
 * must be proper. Returns 0 or -1.
 */
static int call_parse_mfa(tether_call_t *c, int idx)
{
    const char *b = c->buf;
    int type, size, n;
    if (ei_decode_atom(b, &idx, c->module) < 0 ||
        ei_decode_atom(b, &idx, c->function) < 0)
        return -1;
    c->alist0 = idx;
    if (ei_get_type(b, &idx, &type, &size) < 0)
        return -1;
    if (type == ERL_NIL_EXT) {
        c->arity = 0;
        c->args_index = idx;
        idx++;
    } else if (type == ERL_STRING_EXT) {
        /* A string argument list: re-encode it as a plain list. */
        return -2;
    } else if (type == ERL_LIST_EXT) {
        if (ei_decode_list_header(b, &idx, &n) < 0)
            return -1;
        c->arity = n;
        c->args_index = idx;
        for (int i = 0; i < n; i++)
            if (ei_skip_term(b, &idx) < 0)
                return -1;
        int t = idx;
        if (ei_get_type(b, &t, &type, &size) < 0 || type != ERL_NIL_EXT)
            return -1;
        idx++;
    } else {
        return -1;
    }
    c->alist1 = idx;
    return 0;
}

/* STRING_EXT argument lists ([1,2,3]) are rewritten as LIST_EXT. */
static int call_fix_string_args(tether_call_t *c, int idx)
{
    const char *b = c->buf;
    int save = idx;
    char m[TETHER_NAME_MAX], f[TETHER_NAME_MAX];
    if (ei_decode_atom(b, &idx, m) < 0 || ei_decode_atom(b, &idx, f) < 0)
        return -1;
    int type, size, s0 = idx;
    if (ei_get_type(b, &idx, &type, &size) < 0 || type != ERL_STRING_EXT)
        return -1;
    ei_x_buff x;
    if (ei_x_new(&x) < 0)
        return -1;
    int rc = ei_x_append_buf(&x, b, s0);
    rc |= ei_x_encode_list_header(&x, size);
    for (int i = 0; i < size; i++)
        rc |= ei_x_encode_long(&x, (unsigned char)b[s0 + 3 + i]);
    rc |= ei_x_encode_empty_list(&x);
    int after = s0 + 3 + size;
    rc |= ei_x_append_buf(&x, b + after, (int)c->len - after);
    if (rc != 0) {
        ei_x_free(&x);
        return -1;
    }
    free(c->buf);
    c->buf = x.buff; /* ei_x_buff memory is malloc'd */
    c->len = (size_t)x.index;
    return call_parse_mfa(c, save);
}

int tether__call_parse(tether_call_t *c, int idx)
{
    int rc = call_parse_mfa(c, idx);
    if (rc == -2)
        rc = call_fix_string_args(c, idx);
    return rc;
}

tether_node_t *tether_call_node(const tether_call_t *call)
{
    return call->node;
}

const char *tether_call_module(const tether_call_t *call)
{
    return call->module;
}

const char *tether_call_function(const tether_call_t *call)
{
    return call->function;
}

int tether_call_arity(const tether_call_t *call)
{
    return call->arity;
}

/* Hands the encoded outcome to the caller (loop thread) and frees call. */
static void call_deliver(tether_node_t *node, void *arg)
{
    (void)node;
    tether_call_t *c = arg;
    if (c->deliver)
        c->deliver(c);
    tether__call_free(c);
}

/* Delivers at once on the loop thread, else through a post. */
static int call_finish(tether_call_t *c)
{
    if (tether_node_on_loop(c->node)) {
        call_deliver(c->node, c);
        return 0;
    }
    int rc = tether_node_post(c->node, call_deliver, c);
    if (rc < 0)
        tether__call_free(c);
    return rc;
}

/* Encodes the outcome; on failure the caller gets error:system_limit. */
int tether__call_complete(tether_call_t *c, tether_class_t cls,
                          const char *value, size_t vlen, const char *stack,
                          size_t slen)
{
    if (c == NULL)
        return TETHER_EINVAL;
    ei_x_buff st = {0};
    int rc = 0;
    if (cls == TETHER_ERROR && stack == NULL) {
        if (ei_x_new(&st) < 0 ||
            tether__erpc_encode_stack(&st, c->module, c->function, c->arity,
                                      NULL, 0) < 0) {
            rc = TETHER_ENOMEM;
        } else {
            stack = st.buff;
            slen = (size_t)st.index;
        }
    }
    if (c->mode == TETHER_MODE_CAST && cls != TETHER_RETURN) {
        char text[256] = "";
        (void)tether_term_format(value, vlen, text, sizeof text);
        LOG(c->node, TETHER_LOG_INFO, "cast %s:%s/%d raised %s: %s", c->module,
            c->function, c->arity,
            cls == TETHER_THROW   ? "throw"
            : cls == TETHER_ERROR ? "error"
                                  : "exit",
            text);
    }
    if (rc == 0)
        rc = tether__erpc_encode_outcome(&c->out, c->mode, c->buf + c->ref0,
                                         (size_t)(c->ref1 - c->ref0), cls,
                                         value, vlen, stack, slen);
    if (st.buff)
        ei_x_free(&st);
    if (rc < 0) {
        char sl[TETHER_ATOM_TERM_MAX];
        size_t n = tether_term_atom(sl, sizeof sl, "system_limit");
        c->out.index = 1;
        ei_x_buff s2;
        if (ei_x_new(&s2) == 0) {
            if (tether__erpc_encode_stack(&s2, c->module, c->function, c->arity,
                                          NULL, 0) == 0 &&
                tether__erpc_encode_outcome(&c->out, c->mode, c->buf + c->ref0,
                                            (size_t)(c->ref1 - c->ref0),
                                            TETHER_ERROR, sl, n, s2.buff,
                                            (size_t)s2.index) < 0)
                c->out.index = 1;
            ei_x_free(&s2);
        }
    }
    int frc = call_finish(c);
    return rc < 0 ? rc : frc;
}

int tether_call_return(tether_call_t *call, const char *term, size_t len)
{
    if (!tether_term_valid(term, len)) {
        (void)tether_call_raise_atom(call, TETHER_ERROR, "badarg");
        return TETHER_EINVAL;
    }
    return tether__call_complete(call, TETHER_RETURN, term, len, NULL, 0);
}

int tether_call_return_atom(tether_call_t *call, const char *atom)
{
    char t[TETHER_ATOM_TERM_MAX];
    size_t n = tether_term_atom(t, sizeof t, atom ? atom : "");
    if (n == 0) {
        (void)tether_call_raise_atom(call, TETHER_ERROR, "badarg");
        return TETHER_EINVAL;
    }
    return tether__call_complete(call, TETHER_RETURN, t, n, NULL, 0);
}

int tether_call_raise(tether_call_t *call, tether_class_t cls,
                      const char *reason, size_t len, const char *stack,
                      size_t stack_len)
{
    if (cls != TETHER_THROW && cls != TETHER_ERROR && cls != TETHER_EXIT)
        cls = TETHER_ERROR;
    if (!tether_term_valid(reason, len) ||
        (stack && !tether_term_valid(stack, stack_len))) {
        char t[TETHER_ATOM_TERM_MAX];
        size_t n = tether_term_atom(t, sizeof t, "badarg");
        (void)tether__call_complete(call, TETHER_ERROR, t, n, NULL, 0);
        return TETHER_EINVAL;
    }
    return tether__call_complete(call, cls, reason, len, stack, stack_len);
}

int tether_call_raise_atom(tether_call_t *call, tether_class_t cls,
                           const char *atom)
{
    char t[TETHER_ATOM_TERM_MAX];
    size_t n = tether_term_atom(t, sizeof t, atom ? atom : "");
    if (n == 0)
        n = tether_term_atom(t, sizeof t, "badarg");
    return tether__call_complete(call, cls, t, n, NULL, 0);
}

void tether__call_run(tether_call_t *c)
{
    fn_entry_t *e = fn_find(c->node, c->module, c->function, c->arity);
    if (e == NULL) {
        ei_x_buff st;
        char undef[TETHER_ATOM_TERM_MAX];
        size_t n = tether_term_atom(undef, sizeof undef, "undef");
        if (ei_x_new(&st) == 0 &&
            tether__erpc_encode_stack(&st, c->module, c->function, c->arity,
                                      c->buf + c->alist0,
                                      (size_t)(c->alist1 - c->alist0)) == 0) {
            (void)tether__call_complete(c, TETHER_ERROR, undef, n, st.buff,
                                        (size_t)st.index);
        } else {
            (void)tether__call_complete(c, TETHER_ERROR, undef, n, NULL, 0);
        }
        ei_x_free(&st);
        return;
    }
    /* The call may be completed (and freed) inside fn: nothing after. */
    e->fn(c, c->buf, c->args_index, c->arity, e->ctx);
}

/* ---- calls made by the node itself --------------------------------- */

static void invoke_deliver(tether_call_t *c)
{
    c->done(c->node, c->done_ctx, c->out.buff, (size_t)c->out.index);
}

int tether__call_invoke(tether_node_t *node, const char *module,
                        const char *function, const char *args, size_t args_len,
                        tether__call_done_fn done, void *ctx)
{
    if (node == NULL || done == NULL || !tether__name_ok(module) ||
        !tether__name_ok(function) || !tether_term_valid(args, args_len))
        return TETHER_EINVAL;
    ei_x_buff x;
    if (ei_x_new_with_version(&x) < 0)
        return TETHER_ENOMEM;
    int rc = ei_x_encode_atom(&x, module);
    rc |= ei_x_encode_atom(&x, function);
    rc |= ei_x_append_buf(&x, args + 1, (int)(args_len - 1));
    if (rc != 0) {
        ei_x_free(&x);
        return TETHER_ENOMEM;
    }
    tether_call_t *c =
        tether__call_new(node, TETHER_MODE_INNER, x.buff, (size_t)x.index);
    ei_x_free(&x);
    if (c == NULL)
        return TETHER_ENOMEM;
    c->deliver = invoke_deliver;
    c->done = done;
    c->done_ctx = ctx;
    if (tether__call_parse(c, 1) < 0) {
        tether__call_free(c);
        return TETHER_EINVAL;
    }
    tether__call_run(c);
    return 0;
}

void tether__functions_fini(tether_node_t *node)
{
    for (int i = 0; i < TETHER__FN_BUCKETS; i++) {
        while (node->fns[i]) {
            fn_entry_t *e = node->fns[i];
            node->fns[i] = e->next;
            free(e);
        }
    }
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

/* Hands the outcome, as rpc's reply, to the caller. */
static void rex_deliver(tether_call_t *c)
{
    tether_from_t *f = c->from;
    c->from = NULL;
    (void)tether_reply(f, c->out.buff, (size_t)c->out.index);
}

/* {call | block_call, M, F, A, Gl} at b[idx] from a gen_server From. */
static void rex_call(tether_node_t *node, tether_proc_t *self,
                     const tether_msg_t *msg, int from_idx, int req_idx,
                     bool plain)
{
    const char *b = msg->data;
    int idx = req_idx, arity;
    char tag[MAXATOMLEN_UTF8];
    if (ei_decode_tuple_header(b, &idx, &arity) < 0 || arity != 5 ||
        ei_decode_atom(b, &idx, tag) < 0 ||
        (strcmp(tag, "call") != 0 && strcmp(tag, "block_call") != 0) ||
        (plain && strcmp(tag, "call") != 0))
        return;
    tether_from_t *from;
    if (plain) {
        erlang_pid pid;
        int t = from_idx;
        if (ei_decode_pid(b, &t, &pid) < 0)
            return;
        from = tether__from_rex(node, tether_proc_pid(self), &pid);
        if (from == NULL)
            return;
    } else {
        from = tether__from_new(node, tether_proc_pid(self), b, from_idx);
        if (from == NULL)
            return;
    }
    tether_call_t *c = tether__call_new(node, TETHER_MODE_REX, b, msg->len);
    if (c == NULL) {
        tether_from_free(from);
        return;
    }
    c->from = from;
    c->deliver = rex_deliver;
    if (tether__call_parse(c, idx) < 0) {
        char badarg[TETHER_ATOM_TERM_MAX];
        size_t n = tether_term_atom(badarg, sizeof badarg, "badarg");
        (void)tether__call_complete(c, TETHER_EXIT, badarg, n, NULL, 0);
        return;
    }
    tether__call_run(c);
}

static void rex_cast(tether_node_t *node, const tether_msg_t *msg, int req_idx)
{
    const char *b = msg->data;
    int idx = req_idx, arity;
    char tag[MAXATOMLEN_UTF8];
    if (ei_decode_tuple_header(b, &idx, &arity) < 0 || arity != 5 ||
        ei_decode_atom(b, &idx, tag) < 0 || strcmp(tag, "cast") != 0)
        return;
    tether_call_t *c = tether__call_new(node, TETHER_MODE_CAST, b, msg->len);
    if (c == NULL)
        return;
    if (tether__call_parse(c, idx) < 0) {
        tether__call_free(c);
        return;
    }
    /* No process to end and no deliver hook: the outcome is dropped. */
    tether__call_run(c);
}

static void rex_features(tether_proc_t *self, const erlang_pid *to)
{
    ei_x_buff x;
    if (ei_x_new_with_version(&x) < 0)
        return;
    int rc = ei_x_encode_tuple_header(&x, 3);
    rc |= ei_x_encode_atom(&x, "features_reply");
    rc |= ei_x_encode_atom(&x, tether_procs_node(tether_proc_procs(self)));
    rc |= ei_x_encode_list_header(&x, 1);
    rc |= ei_x_encode_atom(&x, "erpc");
    rc |= ei_x_encode_empty_list(&x);
    if (rc == 0)
        (void)tether_proc_send(self, to, x.buff, (size_t)x.index);
    ei_x_free(&x);
}

/* {io_request, From, ReplyAs, _}: output of functions we called is
 * dropped; the answer keeps the remote process from waiting. */
static void rex_io(tether_proc_t *self, const char *b, int idx)
{
    erlang_pid from;
    if (ei_decode_pid(b, &idx, &from) < 0)
        return;
    int r0 = idx;
    if (ei_skip_term(b, &idx) < 0)
        return;
    ei_x_buff x;
    if (ei_x_new_with_version(&x) < 0)
        return;
    int rc = ei_x_encode_tuple_header(&x, 3);
    rc |= ei_x_encode_atom(&x, "io_reply");
    rc |= ei_x_append_buf(&x, b + r0, idx - r0);
    rc |= ei_x_encode_atom(&x, "ok");
    if (rc == 0)
        (void)tether_proc_send(self, &from, x.buff, (size_t)x.index);
    ei_x_free(&x);
}

static void rex_handler(tether_proc_t *self, const tether_msg_t *msg, void *arg)
{
    tether_node_t *node = arg;
    const char *b = msg->data;
    int idx = 1, arity, type, size;
    char a[MAXATOMLEN_UTF8];
    if (!tether_term_valid(b, msg->len) ||
        ei_decode_tuple_header(b, &idx, &arity) < 0)
        return;
    int first = idx;
    if (ei_get_type(b, &idx, &type, &size) < 0)
        return;
    if (type == ERL_ATOM_EXT || type == ERL_SMALL_ATOM_EXT ||
        type == ERL_ATOM_UTF8_EXT || type == ERL_SMALL_ATOM_UTF8_EXT) {
        if (ei_decode_atom(b, &idx, a) < 0)
            return;
        if (strcmp(a, "$gen_call") == 0 && arity == 3) {
            int from_idx = idx;
            if (ei_skip_term(b, &idx) < 0)
                return;
            rex_call(node, self, msg, from_idx, idx, false);
        } else if (strcmp(a, "$gen_cast") == 0 && arity == 2) {
            rex_cast(node, msg, idx);
        } else if (strcmp(a, "io_request") == 0 && arity == 4) {
            rex_io(self, b, idx);
        }
        return;
    }
    if ((type == ERL_PID_EXT || type == ERL_NEW_PID_EXT) && arity == 2) {
        erlang_pid from;
        idx = first;
        if (ei_decode_pid(b, &idx, &from) < 0)
            return;
        int req = idx;
        if (ei_decode_atom(b, &idx, a) == 0) {
            if (strcmp(a, "features_request") == 0)
                rex_features(self, &from);
            return;
        }
        rex_call(node, self, msg, first, req, true);
    }
}

int tether__rex_start(tether_node_t *node)
{
    tether_proc_spec_t rex = {rex_handler, NULL, node};
    int rc = tether_proc_spawn(node->procs, &rex, &node->rex);
    if (rc < 0)
        return rc;
    rc = tether_proc_register(node->rex, "rex");
    if (rc < 0)
        return rc;
    node->rex_pid = *tether_proc_pid(node->rex);
    return 0;
}

struct tether_from {
    tether_node_t *node;
    erlang_pid self; /* the replying process */
    erlang_pid to;
    bool alias;
    erlang_ref alias_ref;
    bool plain_rex; /* {rex, Reply} to a plain {From, {call, ...}} */
    size_t tag_len;
    char tag[]; /* the Tag term, without 131 */
};

struct tether_service {
    tether_node_t *node;
    char name[TETHER_NAME_MAX];
    tether_service_ops_t ops;
    void *ctx;
    tether_proc_t *proc;
    erlang_pid pid;
};

/* A service registered before the node started. */
typedef struct tether__pending_svc {
    struct tether__pending_svc *next;
    tether_service_t *svc;
} pending_svc_t;

/* ---- From ---------------------------------------------------------- */

int tether__gen_from_parse(const char *b, int idx, tether__gen_from_t *from)
{
    int arity, type, size;
    memset(from, 0, sizeof *from);
    if (ei_decode_tuple_header(b, &idx, &arity) < 0 || arity != 2 ||
        ei_decode_pid(b, &idx, &from->pid) < 0)
        return TETHER_EINVAL;
    from->tag0 = idx;
    if (ei_skip_term(b, &idx) < 0)
        return TETHER_EINVAL;
    from->tag1 = idx;
    /* Tag = [alias | Ref] or [[alias | Ref] | _]: reply to the alias. */
    int t = from->tag0, n;
    if (ei_get_type(b, &t, &type, &size) == 0 && type == ERL_LIST_EXT &&
        ei_decode_list_header(b, &t, &n) == 0 && n == 1) {
        int inner = t, it, isz, m;
        if (ei_get_type(b, &inner, &it, &isz) == 0 && it == ERL_LIST_EXT &&
            ei_decode_list_header(b, &inner, &m) == 0 && m == 1)
            t = inner;
        char a[MAXATOMLEN_UTF8];
        if (ei_decode_atom(b, &t, a) == 0 && strcmp(a, "alias") == 0 &&
            ei_decode_ref(b, &t, &from->alias_ref) == 0)
            from->alias = true;
    }
    return 0;
}

int tether__gen_reply(tether_proc_t *self, const char *buf, int from_index,
                      const char *reply, size_t reply_len)
{
    tether__gen_from_t f;
    if (tether__gen_from_parse(buf, from_index, &f) < 0 || reply_len < 2)
        return TETHER_EINVAL;
    ei_x_buff x;
    if (ei_x_new_with_version(&x) < 0)
        return TETHER_ENOMEM;
    int rc = TETHER_ENOMEM;
    if (ei_x_encode_tuple_header(&x, 2) == 0 &&
        ei_x_append_buf(&x, buf + f.tag0, f.tag1 - f.tag0) == 0 &&
        ei_x_append_buf(&x, reply + 1, (int)reply_len - 1) == 0) {
        if (f.alias)
            rc = tether_proc_send_alias(self, &f.alias_ref, x.buff,
                                        (size_t)x.index);
        else
            rc = tether_proc_send(self, &f.pid, x.buff, (size_t)x.index);
    }
    ei_x_free(&x);
    return rc;
}

/* ---- from-handles -------------------------------------------------- */

tether_from_t *tether__from_new(tether_node_t *node, const erlang_pid *self,
                                const char *b, int idx)
{
    tether__gen_from_t gf;
    if (tether__gen_from_parse(b, idx, &gf) < 0)
        return NULL;
    size_t tag_len = (size_t)(gf.tag1 - gf.tag0);
    tether_from_t *f = calloc(1, sizeof *f + tag_len);
    if (f == NULL)
        return NULL;
    f->node = node;
    f->self = *self;
    f->to = gf.pid;
    f->alias = gf.alias;
    f->alias_ref = gf.alias_ref;
    f->tag_len = tag_len;
    memcpy(f->tag, b + gf.tag0, tag_len);
    return f;
}

tether_from_t *tether__from_rex(tether_node_t *node, const erlang_pid *self,
                                const erlang_pid *to)
{
    tether_from_t *f = calloc(1, sizeof *f);
    if (f == NULL)
        return NULL;
    f->node = node;
    f->self = *self;
    f->to = *to;
    f->plain_rex = true;
    return f;
}

void tether_from_free(tether_from_t *from)
{
    free(from);
}

int tether_reply(tether_from_t *from, const char *term, size_t len)
{
    if (from == NULL)
        return TETHER_EINVAL;
    int rc = TETHER_EINVAL;
    ei_x_buff x;
    if (!tether_term_valid(term, len))
        goto done;
    rc = TETHER_ENOMEM;
    if (ei_x_new_with_version(&x) < 0)
        goto done;
    int e = ei_x_encode_tuple_header(&x, 2);
    if (from->plain_rex)
        e |= ei_x_encode_atom(&x, "rex");
    else
        e |= ei_x_append_buf(&x, from->tag, (int)from->tag_len);
    e |= ei_x_append_buf(&x, term + 1, (int)len - 1);
    if (e == 0)
        rc = tether__send_any(from->node, &from->self, &from->to,
                              from->alias ? &from->alias_ref : NULL, x.buff,
                              (size_t)x.index);
    ei_x_free(&x);
done:
    free(from);
    return rc;
}

int tether_reply_atom(tether_from_t *from, const char *atom)
{
    char t[TETHER_ATOM_TERM_MAX];
    size_t n = tether_term_atom(t, sizeof t, atom ? atom : "");
    if (n == 0) {
        free(from);
        return TETHER_EINVAL;
    }
    return tether_reply(from, t, n);
}

/* ---- services ------------------------------------------------------ */

static void svc_handler(tether_proc_t *self, const tether_msg_t *msg, void *arg)
{
    tether_service_t *svc = arg;
    const char *b = msg->data;
    int idx = 1, arity;
    char a[MAXATOMLEN_UTF8];
    if (!tether_term_valid(b, msg->len))
        return;
    int t = 1;
    if (ei_decode_tuple_header(b, &idx, &arity) == 0 &&
        ei_decode_atom(b, &idx, a) == 0) {
        if (strcmp(a, "$gen_call") == 0 && arity == 3) {
            int from_idx = idx;
            if (ei_skip_term(b, &idx) < 0)
                return;
            tether_from_t *from =
                tether__from_new(svc->node, tether_proc_pid(self), b, from_idx);
            if (from == NULL)
                return;
            if (svc->ops.call)
                svc->ops.call(svc, from, b, idx, svc->ctx);
            else
                tether_from_free(from);
            return;
        }
        if (strcmp(a, "$gen_cast") == 0 && arity == 2) {
            if (svc->ops.cast)
                svc->ops.cast(svc, b, idx, svc->ctx);
            return;
        }
    }
    if (svc->ops.info)
        svc->ops.info(svc, b, t, svc->ctx);
}

static void svc_exit(tether_proc_t *self, const char *reason, size_t len,
                     void *arg)
{
    (void)self;
    tether_service_t *svc = arg;
    if (svc->ops.terminate)
        svc->ops.terminate(svc, reason, len, svc->ctx);
    free(svc);
}

static int svc_start(tether_node_t *node, tether_service_t *svc)
{
    tether_procs_t *procs = node->procs;
    if (tether_procs_whereis(procs, svc->name))
        return TETHER_EEXIST;
    tether_proc_spec_t spec = {svc_handler, svc_exit, svc};
    int rc = tether_proc_spawn(procs, &spec, &svc->proc);
    if (rc < 0)
        return rc;
    svc->pid = *tether_proc_pid(svc->proc);
    rc = tether_proc_register(svc->proc, svc->name);
    if (rc < 0) {
        /* The exit frees svc through svc_exit; keep the caller's copy
         * from being freed twice by returning a distinct code. */
        svc->ops.terminate = NULL;
        tether_proc_exit(svc->proc, NULL, 0);
        return TETHER_EEXIST;
    }
    return 0;
}

int tether_service_register(tether_node_t *node, const char *name,
                            const tether_service_ops_t *ops, void *ctx,
                            tether_service_t **svcp)
{
    if (node == NULL || !tether__name_ok(name) || ops == NULL)
        return TETHER_EINVAL;
    for (pending_svc_t *p = node->pending_svcs; p; p = p->next)
        if (strcmp(p->svc->name, name) == 0)
            return TETHER_EEXIST;
    tether_service_t *svc = calloc(1, sizeof *svc);
    if (svc == NULL)
        return TETHER_ENOMEM;
    svc->node = node;
    snprintf(svc->name, sizeof svc->name, "%s", name);
    svc->ops = *ops;
    svc->ctx = ctx;
    if (node->services_started) {
        int rc = svc_start(node, svc);
        if (rc < 0) {
            if (svc->proc == NULL)
                free(svc);
            return rc;
        }
    } else {
        pending_svc_t *p = calloc(1, sizeof *p);
        if (p == NULL) {
            free(svc);
            return TETHER_ENOMEM;
        }
        p->svc = svc;
        p->next = node->pending_svcs;
        node->pending_svcs = p;
    }
    if (svcp)
        *svcp = svc;
    return 0;
}

void tether_service_exit(tether_service_t *svc, const char *reason, size_t len)
{
    if (svc == NULL || svc->proc == NULL || !tether_proc_alive(svc->proc))
        return;
    if (reason && !tether_term_valid(reason, len))
        reason = NULL;
    tether_proc_exit(svc->proc, reason, reason ? len : 0);
}

tether_node_t *tether_service_node(const tether_service_t *svc)
{
    return svc->node;
}

const erlang_pid *tether_service_pid(const tether_service_t *svc)
{
    return &svc->pid;
}

int tether__services_start(tether_node_t *node)
{
    node->services_started = true;
    while (node->pending_svcs) {
        pending_svc_t *p = node->pending_svcs;
        node->pending_svcs = p->next;
        tether_service_t *svc = p->svc;
        free(p);
        int rc = svc_start(node, svc);
        if (rc < 0) {
            LOG(node, TETHER_LOG_ERROR, "cannot start service '%s': %s",
                svc->name, tether_strerror(rc));
            if (svc->proc == NULL)
                free(svc);
            return rc;
        }
    }
    return 0;
}

void tether__services_fini(tether_node_t *node)
{
    while (node->pending_svcs) {
        pending_svc_t *p = node->pending_svcs;
        node->pending_svcs = p->next;
        free(p->svc);
        free(p);
    }
}

int tether__send_any(tether_node_t *node, const erlang_pid *self,
                     const erlang_pid *to, const erlang_ref *alias,
                     const char *msg, size_t len)
{
    if (tether_node_on_loop(node))
        return tether__node_send_now(node, self, to, alias, msg, len);
    if (alias)
        return tether_node_post_send_alias(node, self, alias, msg, len);
    return tether_node_post_send(node, self, to, msg, len);
}

typedef struct name_send {
    char name[TETHER_NAME_MAX];
    char peer[TETHER_NAME_MAX];
    bool remote;
    size_t len;
    char msg[];
} name_send_t;

static void do_name_send(tether_node_t *node, void *arg)
{
    name_send_t *ns = arg;
    if (ns->remote && node->rex)
        (void)tether_proc_send_name(node->rex, ns->name, ns->peer, ns->msg,
                                    ns->len);
    else if (!ns->remote)
        tether_procs_reg_send_in(node->procs, NULL, ns->name, ns->msg, ns->len);
    free(ns);
}

int tether_send(tether_node_t *node, const erlang_pid *to, const char *term,
                size_t len)
{
    if (node == NULL || to == NULL || !tether_term_valid(term, len))
        return TETHER_EINVAL;
    return tether__send_any(node, NULL, to, NULL, term, len);
}

int tether_send_name(tether_node_t *node, const char *name, const char *peer,
                     const char *term, size_t len)
{
    if (node == NULL || !tether__name_ok(name) ||
        !tether_term_valid(term, len) ||
        (peer && !tether_node_name_valid(peer)))
        return TETHER_EINVAL;
    name_send_t *ns = calloc(1, sizeof *ns + len);
    if (ns == NULL)
        return TETHER_ENOMEM;
    snprintf(ns->name, sizeof ns->name, "%s", name);
    ns->remote = peer && strcmp(peer, tether_node_name(node)) != 0;
    if (ns->remote)
        snprintf(ns->peer, sizeof ns->peer, "%s", peer);
    ns->len = len;
    memcpy(ns->msg, term, len);
    if (tether_node_on_loop(node)) {
        do_name_send(node, ns);
        return 0;
    }
    int rc = tether_node_post(node, do_name_send, ns);
    if (rc < 0)
        free(ns);
    return rc;
}

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

/* ---- the node's pool ----------------------------------------------- */

typedef struct node_job {
    tether_node_t *node;
    tether_done_fn done;
    void *arg;
} node_job_t;

static void node_job_done(tether_node_t *node, void *arg)
{
    node_job_t *j = arg;
    if (j->done)
        j->done(node, j->arg);
    free(j);
}

static int pool_post(void *post_ctx, tether_pool_done_fn done, void *arg)
{
    (void)done; /* always node_job_done's trampoline below */
    return tether_node_post(post_ctx, node_job_done, arg);
}

static void pool_done_unused(void *arg)
{
    /* Only reached if posting failed: the node is going away. */
    free(arg);
}

typedef struct work_wrap {
    node_job_t job;
    tether_work_fn work;
    void *arg;
} work_wrap_t;

static void wrap_work(void *arg)
{
    work_wrap_t *w = arg;
    if (w->work)
        w->work(w->arg);
}

int tether_node_submit(tether_node_t *node, tether_work_fn work,
                       tether_done_fn done, void *arg)
{
    if (node == NULL || node->pool == NULL)
        return TETHER_ECLOSED;
    work_wrap_t *w = calloc(1, sizeof *w);
    if (w == NULL)
        return TETHER_ENOMEM;
    w->job.node = node;
    w->job.done = done;
    w->job.arg = arg;
    w->work = work;
    w->arg = arg;
    /* node_job_done frees w (job is its first member). */
    int rc = tether_pool_submit(node->pool, wrap_work, pool_done_unused, w);
    if (rc < 0)
        free(w);
    return rc;
}

static unsigned default_workers(const tether_node_t *node)
{
    unsigned n = node->cfg.workers;
    if (n == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        n = cpus > 2 ? (unsigned)cpus : 2;
    }
    return n > WORKERS_MAX ? WORKERS_MAX : n;
}

int tether__workers_start(tether_node_t *node)
{
    int rc =
        tether_pool_new(default_workers(node), pool_post, node, &node->pool);
    if (rc < 0) {
        LOG(node, TETHER_LOG_ERROR, "cannot start the worker pool: %s",
            tether_strerror(rc));
        return rc;
    }
    return 0;
}

void tether__workers_fini(tether_node_t *node)
{
    tether_pool_free(node->pool);
    node->pool = NULL;
}
