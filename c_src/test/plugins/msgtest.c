/*
 * test/plugins/msgtest.c: tether/messaging.h exposed to common_test as
 * a tether_cnode plugin (test support, built to
 * c_src/build/plugins/msgtest.so). It registers the service `msgsink`:
 *
 *   any plain message              kept, in arrival order
 *   call received                  the kept messages, oldest first
 *   call {forward, Peer, To, Msg, Opts}
 *                                  tether_messaging_forward(): ok |
 *                                  {error, Code} (Code as tether_strerror
 *                                  names it: enotfound, eclosed, ...)
 *       Opts: #{ack => boolean(), channel => atom(), partition_key =>
 *       term(), ack_timeout_ms => integer(), report_to => pid()}; a
 *       give-up sends {tether_undelivered, To, Msg, timeout | noproc} to
 *       report_to
 *   call {on_event, up | down, Node | any, Channel | undefined, Pid}
 *                                  tether_messaging_on_up/on_down: each
 *                                  event sends {msgtest_event, up | down,
 *                                  Node, Channel | undefined} to Pid
 *   call {parallelism, Channel}    the channel's parallelism or {error, C}
 *   call stats                     #{delivered, duplicates, ...}
 */
#include <stdlib.h>
#include <string.h>

#include "tether/tether.h"

#define KEPT_MAX    100000 /* messages kept */
#define REPORTS_MAX 64     /* distinct report_to / event pids */

typedef struct kept {
    char *term;
    size_t len;
} kept_t;

static kept_t *kept;
static size_t nkept;
static erlang_pid pids[REPORTS_MAX];
static size_t npids;

/* The slot of a pid (reused when equal), or NULL when full. */
static erlang_pid *pid_slot(const erlang_pid *p)
{
    for (size_t i = 0; i < npids; i++)
        if (strcmp(pids[i].node, p->node) == 0 && pids[i].num == p->num &&
            pids[i].serial == p->serial && pids[i].creation == p->creation)
            return &pids[i];
    if (npids == REPORTS_MAX)
        return NULL;
    pids[npids] = *p;
    return &pids[npids++];
}

static const char *code_atom(int rc)
{
    switch (rc) {
    case TETHER_EINVAL:
        return "einval";
    case TETHER_ENOTFOUND:
        return "enotfound";
    case TETHER_ECLOSED:
        return "eclosed";
    case TETHER_ETOOBIG:
        return "etoobig";
    case TETHER_ENOMEM:
        return "enomem";
    default:
        return "error";
    }
}

static void reply_rc(tether_from_t *from, int rc)
{
    ei_x_buff x;
    if (rc >= 0) {
        (void)tether_reply_atom(from, "ok");
        return;
    }
    if (ei_x_new_with_version(&x) < 0) {
        tether_from_free(from);
        return;
    }
    if (ei_x_encode_tuple_header(&x, 2) == 0 &&
        ei_x_encode_atom(&x, "error") == 0 &&
        ei_x_encode_atom(&x, code_atom(rc)) == 0)
        (void)tether_reply(from, x.buff, (size_t)x.index);
    else
        tether_from_free(from);
    ei_x_free(&x);
}

static void undelivered(tether_node_t *node, const char *peer, const char *to,
                        size_t to_len, const char *msg, size_t len,
                        tether_messaging_reason_t reason, void *ctx)
{
    ei_x_buff x;
    (void)peer;
    if (ei_x_new_with_version(&x) < 0)
        return;
    if (ei_x_encode_tuple_header(&x, 4) == 0 &&
        ei_x_encode_atom(&x, "tether_undelivered") == 0 &&
        ei_x_append_buf(&x, to + 1, (int)to_len - 1) == 0 &&
        ei_x_append_buf(&x, msg + 1, (int)len - 1) == 0 &&
        ei_x_encode_atom(
            &x, reason == TETHER_MESSAGING_NOPROC ? "noproc" : "timeout") == 0)
        (void)tether_send(node, ctx, x.buff, (size_t)x.index);
    ei_x_free(&x);
}

/* A copy of the term at b[idx] with its 131. */
static int slice(const char *b, int idx, ei_x_buff *x)
{
    int end = idx;
    if (ei_skip_term(b, &end) < 0 || ei_x_new_with_version(x) < 0)
        return -1;
    if (ei_x_append_buf(x, b + idx, end - idx) < 0) {
        ei_x_free(x);
        return -1;
    }
    return 0;
}

/* Reads the options map at b[*idx] into o (the key kept in key). */
static int read_opts(const char *b, int *idx, tether_messaging_opts_t *o,
                     char *chan, ei_x_buff *key, bool *has_key)
{
    int arity;
    if (ei_decode_map_header(b, idx, &arity) < 0)
        return -1;
    for (int i = 0; i < arity; i++) {
        char k[MAXATOMLEN_UTF8];
        int v;
        long ms;
        erlang_pid p;
        if (ei_decode_atom(b, idx, k) < 0)
            return -1;
        if (strcmp(k, "ack") == 0) {
            if (ei_decode_boolean(b, idx, &v) < 0)
                return -1;
            o->ack = v != 0;
        } else if (strcmp(k, "channel") == 0) {
            if (ei_decode_atom(b, idx, chan) < 0)
                return -1;
            o->channel = chan;
        } else if (strcmp(k, "partition_key") == 0) {
            if (slice(b, *idx, key) < 0 || ei_skip_term(b, idx) < 0)
                return -1;
            *has_key = true;
            o->partition_key = key->buff;
            o->partition_key_len = (size_t)key->index;
        } else if (strcmp(k, "ack_timeout_ms") == 0) {
            if (ei_decode_long(b, idx, &ms) < 0 || ms <= 0)
                return -1;
            o->ack_timeout_ms = (uint32_t)ms;
        } else if (strcmp(k, "report_to") == 0) {
            if (ei_decode_pid(b, idx, &p) < 0 ||
                (o->ctx = pid_slot(&p)) == NULL)
                return -1;
            o->undelivered = undelivered;
        } else {
            return -1;
        }
    }
    return 0;
}

/* {forward, Peer, To, Msg, Opts} after the tag. */
static void do_forward(tether_service_t *svc, tether_from_t *from,
                       const char *b, int idx)
{
    char peer[MAXATOMLEN_UTF8], chan[MAXATOMLEN_UTF8];
    tether_messaging_opts_t o = {0};
    ei_x_buff to, msg, key;
    bool has_key = false;
    int rc = TETHER_EINVAL;

    if (ei_decode_atom(b, &idx, peer) < 0 || slice(b, idx, &to) < 0) {
        reply_rc(from, TETHER_EINVAL);
        return;
    }
    if (ei_skip_term(b, &idx) < 0 || slice(b, idx, &msg) < 0) {
        ei_x_free(&to);
        reply_rc(from, TETHER_EINVAL);
        return;
    }
    if (ei_skip_term(b, &idx) == 0 &&
        read_opts(b, &idx, &o, chan, &key, &has_key) == 0)
        rc = tether_messaging_forward(tether_service_node(svc), peer, to.buff,
                                      (size_t)to.index, msg.buff,
                                      (size_t)msg.index, &o);
    if (has_key)
        ei_x_free(&key);
    ei_x_free(&to);
    ei_x_free(&msg);
    reply_rc(from, rc);
}

static void event(tether_node_t *node, const char *peer, const char *channel,
                  bool up, void *ctx)
{
    ei_x_buff x;
    if (ei_x_new_with_version(&x) < 0)
        return;
    if (ei_x_encode_tuple_header(&x, 4) == 0 &&
        ei_x_encode_atom(&x, "msgtest_event") == 0 &&
        ei_x_encode_atom(&x, up ? "up" : "down") == 0 &&
        ei_x_encode_atom(&x, peer) == 0 &&
        ei_x_encode_atom(&x, channel ? channel : "undefined") == 0)
        (void)tether_send(node, ctx, x.buff, (size_t)x.index);
    ei_x_free(&x);
}

/* {on_event, up | down, Node | any, Channel | undefined, Pid}. */
static void do_on_event(tether_service_t *svc, tether_from_t *from,
                        const char *b, int idx)
{
    char dir[MAXATOMLEN_UTF8], node[MAXATOMLEN_UTF8], chan[MAXATOMLEN_UTF8];
    erlang_pid p, *slot;
    int rc;
    if (ei_decode_atom(b, &idx, dir) < 0 || ei_decode_atom(b, &idx, node) < 0 ||
        ei_decode_atom(b, &idx, chan) < 0 || ei_decode_pid(b, &idx, &p) < 0 ||
        (slot = pid_slot(&p)) == NULL) {
        reply_rc(from, TETHER_EINVAL);
        return;
    }
    const char *peer = strcmp(node, "any") == 0 ? NULL : node;
    const char *c = strcmp(chan, "undefined") == 0 ? NULL : chan;
    rc = strcmp(dir, "up") == 0
             ? tether_messaging_on_up(tether_service_node(svc), peer, c, event,
                                      slot)
             : tether_messaging_on_down(tether_service_node(svc), peer, c,
                                        event, slot);
    reply_rc(from, rc);
}

static void reply_received(tether_from_t *from)
{
    ei_x_buff x;
    bool ok;
    if (ei_x_new_with_version(&x) < 0) {
        tether_from_free(from);
        return;
    }
    ok = nkept == 0 || ei_x_encode_list_header(&x, (long)nkept) == 0;
    for (size_t i = 0; ok && i < nkept; i++)
        ok = ei_x_append_buf(&x, kept[i].term + 1, (int)kept[i].len - 1) == 0;
    if (ok && ei_x_encode_empty_list(&x) == 0)
        (void)tether_reply(from, x.buff, (size_t)x.index);
    else
        tether_from_free(from);
    ei_x_free(&x);
}

static void reply_stats(tether_service_t *svc, tether_from_t *from)
{
    tether_messaging_stats_t s;
    ei_x_buff x;
    if (tether_messaging_stats(tether_service_node(svc), &s) < 0 ||
        ei_x_new_with_version(&x) < 0) {
        reply_rc(from, TETHER_ECLOSED);
        return;
    }
    const struct {
        const char *k;
        uint64_t v;
    } kv[] = {
        {"malformed", s.malformed},   {"refused", s.refused},
        {"bad_lane", s.bad_lane},     {"stale", s.stale},
        {"duplicates", s.duplicates}, {"retransmissions", s.retransmissions},
        {"dropped", s.dropped},       {"undelivered", s.undelivered},
        {"noproc", s.noproc},         {"delivered", s.delivered},
        {"unsent", s.unsent}};
    bool ok = ei_x_encode_map_header(&x, sizeof kv / sizeof kv[0]) == 0;
    for (size_t i = 0; ok && i < sizeof kv / sizeof kv[0]; i++)
        ok = ei_x_encode_atom(&x, kv[i].k) == 0 &&
             ei_x_encode_ulonglong(&x, kv[i].v) == 0;
    if (ok)
        (void)tether_reply(from, x.buff, (size_t)x.index);
    else
        tether_from_free(from);
    ei_x_free(&x);
}

static void svc_call(tether_service_t *svc, tether_from_t *from, const char *b,
                     int idx, void *ctx)
{
    char tag[MAXATOMLEN_UTF8];
    int arity = 0, t, sz;
    (void)ctx;
    if (ei_get_type(b, &idx, &t, &sz) == 0 && t != ERL_SMALL_TUPLE_EXT) {
        if (ei_decode_atom(b, &idx, tag) < 0)
            tag[0] = '\0';
    } else if (ei_decode_tuple_header(b, &idx, &arity) < 0 ||
               ei_decode_atom(b, &idx, tag) < 0) {
        tag[0] = '\0';
    }
    if (strcmp(tag, "received") == 0 && arity == 0) {
        reply_received(from);
    } else if (strcmp(tag, "stats") == 0 && arity == 0) {
        reply_stats(svc, from);
    } else if (strcmp(tag, "forward") == 0 && arity == 5) {
        do_forward(svc, from, b, idx);
    } else if (strcmp(tag, "on_event") == 0 && arity == 5) {
        do_on_event(svc, from, b, idx);
    } else if (strcmp(tag, "parallelism") == 0 && arity == 2 &&
               ei_decode_atom(b, &idx, tag) == 0) {
        int n = tether_messaging_parallelism(tether_service_node(svc), tag);
        ei_x_buff x;
        if (n < 0 || ei_x_new_with_version(&x) < 0) {
            reply_rc(from, n < 0 ? n : TETHER_ENOMEM);
            return;
        }
        if (ei_x_encode_long(&x, n) == 0)
            (void)tether_reply(from, x.buff, (size_t)x.index);
        else
            tether_from_free(from);
        ei_x_free(&x);
    } else {
        (void)tether_reply_atom(from, "bad_request");
    }
}

/* Every plain message is kept. */
static void svc_info(tether_service_t *svc, const char *b, int idx, void *ctx)
{
    ei_x_buff x;
    (void)svc;
    (void)ctx;
    if (nkept == KEPT_MAX || slice(b, idx, &x) < 0)
        return;
    kept[nkept].term = malloc((size_t)x.index);
    if (kept[nkept].term != NULL) {
        memcpy(kept[nkept].term, x.buff, (size_t)x.index);
        kept[nkept].len = (size_t)x.index;
        nkept++;
    }
    ei_x_free(&x);
}

int tether_plugin_init(tether_node_t *node)
{
    static const tether_service_ops_t ops = {.call = svc_call,
                                             .info = svc_info};
    kept = calloc(KEPT_MAX, sizeof *kept);
    if (kept == NULL)
        return TETHER_ENOMEM;
    return tether_service_register(node, "msgsink", &ops, NULL, NULL);
}
