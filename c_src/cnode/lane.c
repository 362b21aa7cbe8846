/*
 * cnode/lane.c: one lane of the messaging protocol, sans-IO (see
 * cnode/lane.h for the wire terms and the state machine).
 */
#include <stdlib.h>
#include <string.h>

#include "cnode/lane.h"
#include "tether/term.h"

#define ETF_VERSION    131
#define BINARY_HDR_LEN 5 /* BINARY_EXT: tag, 4-byte length */

/* A frame the sender holds, pending or in flight. */
typedef struct out_frame {
    struct out_frame *next;
    uint64_t seq;
    uint64_t expire; /* monotonic ms; 0: not yet (no ack, never sent) */
    size_t bytes;    /* counted against the window */
    void *report;    /* the last frame of a message with ack, or NULL */
    bool skip;       /* given up: travels as `skip` */
    size_t len;
    char etf[]; /* the frame term, without 131 */
} out_frame_t;

typedef struct frame_queue {
    out_frame_t *head, *tail;
    size_t n;
} frame_queue_t;

/* A frame received ahead of rx_next: a copy of its term. */
typedef struct rx_item {
    uint64_t seq;
    size_t len;
    char *term;
} rx_item_t;

struct tether_lane {
    char chan[MAXATOMLEN_UTF8];
    uint32_t index;
    int64_t epoch;
    tether_lane_config_t cfg;
    tether_lane_cb_t cb;
    tether_lane_stats_t *stats;
    /* Sending half. */
    uint64_t next;
    frame_queue_t pending, inflight;
    size_t inflight_bytes;
    uint32_t rto;
    uint64_t timer_at; /* 0: not armed */
    /* Receiving half. */
    bool has_rx;
    int64_t rx_epoch;
    uint64_t rx_next;
    rx_item_t *rx_buf; /* sorted by seq, at most TETHER_LANE_RX_AHEAD_MAX */
    size_t rx_n;
    char *parts; /* the parts of a large message so far */
    size_t parts_len, parts_cap;
    bool parts_bad; /* over TETHER_LANE_JOINED_MAX: skipped to its last */
    uint64_t failed[TETHER_LANE_FAILED_MAX];
    size_t nfailed;
};

/* ---- decoding (untrusted bytes) ------------------------------------- */

static bool is_atom_type(int t)
{
    return t == ERL_ATOM_EXT || t == ERL_SMALL_ATOM_EXT ||
           t == ERL_ATOM_UTF8_EXT || t == ERL_SMALL_ATOM_UTF8_EXT;
}

/* A non-negative integer that fits 63 bits. 0 or -1. */
static int decode_count(const char *b, int *idx, uint64_t *out)
{
    long long v;
    if (ei_decode_longlong(b, idx, &v) < 0 || v < 0)
        return -1;
    *out = (uint64_t)v;
    return 0;
}

static int decode_atom(const char *b, int *idx, char *out, size_t cap)
{
    int t, sz;
    if (ei_get_type(b, idx, &t, &sz) < 0 || !is_atom_type(t) ||
        cap < MAXATOMLEN_UTF8)
        return -1;
    return ei_decode_atom_as(b, idx, out, (int)cap, ERLANG_UTF8, NULL, NULL);
}

bool tether__lane_binary_at(const char *b, int idx, const char **bytes,
                            size_t *len)
{
    int t, sz;
    if (ei_get_type(b, &idx, &t, &sz) < 0 || t != ERL_BINARY_EXT || sz < 0)
        return false;
    *bytes = b + idx + BINARY_HDR_LEN;
    *len = (size_t)sz;
    return true;
}

/* Decodes the frame term at b[*idx] (the buffer valid as a whole). */
static int frame_at(const char *b, int *idx, tether_lane_frame_t *f)
{
    char tag[MAXATOMLEN_UTF8];
    int t, sz, arity, start = *idx;

    if (ei_get_type(b, idx, &t, &sz) < 0)
        return -1;
    if (is_atom_type(t)) {
        if (decode_atom(b, idx, tag, sizeof tag) < 0 || strcmp(tag, "skip"))
            return -1;
        f->kind = TETHER_LANE_FRAME_SKIP;
    } else {
        if (ei_decode_tuple_header(b, idx, &arity) < 0 ||
            decode_atom(b, idx, tag, sizeof tag) < 0)
            return -1;
        if (arity == 4 && strcmp(tag, "m") == 0) {
            int r0 = *idx, p0, ack;
            if (ei_skip_term(b, idx) < 0)
                return -1;
            p0 = *idx;
            if (ei_skip_term(b, idx) < 0)
                return -1;
            f->ref = b + r0;
            f->ref_len = (size_t)(p0 - r0);
            f->payload = b + p0;
            f->payload_len = (size_t)(*idx - p0);
            if (ei_decode_boolean(b, idx, &ack) < 0)
                return -1;
            f->ack = ack != 0;
            f->kind = TETHER_LANE_FRAME_MSG;
        } else if (arity == 2 &&
                   (strcmp(tag, "p") == 0 || strcmp(tag, "l") == 0)) {
            if (!tether__lane_binary_at(b, *idx, &f->bin, &f->bin_len) ||
                ei_skip_term(b, idx) < 0)
                return -1;
            f->kind =
                tag[0] == 'p' ? TETHER_LANE_FRAME_PART : TETHER_LANE_FRAME_LAST;
        } else {
            return -1;
        }
    }
    f->term = b + start;
    f->term_len = (size_t)(*idx - start);
    return 0;
}

/* {Seq, Frame} at b[*idx]. */
static int seq_frame_at(const char *b, int *idx, tether_lane_frame_t *f)
{
    int arity;
    memset(f, 0, sizeof *f);
    if (ei_decode_tuple_header(b, idx, &arity) < 0 || arity != 2 ||
        decode_count(b, idx, &f->seq) < 0 || f->seq == 0)
        return -1;
    return frame_at(b, idx, f);
}

/* FailedSeqs: a list of integers, or a string when all are below 256. */
static int decode_failed(const char *b, int *idx, tether_lane_inner_t *out)
{
    int t, sz, n;
    if (ei_get_type(b, idx, &t, &sz) < 0)
        return -1;
    if (t == ERL_STRING_EXT) {
        char s[TETHER_LANE_FAILED_MAX + 1];
        if (sz > TETHER_LANE_FAILED_MAX || ei_decode_string(b, idx, s) < 0)
            return -1;
        for (int i = 0; i < sz; i++)
            out->failed[i] = (uint8_t)s[i];
        out->nfailed = (size_t)sz;
        return 0;
    }
    if (ei_decode_list_header(b, idx, &n) < 0 || n < 0 ||
        n > TETHER_LANE_FAILED_MAX)
        return -1;
    for (int i = 0; i < n; i++)
        if (decode_count(b, idx, &out->failed[i]) < 0)
            return -1;
    out->nfailed = (size_t)n;
    if (n > 0 && (ei_decode_list_header(b, idx, &n) < 0 || n != 0))
        return -1;
    return 0;
}

int tether__lane_decode(const char *buf, size_t len, tether_lane_inner_t *out)
{
    char tag[MAXATOMLEN_UTF8];
    int idx = 0, ver, arity, n;
    uint64_t index;
    long long epoch;

    memset(out, 0, sizeof *out);
    if (buf == NULL || len > INT32_MAX || !tether_term_valid(buf, len) ||
        ei_decode_version(buf, &idx, &ver) < 0 ||
        ei_decode_tuple_header(buf, &idx, &arity) < 0 || arity != 2 ||
        decode_atom(buf, &idx, tag, sizeof tag) < 0 ||
        strcmp(tag, TETHER_LANE_TAG) != 0 ||
        ei_decode_tuple_header(buf, &idx, &arity) < 0)
        return TETHER_EPROTO;
    if (arity == 2) {
        /* {relayed, Batch | Ack}: came round a cut path (branch msg's
         * transitive relays); decoded as the direct form. */
        if (decode_atom(buf, &idx, tag, sizeof tag) < 0 ||
            strcmp(tag, "relayed") != 0 ||
            ei_decode_tuple_header(buf, &idx, &arity) < 0)
            return TETHER_EPROTO;
        out->relayed = true;
    }
    if (arity != 6 || decode_atom(buf, &idx, tag, sizeof tag) < 0 ||
        decode_atom(buf, &idx, out->chan, sizeof out->chan) < 0 ||
        decode_count(buf, &idx, &index) < 0 || index > UINT32_MAX ||
        ei_decode_longlong(buf, &idx, &epoch) < 0 ||
        decode_count(buf, &idx, &out->base) < 0)
        return TETHER_EPROTO;
    out->index = (uint32_t)index;
    out->epoch = (int64_t)epoch;
    out->buf = buf;
    out->len = len;
    if (strcmp(tag, "ack") == 0) {
        out->is_ack = true;
        if (decode_failed(buf, &idx, out) < 0)
            return TETHER_EPROTO;
    } else if (strcmp(tag, "data") == 0) {
        /* Sequence numbers start at 1: so does Base, and an ack's UpTo
         * (rx_next - 1) is never negative. */
        if (out->base == 0 || ei_decode_list_header(buf, &idx, &n) < 0 ||
            n < 0 || n > TETHER_LANE_FRAMES_MAX)
            return TETHER_EPROTO;
        out->frames_at = idx;
        for (int i = 0; i < n; i++) {
            tether_lane_frame_t f;
            if (seq_frame_at(buf, &idx, &f) < 0)
                return TETHER_EPROTO;
        }
        if (n > 0 &&
            (ei_decode_list_header(buf, &idx, &arity) < 0 || arity != 0))
            return TETHER_EPROTO;
        out->nframes = (size_t)n;
    } else {
        return TETHER_EPROTO;
    }
    return (size_t)idx == len ? 0 : TETHER_EPROTO;
}

int tether__lane_frame(const tether_lane_inner_t *in, int *idx,
                       tether_lane_frame_t *f)
{
    if (in == NULL || in->buf == NULL || *idx < 0 || (size_t)*idx >= in->len)
        return TETHER_EPROTO;
    return seq_frame_at(in->buf, idx, f) < 0 ? TETHER_EPROTO : 0;
}

/* ---- the lane ----------------------------------------------------- */

static uint32_t or_default(uint32_t v, uint32_t d)
{
    return v ? v : d;
}

tether_lane_t *tether__lane_new(const char *chan, uint32_t index, int64_t epoch,
                                const tether_lane_config_t *cfg,
                                const tether_lane_cb_t *cb,
                                tether_lane_stats_t *stats)
{
    tether_lane_t *l;
    if (chan == NULL || strlen(chan) >= sizeof l->chan || cb == NULL ||
        stats == NULL)
        return NULL;
    l = calloc(1, sizeof *l);
    if (l == NULL)
        return NULL;
    snprintf(l->chan, sizeof l->chan, "%s", chan);
    l->index = index;
    l->epoch = epoch;
    tether_lane_config_t c = cfg ? *cfg : (tether_lane_config_t){0};
    l->cfg.part_bytes = or_default(c.part_bytes, TETHER_LANE_PART_BYTES);
    l->cfg.window_bytes = or_default(c.window_bytes, TETHER_LANE_WINDOW_BYTES);
    l->cfg.rto_ms = or_default(c.rto_ms, TETHER_LANE_RTO_MS);
    l->cfg.rto_max_ms = or_default(c.rto_max_ms, TETHER_LANE_RTO_MAX_MS);
    if (l->cfg.rto_max_ms < l->cfg.rto_ms)
        l->cfg.rto_max_ms = l->cfg.rto_ms;
    l->cfg.hold_ms = or_default(c.hold_ms, TETHER_LANE_HOLD_MS);
    l->cb = *cb;
    l->stats = stats;
    l->next = 1;
    l->rto = l->cfg.rto_ms;
    l->rx_next = 1;
    return l;
}

static void queue_in(frame_queue_t *q, out_frame_t *f)
{
    f->next = NULL;
    if (q->tail)
        q->tail->next = f;
    else
        q->head = f;
    q->tail = f;
    q->n++;
}

static out_frame_t *queue_out(frame_queue_t *q)
{
    out_frame_t *f = q->head;
    if (f == NULL)
        return NULL;
    q->head = f->next;
    if (q->head == NULL)
        q->tail = NULL;
    q->n--;
    return f;
}

static void frame_free(out_frame_t *f)
{
    free(f->report);
    free(f);
}

static void queue_clear(frame_queue_t *q)
{
    out_frame_t *f;
    while ((f = queue_out(q)) != NULL)
        frame_free(f);
}

static void rx_clear(tether_lane_t *l)
{
    for (size_t i = 0; i < l->rx_n; i++)
        free(l->rx_buf[i].term);
    l->rx_n = 0;
}

static void parts_reset(tether_lane_t *l)
{
    l->parts_len = 0;
    l->parts_bad = false;
}

void tether__lane_free(tether_lane_t *l)
{
    if (l == NULL)
        return;
    queue_clear(&l->pending);
    queue_clear(&l->inflight);
    rx_clear(l);
    free(l->rx_buf);
    free(l->parts);
    free(l);
}

/* ---- sending half --------------------------------------------------- */

/* Appends a frame term x[0..len) (no 131) to the pending queue. */
static int queue_frame(frame_queue_t *q, uint64_t seq, const char *etf,
                       size_t len, size_t bytes, uint64_t expire)
{
    out_frame_t *f = malloc(sizeof *f + len);
    if (f == NULL)
        return TETHER_ENOMEM;
    memset(f, 0, sizeof *f);
    f->seq = seq;
    f->expire = expire;
    f->bytes = bytes;
    f->len = len;
    memcpy(f->etf, etf, len);
    queue_in(q, f);
    return 0;
}

/* Cuts whole[0..len) into {p, Bin} ... {l, Bin} frames on a queue. */
static int queue_parts(tether_lane_t *l, frame_queue_t *q, const char *whole,
                       size_t len, uint64_t expire)
{
    size_t part = l->cfg.part_bytes;
    for (size_t off = 0; off < len || off == 0; off += part) {
        size_t n = len - off < part ? len - off : part;
        bool last = off + n >= len;
        ei_x_buff x;
        int rc = TETHER_ENOMEM;
        if (ei_x_new(&x) < 0)
            return TETHER_ENOMEM;
        if (ei_x_encode_tuple_header(&x, 2) == 0 &&
            ei_x_encode_atom(&x, last ? "l" : "p") == 0 &&
            ei_x_encode_binary(&x, whole + off, (long)n) == 0)
            rc = queue_frame(q, l->next + q->n, x.buff, (size_t)x.index, n,
                             expire);
        ei_x_free(&x);
        if (rc < 0)
            return rc;
        if (last)
            break;
    }
    return 0;
}

/* The frames of one message, built on a queue of their own. */
static int build_frames(tether_lane_t *l, frame_queue_t *q, const char *ref,
                        size_t ref_len, const char *payload, size_t plen,
                        bool ack, uint64_t expire)
{
    ei_x_buff x;
    int rc = TETHER_ENOMEM;
    bool whole = plen <= l->cfg.part_bytes;

    if ((whole ? ei_x_new(&x) : ei_x_new_with_version(&x)) < 0)
        return TETHER_ENOMEM;
    if (whole) {
        if (ei_x_encode_tuple_header(&x, 4) == 0 &&
            ei_x_encode_atom(&x, "m") == 0 &&
            ei_x_append_buf(&x, ref, (int)ref_len) == 0 &&
            ei_x_append_buf(&x, payload, (int)plen) == 0 &&
            ei_x_encode_boolean(&x, ack) == 0)
            rc = queue_frame(q, l->next, x.buff, (size_t)x.index, plen, expire);
    } else {
        if (ei_x_encode_tuple_header(&x, 3) == 0 &&
            ei_x_append_buf(&x, ref, (int)ref_len) == 0 &&
            ei_x_append_buf(&x, payload, (int)plen) == 0 &&
            ei_x_encode_boolean(&x, ack) == 0)
            rc = queue_parts(l, q, x.buff, (size_t)x.index, expire);
    }
    ei_x_free(&x);
    return rc;
}

/* Starts x (fresh, 131) as {tether_channel, {Kind, Chan, Index, Epoch,
 * N, ...: the head the batch and the ack share. 0 or -1. */
static int encode_head(ei_x_buff *x, const tether_lane_t *l, const char *kind,
                       int64_t epoch, uint64_t n)
{
    return ei_x_encode_tuple_header(x, 2) == 0 &&
                   ei_x_encode_atom(x, TETHER_LANE_TAG) == 0 &&
                   ei_x_encode_tuple_header(x, 6) == 0 &&
                   ei_x_encode_atom(x, kind) == 0 &&
                   ei_x_encode_atom(x, l->chan) == 0 &&
                   ei_x_encode_ulong(x, l->index) == 0 &&
                   ei_x_encode_longlong(x, epoch) == 0 &&
                   ei_x_encode_ulonglong(x, n) == 0
               ? 0
               : -1;
}

/* Encodes and emits {tether_channel, {data, ...}} with the frames from
 * `from` to the end of the in-flight queue. */
static void transmit(tether_lane_t *l, const out_frame_t *from)
{
    ei_x_buff x;
    size_t n = 0;
    bool ok;
    uint64_t base = l->inflight.head ? l->inflight.head->seq : l->next;

    for (const out_frame_t *f = from; f; f = f->next)
        n++;
    if (n == 0 || ei_x_new_with_version(&x) < 0)
        return;
    ok = encode_head(&x, l, "data", l->epoch, base) == 0 &&
         ei_x_encode_list_header(&x, (long)n) == 0;
    for (const out_frame_t *f = from; ok && f; f = f->next)
        ok = ei_x_encode_tuple_header(&x, 2) == 0 &&
             ei_x_encode_ulonglong(&x, f->seq) == 0 &&
             (f->skip ? ei_x_encode_atom(&x, "skip")
                      : ei_x_append_buf(&x, f->etf, (int)f->len)) == 0;
    if (ok && ei_x_encode_empty_list(&x) == 0)
        l->cb.emit(l->cb.ctx, x.buff, (size_t)x.index);
    else
        l->stats->unsent++;
    ei_x_free(&x);
}

static void arm(tether_lane_t *l, uint64_t now)
{
    if (l->timer_at == 0 && l->inflight.n > 0)
        l->timer_at = now + l->rto;
}

/* Moves pending frames into the window and sends them as one batch. */
static void pump(tether_lane_t *l, uint64_t now)
{
    out_frame_t *first = NULL;
    while (l->pending.head != NULL &&
           (l->inflight_bytes < l->cfg.window_bytes || l->inflight.n == 0)) {
        out_frame_t *f = queue_out(&l->pending);
        if (f->expire == 0)
            f->expire = now + l->cfg.hold_ms;
        queue_in(&l->inflight, f);
        l->inflight_bytes += f->bytes;
        if (first == NULL)
            first = f;
    }
    if (first != NULL) {
        transmit(l, first);
        arm(l, now);
    }
}

static void give_up(tether_lane_t *l, out_frame_t *f, tether_lane_reason_t why)
{
    l->stats->undelivered++;
    l->cb.undelivered(l->cb.ctx, f->report, why);
    free(f->report);
    f->report = NULL;
}

static void expire_queue(tether_lane_t *l, frame_queue_t *q, uint64_t now)
{
    for (out_frame_t *f = q->head; f; f = f->next) {
        if (f->skip || f->expire == 0 || f->expire > now)
            continue;
        if (f->report)
            give_up(l, f, TETHER_LANE_TIMEOUT);
        else
            l->stats->dropped++;
        f->skip = true;
    }
}

/* Gives up what expired, then sends everything in flight again. */
static void retransmit(tether_lane_t *l, uint64_t now)
{
    expire_queue(l, &l->inflight, now);
    expire_queue(l, &l->pending, now);
    if (l->inflight.n == 0) {
        pump(l, now);
        return;
    }
    l->stats->retransmissions++;
    transmit(l, l->inflight.head);
    arm(l, now);
}

int tether__lane_push(tether_lane_t *l, uint64_t now, const char *ref,
                      size_t ref_len, const char *payload, size_t plen,
                      void *report, uint64_t deadline_ms)
{
    frame_queue_t q = {0};
    int rc;

    if (l == NULL || ref == NULL || payload == NULL || ref_len > INT32_MAX)
        return TETHER_EINVAL;
    if (plen > TETHER_LANE_MSG_MAX)
        return TETHER_ETOOBIG;
    rc = build_frames(l, &q, ref, ref_len, payload, plen, report != NULL,
                      report ? deadline_ms : 0);
    if (rc < 0) {
        queue_clear(&q);
        return rc;
    }
    q.tail->report = report;
    l->next += q.n;
    while (q.head != NULL)
        queue_in(&l->pending, queue_out(&q));
    pump(l, now);
    return 0;
}

static bool failed_has(const tether_lane_inner_t *in, uint64_t seq)
{
    for (size_t i = 0; i < in->nfailed; i++)
        if (in->failed[i] == seq)
            return true;
    return false;
}

static void on_ack(tether_lane_t *l, uint64_t now,
                   const tether_lane_inner_t *in)
{
    bool progress = false;
    if (in->epoch != l->epoch)
        return; /* an ack of an earlier incarnation of this lane */
    while (l->inflight.head != NULL && l->inflight.head->seq <= in->base) {
        out_frame_t *f = queue_out(&l->inflight);
        if (f->report && failed_has(in, f->seq))
            give_up(l, f, TETHER_LANE_NOPROC);
        l->inflight_bytes -= f->bytes;
        frame_free(f);
        progress = true;
    }
    if (progress) {
        l->rto = l->cfg.rto_ms;
        l->timer_at = 0;
        arm(l, now);
        pump(l, now);
    }
}

void tether__lane_peer_up(tether_lane_t *l, uint64_t now)
{
    l->rto = l->cfg.rto_ms;
    retransmit(l, now);
}

void tether__lane_tick(tether_lane_t *l, uint64_t now)
{
    if (l->timer_at == 0 || now < l->timer_at)
        return;
    l->timer_at = 0;
    /* Doubled before the next try is armed: 200, 400, 800 ... ms apart. */
    l->rto = l->rto * 2 < l->cfg.rto_max_ms ? l->rto * 2 : l->cfg.rto_max_ms;
    retransmit(l, now);
}

uint64_t tether__lane_deadline(const tether_lane_t *l)
{
    return l->timer_at;
}

void tether__lane_info(const tether_lane_t *l, tether_lane_info_t *out)
{
    out->pending = l->pending.n;
    out->inflight = l->inflight.n;
    out->inflight_bytes = l->inflight_bytes;
    out->rto = l->rto;
    out->rx_next = l->rx_next;
}

/* ---- receiving half ------------------------------------------------- */

static void deliver(tether_lane_t *l, uint64_t seq, const char *ref,
                    size_t ref_len, const char *payload, size_t plen, bool ack)
{
    if (l->cb.deliver(l->cb.ctx, ref, ref_len, payload, plen) == 0) {
        l->stats->delivered++;
        return;
    }
    l->stats->noproc++;
    if (!ack)
        return;
    /* The newest TETHER_LANE_FAILED_MAX are kept, as the BEAM keeps them. */
    if (l->nfailed == TETHER_LANE_FAILED_MAX)
        memmove(l->failed, l->failed + 1,
                (TETHER_LANE_FAILED_MAX - 1) * sizeof l->failed[0]);
    else
        l->nfailed++;
    l->failed[l->nfailed - 1] = seq;
}

/* The parts joined: term_to_binary({ServerRef, Payload, Ack}). */
static void deliver_joined(tether_lane_t *l, uint64_t seq)
{
    const char *b = l->parts;
    int idx = 0, ver, arity, r0, p0, ack;

    if (!tether_term_valid(b, l->parts_len) ||
        ei_decode_version(b, &idx, &ver) < 0 ||
        ei_decode_tuple_header(b, &idx, &arity) < 0 || arity != 3 ||
        (r0 = idx, ei_skip_term(b, &idx)) < 0 ||
        (p0 = idx, ei_skip_term(b, &idx)) < 0) {
        l->stats->malformed++;
        return;
    }
    int p1 = idx;
    if (ei_decode_boolean(b, &idx, &ack) < 0 || (size_t)idx != l->parts_len) {
        l->stats->malformed++;
        return;
    }
    deliver(l, seq, b + r0, (size_t)(p0 - r0), b + p0, (size_t)(p1 - p0),
            ack != 0);
}

static int parts_append(tether_lane_t *l, const char *bin, size_t n)
{
    if (l->parts_bad)
        return -1;
    if (n > TETHER_LANE_JOINED_MAX - l->parts_len) {
        l->parts_bad = true;
        return -1;
    }
    if (l->parts_len + n > l->parts_cap) {
        size_t cap = l->parts_cap ? l->parts_cap : TETHER_LANE_PART_BYTES;
        while (cap < l->parts_len + n)
            cap *= 2;
        char *p = realloc(l->parts, cap);
        if (p == NULL) {
            l->parts_bad = true;
            return -1;
        }
        l->parts = p;
        l->parts_cap = cap;
    }
    memcpy(l->parts + l->parts_len, bin, n);
    l->parts_len += n;
    return 0;
}

/* Takes the frame of sequence number rx_next. */
static void take(tether_lane_t *l, const tether_lane_frame_t *f)
{
    switch (f->kind) {
    case TETHER_LANE_FRAME_MSG:
        parts_reset(l);
        deliver(l, f->seq, f->ref, f->ref_len, f->payload, f->payload_len,
                f->ack);
        break;
    case TETHER_LANE_FRAME_PART:
        if (parts_append(l, f->bin, f->bin_len) < 0 && !l->parts_bad)
            l->stats->malformed++;
        break;
    case TETHER_LANE_FRAME_LAST:
        if (parts_append(l, f->bin, f->bin_len) == 0)
            deliver_joined(l, f->seq);
        else
            l->stats->malformed++;
        parts_reset(l);
        break;
    default:
        parts_reset(l);
        break;
    }
    l->rx_next = f->seq + 1;
}

/* Takes buffered frames while the next one is there. */
static void drain(tether_lane_t *l)
{
    while (l->rx_n > 0 && l->rx_buf[0].seq == l->rx_next) {
        rx_item_t it = l->rx_buf[0];
        tether_lane_frame_t f;
        int idx = 0;
        memmove(l->rx_buf, l->rx_buf + 1, (l->rx_n - 1) * sizeof *l->rx_buf);
        l->rx_n--;
        memset(&f, 0, sizeof f);
        if (frame_at(it.term, &idx, &f) == 0) {
            f.seq = it.seq;
            take(l, &f);
        } else {
            l->stats->malformed++;
            l->rx_next = it.seq + 1;
        }
        free(it.term);
    }
}

/* Keeps a frame received ahead of rx_next (a copy), once. */
static void buffer(tether_lane_t *l, const tether_lane_frame_t *f)
{
    size_t lo = 0, hi = l->rx_n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (l->rx_buf[mid].seq < f->seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < l->rx_n && l->rx_buf[lo].seq == f->seq) {
        l->stats->duplicates++;
        return;
    }
    if (l->rx_n == TETHER_LANE_RX_AHEAD_MAX) {
        l->stats->rx_overflow++;
        return;
    }
    if (l->rx_buf == NULL) {
        l->rx_buf = malloc(TETHER_LANE_RX_AHEAD_MAX * sizeof *l->rx_buf);
        if (l->rx_buf == NULL) {
            l->stats->rx_overflow++;
            return;
        }
    }
    char *t = malloc(f->term_len);
    if (t == NULL) {
        l->stats->rx_overflow++;
        return;
    }
    memcpy(t, f->term, f->term_len);
    memmove(l->rx_buf + lo + 1, l->rx_buf + lo,
            (l->rx_n - lo) * sizeof *l->rx_buf);
    l->rx_buf[lo] = (rx_item_t){f->seq, f->term_len, t};
    l->rx_n++;
}

/* Applies a batch's epoch and base; false for a stale batch. */
static bool rx_epoch(tether_lane_t *l, int64_t epoch, uint64_t base)
{
    if (!l->has_rx || epoch > l->rx_epoch) {
        l->has_rx = true;
        l->rx_epoch = epoch;
        l->rx_next = base;
        rx_clear(l);
        parts_reset(l);
        l->nfailed = 0;
        return true;
    }
    if (epoch < l->rx_epoch)
        return false;
    if (base > l->rx_next) {
        /* Never for a sender we acknowledged everything below base to. */
        size_t keep = 0;
        for (size_t i = 0; i < l->rx_n; i++) {
            if (l->rx_buf[i].seq >= base)
                l->rx_buf[keep++] = l->rx_buf[i];
            else
                free(l->rx_buf[i].term);
        }
        l->rx_n = keep;
        l->rx_next = base;
        parts_reset(l);
    }
    return true;
}

static void send_ack(tether_lane_t *l, const tether_lane_inner_t *in)
{
    ei_x_buff x;
    size_t keep = 0;
    bool ok;

    for (size_t i = 0; i < l->nfailed; i++)
        if (l->failed[i] >= in->base)
            l->failed[keep++] = l->failed[i];
    l->nfailed = keep;
    if (ei_x_new_with_version(&x) < 0)
        return;
    ok =
        encode_head(&x, l, "ack", in->epoch, l->rx_next - 1) == 0 &&
        (l->nfailed == 0 || ei_x_encode_list_header(&x, (long)l->nfailed) == 0);
    for (size_t i = 0; ok && i < l->nfailed; i++)
        ok = ei_x_encode_ulonglong(&x, l->failed[i]) == 0;
    if (ok && ei_x_encode_empty_list(&x) == 0)
        l->cb.emit(l->cb.ctx, x.buff, (size_t)x.index);
    else
        l->stats->unsent++;
    ei_x_free(&x);
}

static void on_data(tether_lane_t *l, const tether_lane_inner_t *in)
{
    int idx = in->frames_at;
    if (!rx_epoch(l, in->epoch, in->base)) {
        l->stats->stale++;
        return;
    }
    for (size_t i = 0; i < in->nframes; i++) {
        tether_lane_frame_t f;
        if (tether__lane_frame(in, &idx, &f) < 0) {
            l->stats->malformed++;
            break;
        }
        if (f.seq < l->rx_next)
            l->stats->duplicates++;
        else if (f.seq == l->rx_next) {
            take(l, &f);
            drain(l);
        } else if (f.seq - l->rx_next < TETHER_LANE_RX_AHEAD_MAX * 2)
            buffer(l, &f);
        else
            l->stats->rx_overflow++;
    }
    send_ack(l, in);
}

void tether__lane_recv(tether_lane_t *l, uint64_t now,
                       const tether_lane_inner_t *in)
{
    if (l == NULL || in == NULL || in->index != l->index ||
        strcmp(in->chan, l->chan) != 0) {
        if (l)
            l->stats->bad_lane++;
        return;
    }
    if (in->is_ack)
        on_ack(l, now, in);
    else
        on_data(l, in);
}
