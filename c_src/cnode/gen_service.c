/*
 * cnode/gen_service.c: services, registered C processes that answer
 * gen_server:call/cast (tether/gen_service.h), and the replies to
 * gen_server calls: from-handles (tether_reply, any thread) and the
 * built-in processes' replies from the loop (tether__gen_reply). The one
 * reader of a gen_server From = {Pid, Tag} is tether__gen_from_parse.
 */
#include <stdlib.h>
#include <string.h>

#include "cnode/internal.h"
#include "tether/gen_service.h"
#include "tether/term.h"

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
