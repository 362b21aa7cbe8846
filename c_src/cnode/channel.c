/*
 * cnode/channel.c: the C-node's messaging process `tether_channel` (see
 * tether/messaging.h), the C twin of the BEAM's tether_channel: it owns
 * the lanes (cnode/lane.h) of this node, one per peer, channel and lane
 * index, and does their I/O on the loop thread:
 *   - mailbox: {tether_channel_env, From, Chan, Index, Bytes} from a
 *     peer's lane -> opened by the cluster's engine (From authenticated
 *     by the session MAC), decoded, handed to the lane (created for a
 *     configured channel and index only); {'$tether_held', From, Etf}
 *     (an envelope a defer partition held, opened by the engine on heal)
 *     -> the same; {tether_member, up | down, Node} (the cluster's
 *     member events) -> the lanes to Node retransmit, and the up/down
 *     callbacks run. Anything else is counted as malformed.
 *   - sending: a lane's batch or ack is sealed by the engine for the
 *     peer and sent as {tether_channel_env, OurNode, Chan, Index, Bytes}
 *     to `tether_channel` on the peer, over an existing connection only
 *     (the lane retransmits); a defer partition holds it in the engine.
 *   - time: one node timer at the earliest lane deadline.
 * The process is started by tether_cluster_start(); its on_exit frees
 * the lanes (undelivered callbacks do not run then).
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cnode/channel.h"
#include "cnode/cluster.h"
#include "cnode/internal.h"
#include "cnode/lane.h"
#include "cnode/node.h"
#include "cnode/proc.h"
#include "core/codec.h"
#include "core/engine.h"
#include "tether/term.h"

#define LANES_MAX  16384 /* lanes of one node, all peers */
#define ENV_TAG    "tether_channel_env"
#define HELD_TAG   "$tether_held"
#define MEMBER_TAG "tether_member"
#define FNV_OFFSET UINT64_C(14695981039346656037)
#define FNV_PRIME  UINT64_C(1099511628211)

typedef char name_t[TETHER_NODE_NAME_MAX + 1];

typedef struct chan_conf {
    char name[MAXATOMLEN_UTF8];
    uint32_t parallelism;
} chan_conf_t;

typedef struct tether_channels channels_t;

/* One lane and what its callbacks need to know. */
typedef struct lane_slot {
    channels_t *ch;
    name_t peer;
    size_t chan; /* into ch->chans */
    uint32_t index;
    tether_lane_t *lane;
} lane_slot_t;

/* An up/down callback. */
typedef struct event_cb {
    bool up;
    bool any;
    name_t peer;
    int chan; /* into ch->chans, or -1 */
    tether_messaging_event_fn fn;
    void *ctx;
} event_cb_t;

/* What a message with ack carries for its give-up: the lane frees it. */
typedef struct report {
    tether_messaging_undelivered_fn fn;
    void *ctx;
    name_t peer;
    size_t to_len, msg_len;
    char data[]; /* to, then msg, each 131-prefixed */
} report_t;

struct tether_channels {
    tether_node_t *node;
    tether_proc_t *proc;
    erlang_pid pid;
    chan_conf_t chans[TETHER_MESSAGING_CHANNELS_MAX + 1];
    size_t nchans;
    lane_slot_t **lanes;
    size_t nlanes, caplanes;
    event_cb_t cbs[TETHER_MESSAGING_CALLBACKS_MAX];
    size_t ncbs;
    tether_messaging_stats_t stats;
    int64_t last_epoch;
    bool timer_on;
    tether_timer_id_t timer;
    uint64_t timer_at;
};

/* ---- configuration -------------------------------------------------- */

static bool atom_name_ok(const char *s)
{
    return s != NULL && *s != '\0' && strlen(s) < MAXATOMLEN_UTF8;
}

int tether__channels_check(const tether_messaging_channel_t *c, size_t n)
{
    if (n > TETHER_MESSAGING_CHANNELS_MAX || (n > 0 && c == NULL))
        return TETHER_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (!atom_name_ok(c[i].name) || c[i].parallelism == 0 ||
            c[i].parallelism > TETHER_MESSAGING_PARALLELISM_MAX)
            return TETHER_EINVAL;
        for (size_t j = 0; j < i; j++)
            if (strcmp(c[i].name, c[j].name) == 0)
                return TETHER_EINVAL;
    }
    return 0;
}

static int chan_find(const channels_t *ch, const char *name)
{
    for (size_t i = 0; i < ch->nchans; i++)
        if (strcmp(ch->chans[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* ---- the mailbox (untrusted) ---------------------------------------- */

/* A node name atom (name@host) at b[*idx] into out. 0 or -1. */
static int decode_node(const char *b, int *idx, char *out)
{
    if (tether__etf_decode_name(b, idx, out) < 0 ||
        !tether_node_name_valid(out))
        return -1;
    return 0;
}

int tether__channels_parse(const char *buf, size_t len,
                           tether_channels_msg_t *out)
{
    char tag[MAXATOMLEN_UTF8];
    int idx = 0, ver, arity;

    memset(out, 0, sizeof *out);
    out->kind = TETHER_CHANNELS_MSG_BAD;
    if (buf == NULL || len > INT32_MAX || !tether_term_valid(buf, len) ||
        ei_decode_version(buf, &idx, &ver) < 0 ||
        ei_decode_tuple_header(buf, &idx, &arity) < 0 ||
        ei_decode_atom_as(buf, &idx, tag, sizeof tag, ERLANG_UTF8, NULL, NULL) <
            0)
        return out->kind;
    if (strcmp(tag, ENV_TAG) == 0 && arity == 5) {
        if (decode_node(buf, &idx, out->from) < 0 ||
            ei_skip_term(buf, &idx) < 0 || ei_skip_term(buf, &idx) < 0 ||
            !tether__lane_binary_at(buf, idx, &out->bytes, &out->len))
            return out->kind;
        out->kind = TETHER_CHANNELS_MSG_ENV;
    } else if (strcmp(tag, HELD_TAG) == 0 && arity == 3) {
        if (decode_node(buf, &idx, out->from) < 0 ||
            !tether__lane_binary_at(buf, idx, &out->bytes, &out->len))
            return out->kind;
        out->kind = TETHER_CHANNELS_MSG_HELD;
    } else if (strcmp(tag, MEMBER_TAG) == 0 && arity == 3) {
        if (ei_decode_atom_as(buf, &idx, tag, sizeof tag, ERLANG_UTF8, NULL,
                              NULL) < 0 ||
            (strcmp(tag, "up") != 0 && strcmp(tag, "down") != 0) ||
            decode_node(buf, &idx, out->from) < 0)
            return out->kind;
        out->up = tag[0] == 'u';
        out->kind = TETHER_CHANNELS_MSG_MEMBER;
    }
    return out->kind;
}

/* ---- lanes ---------------------------------------------------------- */

static uint64_t realtime_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Seals a lane's term for its peer and sends it (see the file comment). */
static void lane_emit(void *ctx, const char *etf, size_t len)
{
    lane_slot_t *s = ctx;
    channels_t *ch = s->ch;
    tether_engine_t *eng = tether__cluster_engine(ch->node);
    uint8_t *sealed = NULL;
    size_t slen = 0;
    ei_x_buff x;
    int rc;

    if (eng == NULL) {
        ch->stats.unsent++;
        return;
    }
    rc = tether_engine_seal(eng, s->peer, TETHER_MSG_SHELL,
                            (const uint8_t *)etf, len, &sealed, &slen);
    if (rc == TETHER_EAGAIN)
        return; /* held by a defer partition, sent on heal */
    if (rc < 0 || slen > INT32_MAX) {
        ch->stats.unsent++;
        free(sealed);
        return;
    }
    if (ei_x_new_with_version(&x) == 0) {
        if (ei_x_encode_tuple_header(&x, 5) == 0 &&
            ei_x_encode_atom(&x, ENV_TAG) == 0 &&
            tether__etf_encode_name(&x, tether_node_name(ch->node)) == 0 &&
            ei_x_encode_atom(&x, ch->chans[s->chan].name) == 0 &&
            ei_x_encode_ulong(&x, s->index) == 0 &&
            ei_x_encode_binary(&x, sealed, (long)slen) == 0)
            (void)tether__node_reg_send_noconnect(ch->node, &ch->pid, s->peer,
                                                  TETHER_MESSAGING_PROCESS,
                                                  x.buff, (size_t)x.index);
        ei_x_free(&x);
    }
    free(sealed);
}

/* The local process a ServerRef (no 131) names, or NULL. */
static tether_proc_t *resolve(channels_t *ch, const char *ref, size_t len)
{
    tether_procs_t *procs = tether_node_procs(ch->node);
    char name[MAXATOMLEN_UTF8];
    int idx = 0, t, sz, arity;
    erlang_pid pid;

    if (len > INT32_MAX || ei_get_type(ref, &idx, &t, &sz) < 0)
        return NULL;
    switch (t) {
    case ERL_PID_EXT:
    case ERL_NEW_PID_EXT:
        if (ei_decode_pid(ref, &idx, &pid) < 0 ||
            !tether_procs_is_local(procs, &pid))
            return NULL;
        return tether_procs_find(procs, &pid);
    case ERL_SMALL_TUPLE_EXT:
        if (ei_decode_tuple_header(ref, &idx, &arity) < 0 || arity != 2)
            return NULL;
        /* {Name, Node}: as on the BEAM, Name on this node. */
        /* fall through */
    default:
        if (ei_decode_atom_as(ref, &idx, name, sizeof name, ERLANG_UTF8, NULL,
                              NULL) < 0)
            return NULL;
        return tether_procs_whereis(procs, name);
    }
}

/* Delivers payload (no 131) to the process ref (no 131) names. */
static int deliver_to(channels_t *ch, const char *ref, size_t ref_len,
                      const char *payload, size_t plen)
{
    tether_proc_t *p = resolve(ch, ref, ref_len);
    char *msg;
    int rc;

    if (p == NULL)
        return TETHER_ENOTFOUND;
    msg = malloc(plen + 1);
    if (msg == NULL)
        return TETHER_ENOMEM;
    msg[0] = (char)131;
    memcpy(msg + 1, payload, plen);
    rc = tether_procs_send(tether_node_procs(ch->node), NULL,
                           tether_proc_pid(p), msg, plen + 1);
    free(msg);
    return rc < 0 ? TETHER_ENOTFOUND : 0;
}

static int lane_deliver(void *ctx, const char *ref, size_t ref_len,
                        const char *payload, size_t plen)
{
    lane_slot_t *s = ctx;
    return deliver_to(s->ch, ref, ref_len, payload, plen);
}

static void lane_undelivered(void *ctx, void *report, tether_lane_reason_t why)
{
    lane_slot_t *s = ctx;
    report_t *r = report;
    if (r->fn != NULL)
        r->fn(s->ch->node, r->peer, r->data, r->to_len, r->data + r->to_len,
              r->msg_len,
              why == TETHER_LANE_NOPROC ? TETHER_MESSAGING_NOPROC
                                        : TETHER_MESSAGING_TIMEOUT,
              r->ctx);
}

static lane_slot_t *lane_find(channels_t *ch, const char *peer, size_t chan,
                              uint32_t index)
{
    for (size_t i = 0; i < ch->nlanes; i++) {
        lane_slot_t *s = ch->lanes[i];
        if (s->chan == chan && s->index == index && strcmp(s->peer, peer) == 0)
            return s;
    }
    return NULL;
}

/* The lane to peer for (chan, index), created if there is none. */
static lane_slot_t *lane_get(channels_t *ch, const char *peer, size_t chan,
                             uint32_t index)
{
    lane_slot_t *s = lane_find(ch, peer, chan, index);
    if (s != NULL)
        return s;
    if (ch->nlanes == LANES_MAX || strlen(peer) >= sizeof(name_t))
        return NULL;
    if (ch->nlanes == ch->caplanes) {
        size_t cap = ch->caplanes ? ch->caplanes * 2 : 16;
        lane_slot_t **p = realloc(ch->lanes, cap * sizeof *p);
        if (p == NULL)
            return NULL;
        ch->lanes = p;
        ch->caplanes = cap;
    }
    s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->ch = ch;
    snprintf(s->peer, sizeof s->peer, "%s", peer);
    s->chan = chan;
    s->index = index;
    /* Epochs grow across lanes, so a restarted lane is never stale. */
    int64_t epoch = (int64_t)realtime_us();
    if (epoch <= ch->last_epoch)
        epoch = ch->last_epoch + 1;
    ch->last_epoch = epoch;
    tether_lane_cb_t cb = {lane_emit, lane_deliver, lane_undelivered, s};
    s->lane = tether__lane_new(ch->chans[chan].name, index, epoch, NULL, &cb,
                               &ch->stats);
    if (s->lane == NULL) {
        free(s);
        return NULL;
    }
    ch->lanes[ch->nlanes++] = s;
    return s;
}

static void on_timer(tether_node_t *node, void *arg);

/* One node timer at the earliest lane deadline. */
static void schedule(channels_t *ch)
{
    uint64_t at = 0, now = tether_node_now_ms();
    for (size_t i = 0; i < ch->nlanes; i++) {
        uint64_t d = tether__lane_deadline(ch->lanes[i]->lane);
        if (d != 0 && (at == 0 || d < at))
            at = d;
    }
    if (ch->timer_on && (at == 0 || at != ch->timer_at)) {
        (void)tether_node_timer_cancel(ch->node, ch->timer);
        ch->timer_on = false;
    }
    if (at == 0 || ch->timer_on)
        return;
    ch->timer_on = tether_node_timer_add(ch->node, at > now ? at - now : 0,
                                         on_timer, ch, &ch->timer) == 0;
    ch->timer_at = at;
}

/* The engine may have work after a seal or an open. */
static void done(channels_t *ch)
{
    tether__cluster_kick(ch->node);
    schedule(ch);
}

static void on_timer(tether_node_t *node, void *arg)
{
    channels_t *ch = arg;
    uint64_t now = tether_node_now_ms();
    (void)node;
    ch->timer_on = false;
    for (size_t i = 0; i < ch->nlanes; i++)
        tether__lane_tick(ch->lanes[i]->lane, now);
    done(ch);
}

/* ---- input ---------------------------------------------------------- */

/* An opened {tether_channel, Inner} from peer (untrusted contents). */
static void inner(channels_t *ch, const char *peer, const char *etf, size_t len)
{
    tether_lane_inner_t in;
    int c;
    lane_slot_t *s;

    if (tether__lane_decode(etf, len, &in) < 0) {
        ch->stats.malformed++;
        return;
    }
    c = chan_find(ch, in.chan);
    if (c < 0 || in.index >= ch->chans[c].parallelism ||
        (s = lane_get(ch, peer, (size_t)c, in.index)) == NULL) {
        ch->stats.bad_lane++;
        return;
    }
    tether__lane_recv(s->lane, tether_node_now_ms(), &in);
}

static void on_env(channels_t *ch, const tether_channels_msg_t *m)
{
    tether_engine_t *eng = tether__cluster_engine(ch->node);
    const uint8_t *payload = NULL;
    size_t plen = 0;
    uint8_t type = 0;
    int rc;

    if (eng == NULL) {
        ch->stats.refused++;
        return;
    }
    tether__cluster_kick(ch->node); /* the time, and a connected peer up */
    rc = tether_engine_open(eng, m->from, (const uint8_t *)m->bytes, m->len,
                            &type, &payload, &plen);
    if (rc == TETHER_EAGAIN)
        return; /* a defer partition: handed back on heal */
    if (rc < 0) {
        ch->stats.refused++;
        return;
    }
    if (type != TETHER_MSG_SHELL) {
        ch->stats.malformed++;
        return;
    }
    inner(ch, m->from, (const char *)payload, plen);
}

static void fire(channels_t *ch, const char *peer, bool up)
{
    /* Callbacks may register more; only those present now run. */
    size_t n = ch->ncbs;
    for (size_t i = 0; i < n; i++) {
        event_cb_t *cb = &ch->cbs[i];
        if (cb->up != up || (!cb->any && strcmp(cb->peer, peer) != 0))
            continue;
        cb->fn(ch->node, peer, cb->chan >= 0 ? ch->chans[cb->chan].name : NULL,
               up, cb->ctx);
    }
}

static void on_member(channels_t *ch, const char *peer, bool up)
{
    if (up) {
        uint64_t now = tether_node_now_ms();
        for (size_t i = 0; i < ch->nlanes; i++)
            if (strcmp(ch->lanes[i]->peer, peer) == 0)
                tether__lane_peer_up(ch->lanes[i]->lane, now);
    }
    fire(ch, peer, up);
}

static void handler(tether_proc_t *self, const tether_msg_t *msg, void *arg)
{
    channels_t *ch = arg;
    tether_channels_msg_t m;
    (void)self;
    switch (tether__channels_parse(msg->data, msg->len, &m)) {
    case TETHER_CHANNELS_MSG_ENV:
        on_env(ch, &m);
        break;
    case TETHER_CHANNELS_MSG_HELD:
        inner(ch, m.from, m.bytes, m.len);
        break;
    case TETHER_CHANNELS_MSG_MEMBER:
        on_member(ch, m.from, m.up);
        break;
    default:
        ch->stats.malformed++;
        break;
    }
    done(ch);
}

static void channels_free(channels_t *ch)
{
    for (size_t i = 0; i < ch->nlanes; i++) {
        tether__lane_free(ch->lanes[i]->lane);
        free(ch->lanes[i]);
    }
    free(ch->lanes);
    free(ch);
}

static void on_exit_fn(tether_proc_t *self, const char *reason,
                       size_t reason_len, void *arg)
{
    channels_t *ch = arg;
    (void)self;
    (void)reason;
    (void)reason_len;
    if (ch->timer_on)
        (void)tether_node_timer_cancel(ch->node, ch->timer);
    if (ch->node->channels == ch)
        ch->node->channels = NULL;
    channels_free(ch);
}

int tether__channels_start(tether_node_t *node,
                           const tether_messaging_channel_t *chans, size_t n)
{
    channels_t *ch;
    int rc = tether__channels_check(chans, n);

    if (rc < 0)
        return rc;
    if (node->channels != NULL ||
        tether_procs_whereis(tether_node_procs(node),
                             TETHER_MESSAGING_PROCESS) != NULL)
        return TETHER_EEXIST;
    ch = calloc(1, sizeof *ch);
    if (ch == NULL)
        return TETHER_ENOMEM;
    ch->node = node;
    snprintf(ch->chans[0].name, sizeof ch->chans[0].name, "%s",
             TETHER_MESSAGING_DEFAULT);
    ch->chans[0].parallelism = 1;
    ch->nchans = 1;
    for (size_t i = 0; i < n; i++) {
        chan_conf_t *c = strcmp(chans[i].name, TETHER_MESSAGING_DEFAULT) == 0
                             ? &ch->chans[0]
                             : &ch->chans[ch->nchans++];
        snprintf(c->name, sizeof c->name, "%s", chans[i].name);
        c->parallelism = chans[i].parallelism;
    }
    tether_proc_spec_t spec = {handler, on_exit_fn, ch};
    rc = tether_proc_spawn(tether_node_procs(node), &spec, &ch->proc);
    if (rc < 0) {
        free(ch);
        return rc;
    }
    /* From here the process owns ch: on_exit frees it. */
    ch->pid = *tether_proc_pid(ch->proc);
    node->channels = ch;
    rc = tether_proc_register(ch->proc, TETHER_MESSAGING_PROCESS);
    if (rc < 0) {
        tether_proc_exit(ch->proc, NULL, 0);
        return rc;
    }
    return 0;
}

/* ---- the cluster's hand-offs ---------------------------------------- */

/* Sends the 131-prefixed x to the process (its own turn). */
static void post(channels_t *ch, ei_x_buff *x)
{
    (void)tether_procs_send(tether_node_procs(ch->node), NULL, &ch->pid,
                            x->buff, (size_t)x->index);
}

void tether__channels_member(tether_node_t *node, const char *peer, bool up)
{
    channels_t *ch = node->channels;
    ei_x_buff x;
    if (ch == NULL || ei_x_new_with_version(&x) < 0)
        return;
    if (ei_x_encode_tuple_header(&x, 3) == 0 &&
        ei_x_encode_atom(&x, MEMBER_TAG) == 0 &&
        ei_x_encode_atom(&x, up ? "up" : "down") == 0 &&
        tether__etf_encode_name(&x, peer) == 0)
        post(ch, &x);
    ei_x_free(&x);
}

bool tether__channels_owns(const char *etf, size_t len)
{
    char tag[MAXATOMLEN_UTF8];
    int idx = 0, ver, arity;
    return etf != NULL && len <= INT32_MAX && tether_term_valid(etf, len) &&
           ei_decode_version(etf, &idx, &ver) == 0 &&
           ei_decode_tuple_header(etf, &idx, &arity) == 0 && arity == 2 &&
           ei_decode_atom_as(etf, &idx, tag, sizeof tag, ERLANG_UTF8, NULL,
                             NULL) == 0 &&
           strcmp(tag, TETHER_LANE_TAG) == 0;
}

void tether__channels_held(tether_node_t *node, const char *from,
                           const char *etf, size_t len)
{
    channels_t *ch = node->channels;
    ei_x_buff x;
    if (ch == NULL || len > INT32_MAX || ei_x_new_with_version(&x) < 0)
        return;
    if (ei_x_encode_tuple_header(&x, 3) == 0 &&
        ei_x_encode_atom(&x, HELD_TAG) == 0 &&
        tether__etf_encode_name(&x, from) == 0 &&
        ei_x_encode_binary(&x, etf, (long)len) == 0)
        post(ch, &x);
    ei_x_free(&x);
}

/* ---- the public API (tether/messaging.h) ---------------------------- */

/* The lane index of a partition key (131-prefixed; NULL: 0). */
static int key_lane(const char *key, size_t len, uint32_t n, uint32_t *out)
{
    ei_x_buff x;
    uint64_t h = FNV_OFFSET;
    if (key == NULL || n == 1) {
        *out = 0;
        return key == NULL || tether_term_valid(key, len) ? 0 : TETHER_EINVAL;
    }
    if (ei_x_new(&x) < 0)
        return TETHER_ENOMEM;
    if (tether_term_normalize(key, len, &x) < 0) {
        ei_x_free(&x);
        return TETHER_EINVAL;
    }
    for (int i = 0; i < x.index; i++)
        h = (h ^ (uint8_t)x.buff[i]) * FNV_PRIME;
    ei_x_free(&x);
    *out = (uint32_t)(h % n);
    return 0;
}

static report_t *report_new(const tether_messaging_opts_t *o, const char *peer,
                            const char *to, size_t to_len, const char *msg,
                            size_t len)
{
    report_t *r = malloc(sizeof *r + to_len + len);
    if (r == NULL)
        return NULL;
    r->fn = o->undelivered;
    r->ctx = o->ctx;
    snprintf(r->peer, sizeof r->peer, "%s", peer);
    r->to_len = to_len;
    r->msg_len = len;
    memcpy(r->data, to, to_len);
    memcpy(r->data + to_len, msg, len);
    return r;
}

int tether_messaging_forward(tether_node_t *node, const char *peer,
                             const char *to, size_t to_len, const char *msg,
                             size_t len, const tether_messaging_opts_t *opts)
{
    static const tether_messaging_opts_t none = {0};
    const tether_messaging_opts_t *o = opts ? opts : &none;
    channels_t *ch = node ? node->channels : NULL;
    const char *chan_name = o->channel ? o->channel : TETHER_MESSAGING_DEFAULT;
    report_t *r = NULL;
    uint32_t index;
    int c, rc;

    if (ch == NULL)
        return TETHER_ECLOSED;
    if (peer == NULL || strlen(peer) > TETHER_NODE_NAME_MAX ||
        !tether_node_name_valid(peer) || to == NULL || msg == NULL ||
        to_len < 2 || len < 2 || !tether_term_valid(to, to_len) ||
        !tether_term_valid(msg, len))
        return TETHER_EINVAL;
    if (len - 1 > TETHER_LANE_MSG_MAX)
        return TETHER_ETOOBIG;
    c = chan_find(ch, chan_name);
    if (c < 0)
        return TETHER_ENOTFOUND;
    rc = key_lane(o->partition_key, o->partition_key_len,
                  ch->chans[c].parallelism, &index);
    if (rc < 0)
        return rc;
    if (strcmp(peer, tether_node_name(node)) == 0)
        return deliver_to(ch, to + 1, to_len - 1, msg + 1, len - 1);
    if (!o->ack && tether_cluster_is_member(node, peer) != 1)
        return TETHER_ECLOSED;
    lane_slot_t *s = lane_get(ch, peer, (size_t)c, index);
    if (s == NULL)
        return TETHER_ENOMEM;
    if (o->ack && (r = report_new(o, peer, to, to_len, msg, len)) == NULL)
        return TETHER_ENOMEM;
    uint64_t now = tether_node_now_ms();
    uint32_t budget =
        o->ack_timeout_ms ? o->ack_timeout_ms : TETHER_MESSAGING_ACK_TIMEOUT_MS;
    rc = tether__lane_push(s->lane, now, to + 1, to_len - 1, msg + 1, len - 1,
                           r, now + budget);
    if (rc < 0) {
        free(r);
        return rc;
    }
    done(ch);
    return 0;
}

int tether_messaging_forward_name(tether_node_t *node, const char *peer,
                                  const char *name, const char *msg, size_t len,
                                  const tether_messaging_opts_t *opts)
{
    char atom[TETHER_ATOM_TERM_MAX];
    size_t alen = name ? tether_term_atom(atom, sizeof atom, name) : 0;
    if (alen == 0)
        return TETHER_EINVAL;
    return tether_messaging_forward(node, peer, atom, alen, msg, len, opts);
}

static int on_event(tether_node_t *node, bool up, const char *peer,
                    const char *channel, tether_messaging_event_fn fn,
                    void *ctx)
{
    channels_t *ch = node ? node->channels : NULL;
    event_cb_t *cb;
    int c = -1;

    if (ch == NULL)
        return TETHER_ECLOSED;
    if (fn == NULL || (peer != NULL && (strlen(peer) > TETHER_NODE_NAME_MAX ||
                                        !tether_node_name_valid(peer))))
        return TETHER_EINVAL;
    if (channel != NULL && (c = chan_find(ch, channel)) < 0)
        return TETHER_ENOTFOUND;
    if (ch->ncbs == TETHER_MESSAGING_CALLBACKS_MAX)
        return TETHER_ETOOBIG;
    cb = &ch->cbs[ch->ncbs++];
    memset(cb, 0, sizeof *cb);
    cb->up = up;
    cb->any = peer == NULL;
    if (peer != NULL)
        snprintf(cb->peer, sizeof cb->peer, "%s", peer);
    cb->chan = c;
    cb->fn = fn;
    cb->ctx = ctx;
    return 0;
}

int tether_messaging_on_up(tether_node_t *node, const char *peer,
                           const char *channel, tether_messaging_event_fn fn,
                           void *ctx)
{
    return on_event(node, true, peer, channel, fn, ctx);
}

int tether_messaging_on_down(tether_node_t *node, const char *peer,
                             const char *channel, tether_messaging_event_fn fn,
                             void *ctx)
{
    return on_event(node, false, peer, channel, fn, ctx);
}

int tether_messaging_parallelism(tether_node_t *node, const char *channel)
{
    channels_t *ch = node ? node->channels : NULL;
    int c;
    if (ch == NULL)
        return TETHER_ECLOSED;
    c = channel ? chan_find(ch, channel) : -1;
    return c < 0 ? TETHER_ENOTFOUND : (int)ch->chans[c].parallelism;
}

int tether_messaging_stats(const tether_node_t *node,
                           tether_messaging_stats_t *out)
{
    const channels_t *ch = node ? node->channels : NULL;
    if (ch == NULL || out == NULL)
        return TETHER_ECLOSED;
    *out = ch->stats;
    return 0;
}
