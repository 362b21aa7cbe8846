/*
 * cnode/rex.c: the registered process rex, which answers the rpc module
 * of a BEAM node (see internal.h):
 *
 *   {'$gen_call', From, {call | block_call, M, F, A, Gl}}
 *                     rpc:block_call, and rpc:call where erpc is not used:
 *                     runs the function, replies with rpc's value or
 *                     {badrpc, ...}
 *   {From, {call, M, F, A, Gl}}
 *                     the same from an older rpc: replies {rex, Reply}
 *   {'$gen_cast', {cast, M, F, A, Gl}}
 *                     runs the function, nothing goes back
 *   {From, features_request}
 *                     replies {features_reply, Node, [erpc]}, so rpc on
 *                     the peer uses erpc for us
 *   {io_request, From, ReplyAs, _}
 *                     output of the functions we called is dropped, and
 *                     answered ok so the remote process does not wait
 *
 * rex is also the process outgoing erpc calls are made from
 * (erlang_call.c) and remote tether_send_name() sends from (send.c).
 */
#include <stdbool.h>
#include <string.h>

#include "cnode/internal.h"
#include "tether/term.h"

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
