/*
 * cnode/spawn_out.c: SPAWN_REQUESTs this node sends (see node.h and
 * internal.h). A request is an operation like the process table's: it
 * waits in the connection's queue until the handshake is done, then is
 * encoded with the peer's flags. What comes back for it (SPAWN_REPLY,
 * the monitor's MONITOR_P_EXIT, the connection going down) goes to the
 * hooks the layer that sent it set (erlang_call.c).
 */
#include <string.h>

#include "cnode/internal.h"
#include "dist/control.h"

void tether__node_set_spawn_out(tether_node_t *node,
                                const tether_spawn_out_ops_t *ops)
{
    if (ops)
        node->spawn_out = *ops;
    else
        memset(&node->spawn_out, 0, sizeof node->spawn_out);
}

int tether__node_spawn_request(tether_node_t *node, const char *peer,
                               const erlang_ref *req_id, const erlang_pid *from,
                               const erlang_pid *gl, const char *module,
                               const char *function, const char *args,
                               size_t args_len)
{
    if (peer == NULL || req_id == NULL || from == NULL || gl == NULL ||
        module == NULL || function == NULL || args == NULL || args_len < 2 ||
        strlen(module) >= TETHER_ATOM_MAX ||
        strlen(function) >= TETHER_ATOM_MAX || !tether_node_name_valid(peer))
        return TETHER_EINVAL;
    tether_out_t op = {.kind = TETHER__OUT_SPAWN_REQUEST,
                       .node = peer,
                       .from = from,
                       .from_name = module,
                       .to = gl,
                       .to_name = function,
                       .ref = req_id,
                       .msg = args,
                       .msg_len = args_len};
    return tether__conn_out(node, &op);
}

int tether__spawn_out_encode(ei_x_buff *x, uint64_t f, const erlang_pid *from,
                             const tether_out_t *op)
{
    /* [monitor] */
    static const uint8_t opts[] = {108, 0,   0,   0,   1,   119, 7,  'm',
                                   'o', 'n', 'i', 't', 'o', 'r', 106};
    int idx = 1, type = 0, size = 0;
    if (op->msg_len < 2 || (unsigned char)op->msg[0] != 131 ||
        ei_get_type(op->msg, &idx, &type, &size) < 0)
        return TETHER_EINVAL;
    if (type == ERL_NIL_EXT)
        size = 0;
    return tether__ctl_encode_spawn_request(
        x, f, op->ref, from, op->to, op->from_name, op->to_name, size, opts,
        sizeof opts, (const uint8_t *)op->msg, op->msg_len);
}

void tether__spawn_out_reply(tether_node_t *node, const erlang_ref *req_id,
                             const erlang_pid *pid, const char *err,
                             size_t err_len)
{
    if (node->spawn_out.reply)
        node->spawn_out.reply(node, req_id, pid, err, err_len);
}

bool tether__spawn_out_down(tether_node_t *node, const erlang_ref *ref,
                            const char *reason, size_t reason_len)
{
    return node->spawn_out.down &&
           node->spawn_out.down(node, ref, reason, reason_len);
}

void tether__spawn_out_nodedown(tether_node_t *node, const char *peer)
{
    if (node->spawn_out.nodedown)
        node->spawn_out.nodedown(node, peer);
}
