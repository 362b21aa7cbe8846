/*
 * cnode/functions.c: the module/function/arity table (tether/function.h)
 * and the calls of the functions in it (internal.h).
 *
 * A call reaches a function in one of three ways: an erpc process
 * (erpc.c), the rex process (rex.c), or the node itself
 * (tether__call_invoke, for the cluster's tether_rpc). Whoever makes the
 * call sets its mode and deliver hook; the function completes it exactly
 * once, at once or later from any thread. Completing encodes the outcome
 * for the mode, then delivers: at once on the loop thread, else through
 * a post to the loop. The call is freed after delivery.
 */
#include <stdlib.h>
#include <string.h>

#include "cnode/internal.h"
#include "tether/function.h"
#include "tether/term.h"

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
