/*
 * cnode/builtins.c: net_kernel and the echo service (see builtins.h).
 *
 * Both are plain C processes over proc.h. Every message is validated in
 * bounds with tether_term_valid() before ei decodes it, so a malformed term
 * sent by another local process is ignored like an unknown one.
 */
#include <stdlib.h>
#include <string.h>

#include "cnode/api.h"
#include "cnode/builtins.h"
#include "tether/term.h"

typedef struct exit_rec {
    char *term; /* {From, Reason} without the 131 byte */
    size_t len;
} exit_rec_t;

typedef struct echo_mon {
    erlang_ref ref;
    erlang_pid requester;
} echo_mon_t;

typedef struct echo {
    exit_rec_t exits[TETHER_ECHO_EXITS_MAX];
    size_t nexits;
    echo_mon_t mons[TETHER_ECHO_MONITORS_MAX];
    size_t nmons;
} echo_t;

/* Index just past the term at *idx, or -1. */
static int skip(const char *buf, int idx)
{
    return ei_skip_term(buf, &idx) < 0 ? -1 : idx;
}

/* Sends buf[start..end) (a term without 131) to pid. */
static int send_slice(tether_proc_t *self, const erlang_pid *to,
                      const char *buf, int start, int end)
{
    ei_x_buff x;
    if (ei_x_new_with_version(&x) < 0)
        return TETHER_ENOMEM;
    int rc = TETHER_ENOMEM;
    if (ei_x_append_buf(&x, buf + start, end - start) == 0)
        rc = tether_proc_send(self, to, x.buff, (size_t)x.index);
    ei_x_free(&x);
    return rc;
}

/* ---- net_kernel ---------------------------------------------------- */

static void net_kernel_handler(tether_proc_t *self, const tether_msg_t *msg,
                               void *arg)
{
    (void)arg;
    const char *b = msg->data;
    int idx = 0, ver, arity, rarity;
    char a[MAXATOMLEN_UTF8];
    if (!tether_term_valid(b, msg->len) ||
        ei_decode_version(b, &idx, &ver) < 0 ||
        ei_decode_tuple_header(b, &idx, &arity) < 0 || arity != 3 ||
        ei_decode_atom(b, &idx, a) < 0 || strcmp(a, "$gen_call") != 0)
        return;
    int from_index = idx;
    idx = skip(b, idx);
    if (idx < 0 || ei_decode_tuple_header(b, &idx, &rarity) < 0 ||
        rarity != 2 || ei_decode_atom(b, &idx, a) < 0 ||
        strcmp(a, "is_auth") != 0)
        return;
    char yes[TETHER_ATOM_TERM_MAX];
    size_t yl = tether_term_atom(yes, sizeof yes, "yes");
    (void)tether__gen_reply(self, b, from_index, yes, yl);
}

/* ---- echo ---------------------------------------------------------- */

static void echo_exit(tether_proc_t *self, const char *reason, size_t len,
                      void *arg)
{
    (void)self;
    (void)reason;
    (void)len;
    echo_t *e = arg;
    for (size_t i = 0; i < e->nexits; i++)
        free(e->exits[i].term);
    free(e);
}

static void store_exit(echo_t *e, const char *b, int from_start, int end)
{
    if (e->nexits == TETHER_ECHO_EXITS_MAX) {
        free(e->exits[0].term);
        memmove(e->exits, e->exits + 1, sizeof e->exits[0] * (e->nexits - 1));
        e->nexits--;
    }
    /* {From, Reason}: a 2-tuple header then the two terms as they came. */
    size_t body = (size_t)(end - from_start);
    char *t = malloc(body + 2);
    if (t == NULL)
        return;
    t[0] = 104; /* SMALL_TUPLE_EXT */
    t[1] = 2;
    memcpy(t + 2, b + from_start, body);
    e->exits[e->nexits].term = t;
    e->exits[e->nexits].len = body + 2;
    e->nexits++;
}

static void reply_exits(tether_proc_t *self, echo_t *e, const erlang_pid *to)
{
    ei_x_buff x;
    if (ei_x_new_with_version(&x) < 0)
        return;
    int rc = ei_x_encode_tuple_header(&x, 2);
    rc |= ei_x_encode_atom(&x, "exits");
    if (e->nexits)
        rc |= ei_x_encode_list_header(&x, (long)e->nexits);
    for (size_t i = 0; i < e->nexits; i++)
        rc |= ei_x_append_buf(&x, e->exits[i].term, (int)e->exits[i].len);
    rc |= ei_x_encode_empty_list(&x);
    if (rc == 0)
        (void)tether_proc_send(self, to, x.buff, (size_t)x.index);
    ei_x_free(&x);
}

static void reply_spawned(tether_proc_t *self, const erlang_pid *to,
                          const char *name, const erlang_pid *pid)
{
    ei_x_buff x;
    if (ei_x_new_with_version(&x) < 0)
        return;
    int rc = ei_x_encode_tuple_header(&x, 3);
    rc |= ei_x_encode_atom(&x, pid ? "spawned" : "error");
    rc |= ei_x_encode_atom(&x, name);
    if (pid)
        rc |= ei_x_encode_pid(&x, pid);
    else
        rc |= ei_x_encode_atom(&x, "already_registered");
    if (rc == 0)
        (void)tether_proc_send(self, to, x.buff, (size_t)x.index);
    ei_x_free(&x);
}

/* {monitor, FromPid, Target}: Target is a pid, a name or {Name, Node}. */
static void echo_monitor(tether_proc_t *self, echo_t *e, const char *b, int idx)
{
    erlang_pid from, pid;
    erlang_ref ref;
    char name[MAXATOMLEN_UTF8], node[MAXATOMLEN_UTF8];
    int type, size, arity, rc;
    if (ei_decode_pid(b, &idx, &from) < 0 ||
        e->nmons == TETHER_ECHO_MONITORS_MAX ||
        ei_get_type(b, &idx, &type, &size) < 0)
        return;
    if (type == ERL_PID_EXT || type == ERL_NEW_PID_EXT) {
        if (ei_decode_pid(b, &idx, &pid) < 0)
            return;
        rc = tether_proc_monitor(self, &pid, &ref);
    } else if (type == ERL_ATOM_EXT || type == ERL_SMALL_ATOM_EXT ||
               type == ERL_ATOM_UTF8_EXT || type == ERL_SMALL_ATOM_UTF8_EXT) {
        if (ei_decode_atom(b, &idx, name) < 0)
            return;
        rc = tether_proc_monitor_name(self, name, NULL, &ref);
    } else {
        if (ei_decode_tuple_header(b, &idx, &arity) < 0 || arity != 2 ||
            ei_decode_atom(b, &idx, name) < 0 ||
            ei_decode_atom(b, &idx, node) < 0)
            return;
        rc = tether_proc_monitor_name(self, name, node, &ref);
    }
    if (rc < 0)
        return;
    e->mons[e->nmons].ref = ref;
    e->mons[e->nmons].requester = from;
    e->nmons++;
    ei_x_buff x;
    if (ei_x_new_with_version(&x) < 0)
        return;
    if (ei_x_encode_tuple_header(&x, 2) == 0 &&
        ei_x_encode_atom(&x, "monitoring") == 0 &&
        ei_x_encode_ref(&x, &ref) == 0)
        (void)tether_proc_send(self, &from, x.buff, (size_t)x.index);
    ei_x_free(&x);
}

/* A 'DOWN' for a monitor taken with {monitor, ...}: forward it as is. */
static void echo_down(tether_proc_t *self, echo_t *e, const tether_msg_t *msg,
                      int idx)
{
    erlang_ref ref;
    if (ei_decode_ref(msg->data, &idx, &ref) < 0)
        return;
    for (size_t i = 0; i < e->nmons; i++) {
        if (!tether_ref_eq(&e->mons[i].ref, &ref))
            continue;
        (void)tether_proc_send(self, &e->mons[i].requester, msg->data,
                               msg->len);
        e->mons[i] = e->mons[--e->nmons];
        return;
    }
}

static void echo_handler(tether_proc_t *self, const tether_msg_t *msg,
                         void *arg)
{
    echo_t *e = arg;
    const char *b = msg->data;
    int idx = 0, ver, arity;
    char tag[MAXATOMLEN_UTF8];
    if (!tether_term_valid(b, msg->len) ||
        ei_decode_version(b, &idx, &ver) < 0 ||
        ei_decode_tuple_header(b, &idx, &arity) < 0 || arity < 2 ||
        ei_decode_atom(b, &idx, tag) < 0)
        return;
    int end = (int)msg->len;
    erlang_pid pid;
    char a[MAXATOMLEN_UTF8];

    if (strcmp(tag, "echo") == 0 && arity == 3) {
        if (ei_decode_pid(b, &idx, &pid) == 0)
            (void)send_slice(self, &pid, b, idx, end);
    } else if (strcmp(tag, "spawn") == 0 && arity == 3) {
        if (ei_decode_pid(b, &idx, &pid) < 0 || ei_decode_atom(b, &idx, a) < 0)
            return;
        tether_proc_t *np = NULL;
        int rc = tether__echo_spawn(tether_proc_procs(self), a, &np);
        reply_spawned(self, &pid, a, rc == 0 ? tether_proc_pid(np) : NULL);
    } else if (strcmp(tag, "stop") == 0 && arity == 2) {
        ei_x_buff x;
        if (ei_x_new_with_version(&x) < 0)
            return;
        if (ei_x_append_buf(&x, b + idx, end - idx) == 0)
            tether_proc_exit(self, x.buff, (size_t)x.index);
        ei_x_free(&x);
    } else if (strcmp(tag, "link") == 0 && arity == 2) {
        if (ei_decode_pid(b, &idx, &pid) == 0)
            (void)tether_proc_link(self, &pid);
    } else if (strcmp(tag, "unlink") == 0 && arity == 2) {
        if (ei_decode_pid(b, &idx, &pid) == 0)
            (void)tether_proc_unlink(self, &pid);
    } else if (strcmp(tag, "trap_exit") == 0 && arity == 2) {
        if (ei_decode_atom(b, &idx, a) == 0 &&
            (strcmp(a, "true") == 0 || strcmp(a, "false") == 0))
            tether_proc_trap_exit(self, strcmp(a, "true") == 0);
    } else if (strcmp(tag, "get_exits") == 0 && arity == 2) {
        if (ei_decode_pid(b, &idx, &pid) == 0)
            reply_exits(self, e, &pid);
    } else if (strcmp(tag, "monitor") == 0 && arity == 3) {
        echo_monitor(self, e, b, idx);
    } else if (strcmp(tag, "DOWN") == 0 && arity == 5) {
        echo_down(self, e, msg, idx);
    } else if (strcmp(tag, "EXIT") == 0 && arity == 3) {
        store_exit(e, b, idx, end);
    } else if (strcmp(tag, "$gen_call") == 0 && arity == 3) {
        int from_index = idx;
        idx = skip(b, idx);
        if (idx >= 0 && ei_decode_atom(b, &idx, a) == 0 &&
            strcmp(a, "ping") == 0) {
            char pong[TETHER_ATOM_TERM_MAX];
            size_t pl = tether_term_atom(pong, sizeof pong, "pong");
            (void)tether__gen_reply(self, b, from_index, pong, pl);
        }
    }
}

int tether__echo_spawn(tether_procs_t *procs, const char *name,
                       tether_proc_t **procp)
{
    if (name && tether_procs_whereis(procs, name) != NULL)
        return TETHER_EEXIST;
    echo_t *e = calloc(1, sizeof *e);
    if (e == NULL)
        return TETHER_ENOMEM;
    tether_proc_spec_t spec = {echo_handler, echo_exit, e};
    tether_proc_t *p;
    int rc = tether_proc_spawn(procs, &spec, &p);
    if (rc < 0) {
        free(e);
        return rc;
    }
    if (name) {
        rc = tether_proc_register(p, name);
        if (rc < 0) {
            tether_proc_exit(p, NULL, 0);
            return rc;
        }
    }
    if (procp)
        *procp = p;
    return 0;
}

int tether__builtins_start(tether_procs_t *procs)
{
    tether_proc_spec_t nk = {net_kernel_handler, NULL, NULL};
    tether_proc_t *p;
    int rc = tether_proc_spawn(procs, &nk, &p);
    if (rc < 0)
        return rc;
    rc = tether_proc_register(p, "net_kernel");
    if (rc < 0)
        return rc;
    return tether__echo_spawn(procs, "echo", NULL);
}
