/*
 * cnode/dispatch.c: what a control message that arrived on a connection
 * does (see internal.h). Every control message of OTP 25 is decoded by
 * dist/control.c; the ones the C process model supports are handed to
 * the process table, SPAWN_REQUEST to the spawn hook (the service API
 * answers erpc's), SPAWN_REPLY and MONITOR_P_EXIT for our own requests
 * to spawn_out.c; unknown ones are counted and ignored, never fatal.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cnode/internal.h"
#include "dist/control.h"

/* Returns buf[slice] as a 131-prefixed term (in node scratch or in place). */
static const char *versioned_term(tether_node_t *node, const uint8_t *buf,
                                  const tether_etf_slice_t *s, int versioned,
                                  size_t *len)
{
    if (s->len == 0)
        return NULL;
    if (versioned && s->off > 0 && buf[s->off - 1] == 131) {
        *len = s->len + 1;
        return (const char *)buf + s->off - 1;
    }
    if (node->scratch_cap < s->len + 1) {
        size_t cap = s->len + 1 < 4096 ? 4096 : s->len + 1;
        uint8_t *p = realloc(node->scratch, cap);
        if (p == NULL)
            return NULL;
        node->scratch = p;
        node->scratch_cap = cap;
    }
    node->scratch[0] = 131;
    memcpy(node->scratch + 1, buf + s->off, s->len);
    *len = s->len + 1;
    return (const char *)node->scratch;
}

/* Sends SPAWN_REPLY with an error atom (notsup, badarg, system_limit). */
static void refuse_spawn(tether__conn_t *c, const tether_ctl_t *ctl,
                         const char *why)
{
    char reason[TETHER_ATOM_TERM_MAX];
    size_t rl = tether_term_atom(reason, sizeof reason, why);
    tether__conn_spawn_reply(c, &ctl->ref, &ctl->from.pid, 0, NULL, reason, rl);
}

/* Reads the link and monitor options out of a validated OptList. */
static long spawn_opt_flags(const uint8_t *buf, const tether_etf_slice_t *s)
{
    long flags = 0;
    int idx = (int)s->off, n, type, size;
    const char *b = (const char *)buf;
    if (s->len == 0 || ei_get_type(b, &idx, &type, &size) < 0 ||
        type != ERL_LIST_EXT || ei_decode_list_header(b, &idx, &n) < 0)
        return 0;
    for (int i = 0; i < n; i++) {
        char a[MAXATOMLEN_UTF8];
        int at = idx, tarity;
        /* {monitor, MonitorOpts} (erpc:multicall) counts as monitor. */
        if (ei_decode_tuple_header(b, &at, &tarity) == 0 && tarity == 2 &&
            ei_decode_atom(b, &at, a) == 0) {
            if (strcmp(a, "monitor") == 0)
                flags |= TETHER_SPAWN_FLAG_MONITOR;
        } else if (at = idx, ei_decode_atom(b, &at, a) == 0) {
            if (strcmp(a, "link") == 0)
                flags |= TETHER_SPAWN_FLAG_LINK;
            else if (strcmp(a, "monitor") == 0)
                flags |= TETHER_SPAWN_FLAG_MONITOR;
        }
        if (ei_skip_term(b, &idx) < 0)
            break;
    }
    return flags;
}

/*
 * SPAWN_REQUEST: without a spawn hook the answer is notsup. With one, the
 * hook starts a process; the runtime replies with its pid and sets up the
 * link and monitor the requester asked for, in that order, before the
 * new process handles any message (so its exit reason, e.g. erpc's
 * {Ref, return, Value}, reaches the requester as DOWN).
 */
static void handle_spawn(tether_node_t *node, tether__conn_t *c,
                         const tether_dist_msg_t *dm, const tether_ctl_t *ctl)
{
    if (node->spawn_fn == NULL) {
        refuse_spawn(c, ctl, "notsup");
        return;
    }
    size_t alen = 0, olen = 0;
    const char *args = NULL, *opts = NULL;
    char *args_copy = NULL;
    args = versioned_term(node, dm->data, &ctl->message, dm->versioned, &alen);
    if (args && args == (const char *)node->scratch) {
        /* The scratch buffer is reused for the options below. */
        args_copy = malloc(alen);
        if (args_copy == NULL) {
            refuse_spawn(c, ctl, "system_limit");
            return;
        }
        memcpy(args_copy, args, alen);
        args = args_copy;
    }
    opts =
        versioned_term(node, dm->data, &ctl->spawn_opts, dm->versioned, &olen);
    tether_spawn_req_t req = {
        .peer = tether__conn_peer(c),
        .req_id = &ctl->ref,
        .from = &ctl->from.pid,
        .group_leader = &ctl->group_leader,
        .module = ctl->module,
        .function = ctl->function,
        .arity = ctl->arity,
        .args = args,
        .args_len = alen,
        .opts = opts,
        .opts_len = olen,
    };
    erlang_pid pid;
    const char *why = "notsup";
    int rc = node->spawn_fn(node, &req, &pid, &why);
    free(args_copy);
    if (rc < 0) {
        refuse_spawn(c, ctl, why ? why : "notsup");
        return;
    }
    long flags = spawn_opt_flags(dm->data, &ctl->spawn_opts);
    tether__conn_spawn_reply(c, &ctl->ref, &ctl->from.pid, flags, &pid, NULL,
                             0);
    if (flags & TETHER_SPAWN_FLAG_LINK)
        tether_procs_link_in(node->procs, &ctl->from.pid, &pid);
    if (flags & TETHER_SPAWN_FLAG_MONITOR)
        tether_procs_monitor_in(node->procs, &ctl->from.pid, &pid, NULL,
                                &ctl->ref);
}

void tether__dispatch(tether_node_t *node, tether__conn_t *c,
                      const tether_dist_msg_t *dm)
{
    tether_procs_t *procs = node->procs;
    const char *peer = tether__conn_peer(c);
    tether_ctl_t ctl;
    int rc = tether__ctl_decode(dm->data, dm->len, dm->versioned, &ctl);
    if (rc == TETHER_EUNSUPP) {
        node->stats.unknown_control++;
        LOG(node, TETHER_LOG_WARNING,
            "unknown control message %d from '%s' ignored", ctl.op, peer);
        return;
    }
    if (rc < 0) {
        node->stats.malformed_frames++;
        LOG(node, TETHER_LOG_WARNING,
            "malformed control message from '%s' ignored (%s)", peer,
            tether_strerror(rc));
        return;
    }
    node->stats.msgs_in++;
    const uint8_t *b = dm->data;
    int v = dm->versioned;
    size_t len = 0;
    const char *t;
    switch (ctl.op) {
    case TETHER_DOP_SEND:
    case TETHER_DOP_SEND_TT:
        t = versioned_term(node, b, &ctl.message, v, &len);
        if (t)
            tether_procs_send_in(procs, NULL, &ctl.to.pid, t, len);
        break;
    case TETHER_DOP_SEND_SENDER:
    case TETHER_DOP_SEND_SENDER_TT:
        t = versioned_term(node, b, &ctl.message, v, &len);
        if (t)
            tether_procs_send_in(procs, &ctl.from.pid, &ctl.to.pid, t, len);
        break;
    case TETHER_DOP_REG_SEND:
    case TETHER_DOP_REG_SEND_TT:
        t = versioned_term(node, b, &ctl.message, v, &len);
        if (t)
            tether_procs_reg_send_in(procs, &ctl.from.pid, ctl.to.name, t, len);
        break;
    case TETHER_DOP_ALIAS_SEND:
    case TETHER_DOP_ALIAS_SEND_TT:
        t = versioned_term(node, b, &ctl.message, v, &len);
        if (t)
            tether_procs_alias_send_in(procs, &ctl.from.pid, &ctl.ref, t, len);
        break;
    case TETHER_DOP_LINK:
        tether_procs_link_in(procs, &ctl.from.pid, &ctl.to.pid);
        break;
    case TETHER_DOP_UNLINK:
    case TETHER_DOP_UNLINK_ID:
        tether_procs_unlink_in(procs, &ctl.from.pid, &ctl.to.pid,
                               ctl.unlink_id);
        break;
    case TETHER_DOP_UNLINK_ID_ACK:
        tether_procs_unlink_ack_in(procs, &ctl.from.pid, &ctl.to.pid,
                                   ctl.unlink_id);
        break;
    case TETHER_DOP_EXIT:
    case TETHER_DOP_EXIT_TT:
    case TETHER_DOP_PAYLOAD_EXIT:
    case TETHER_DOP_PAYLOAD_EXIT_TT:
    case TETHER_DOP_EXIT2:
    case TETHER_DOP_EXIT2_TT:
    case TETHER_DOP_PAYLOAD_EXIT2:
    case TETHER_DOP_PAYLOAD_EXIT2_TT: {
        bool exit2 = ctl.op == TETHER_DOP_EXIT2 ||
                     ctl.op == TETHER_DOP_EXIT2_TT ||
                     ctl.op == TETHER_DOP_PAYLOAD_EXIT2 ||
                     ctl.op == TETHER_DOP_PAYLOAD_EXIT2_TT;
        t = versioned_term(node, b, &ctl.reason, v, &len);
        if (t)
            tether_procs_exit_in(procs, &ctl.from.pid, &ctl.to.pid, t, len,
                                 exit2);
        break;
    }
    case TETHER_DOP_MONITOR_P:
        tether_procs_monitor_in(procs, &ctl.from.pid,
                                ctl.to.is_name ? NULL : &ctl.to.pid,
                                ctl.to.is_name ? ctl.to.name : NULL, &ctl.ref);
        break;
    case TETHER_DOP_DEMONITOR_P:
        tether_procs_demonitor_in(
            procs, &ctl.from.pid, ctl.to.is_name ? NULL : &ctl.to.pid,
            ctl.to.is_name ? ctl.to.name : NULL, &ctl.ref);
        break;
    case TETHER_DOP_MONITOR_P_EXIT:
    case TETHER_DOP_PAYLOAD_MONITOR_P_EXIT:
        t = versioned_term(node, b, &ctl.reason, v, &len);
        if (t && tether__spawn_out_down(node, &ctl.ref, t, len))
            break;
        if (t)
            tether_procs_monitor_exit_in(
                procs, ctl.from.is_name ? NULL : &ctl.from.pid,
                ctl.from.is_name ? ctl.from.name : NULL, peer, &ctl.to.pid,
                &ctl.ref, t, len);
        break;
    case TETHER_DOP_SPAWN_REQUEST:
    case TETHER_DOP_SPAWN_REQUEST_TT:
        handle_spawn(node, c, dm, &ctl);
        break;
    case TETHER_DOP_SPAWN_REPLY:
    case TETHER_DOP_SPAWN_REPLY_TT:
        if (ctl.result_is_pid) {
            tether__spawn_out_reply(node, &ctl.ref, &ctl.result_pid, NULL, 0);
        } else {
            t = versioned_term(node, b, &ctl.result, v, &len);
            if (t)
                tether__spawn_out_reply(node, &ctl.ref, NULL, t, len);
        }
        break;
    default:
        /* NODE_LINK, GROUP_LEADER: nothing to do yet. */
        LOG(node, TETHER_LOG_DEBUG, "control message %s from '%s' ignored",
            tether__ctl_op_name(ctl.op), peer);
        break;
    }
}

void tether_node_set_spawn_handler(tether_node_t *node, tether_spawn_fn fn)
{
    node->spawn_fn = fn;
}

void tether__dispatch_fini(tether_node_t *node)
{
    free(node->scratch);
    node->scratch = NULL;
    node->scratch_cap = 0;
}
