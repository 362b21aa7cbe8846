/*
 * cnode/lane.h: one lane of the messaging protocol (src/tether_channel.erl
 * and src/tether_channel_lane.erl on the BEAM), as a sans-IO state
 * machine: the C-node's channel process (channel.c) feeds it pushes,
 * opened batches and acks, and the time; it hands back the terms to seal
 * and send, the messages to deliver and the give-ups, through callbacks.
 * No socket, no clock, no engine: the Criterion suite drives it alone.
 *
 * Wire terms (external format, each sealed by the engine as the whole
 * term {tether_channel, Inner}):
 *
 *   {data, Channel, Index, Epoch, Base, [{Seq, Frame}]}
 *   {ack, Channel, Index, Epoch, UpTo, FailedSeqs}
 *
 *   Frame: {m, ServerRef, Payload, Ack}   a whole message (Ack: boolean)
 *          {p, Bin}                       a part of a large message
 *          {l, Bin}                       its last part; the parts joined
 *                                         are term_to_binary({ServerRef,
 *                                         Payload, Ack})
 *          skip                           a message given up
 *
 * A BEAM member sending with `transitive` wraps Inner as {relayed, Inner}
 * when it goes round a cut path through the engine's relay; such a batch
 * is taken as the direct one (its ack goes back directly: the C-node
 * does not relay yet).
 *
 * Epoch: the sending lane's start (microseconds); Base: the lowest
 * sequence number the sender still holds; UpTo: every sequence number up
 * to it was received (cumulative); FailedSeqs: messages sent with ack
 * whose process the receiver did not find.
 *
 * The sending half, per frame:
 *   pending --pump (window open)--> in flight --ack covers it--> freed
 *   in flight --timer (rto, doubling up to rto_max)--> sent again
 *   pending / in flight --expiry--> skip (a give-up: the sender's
 *       undelivered callback hears `timeout`, or the drop is counted)
 * The receiving half: a batch of a newer epoch resets it (rx_next =
 * Base); an older epoch is stale; frames below rx_next are duplicates;
 * frames ahead are buffered (bounded); frames are taken in sequence
 * order, parts joined (bounded), messages delivered; every batch is
 * answered with a cumulative ack.
 */
#ifndef TETHER_CNODE_LANE_H
#define TETHER_CNODE_LANE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ei.h>

#include "tether/error.h"
#include "tether/messaging.h"

#define TETHER_LANE_TAG          "tether_channel"
#define TETHER_LANE_FRAMES_MAX   4096        /* frames one batch may carry */
#define TETHER_LANE_RX_AHEAD_MAX 4096        /* frames buffered out of order */
#define TETHER_LANE_FAILED_MAX   256         /* FailedSeqs one ack carries */
#define TETHER_LANE_MSG_MAX      (64u << 20) /* a message's payload */
/* Parts joined ({ServerRef, Payload, Ack} encoded): the payload and room
 * for the rest. */
#define TETHER_LANE_JOINED_MAX   (TETHER_LANE_MSG_MAX + (64u << 10))
#define TETHER_LANE_PART_BYTES   8192 /* channel_part_bytes */
#define TETHER_LANE_WINDOW_BYTES 8192 /* channel_window_bytes */
#define TETHER_LANE_RTO_MS       200  /* channel_rto_ms */
#define TETHER_LANE_RTO_MAX_MS   5000 /* channel_rto_max_ms */
#define TETHER_LANE_HOLD_MS      1000 /* channel_hold_ms */

/* Why a message with ack was given up. */
typedef enum tether_lane_reason {
    TETHER_LANE_TIMEOUT = 1, /* its ack budget ran out */
    TETHER_LANE_NOPROC = 2,  /* the receiver found no process */
} tether_lane_reason_t;

/* The kinds of frames. */
typedef enum tether_lane_frame_kind {
    TETHER_LANE_FRAME_MSG = 1,
    TETHER_LANE_FRAME_PART,
    TETHER_LANE_FRAME_LAST,
    TETHER_LANE_FRAME_SKIP,
} tether_lane_frame_kind_t;

/* A decoded frame: slices of the decoded buffer (terms without 131). */
typedef struct tether_lane_frame {
    uint64_t seq;
    int kind;         /* tether_lane_frame_kind_t */
    const char *term; /* the whole frame term */
    size_t term_len;
    const char *ref; /* MSG: ServerRef */
    size_t ref_len;
    const char *payload; /* MSG: Payload */
    size_t payload_len;
    bool ack;        /* MSG */
    const char *bin; /* PART, LAST: the binary's bytes */
    size_t bin_len;
} tether_lane_frame_t;

/* A decoded inner term; slices refer into the decoded buffer. */
typedef struct tether_lane_inner {
    bool is_ack;
    bool relayed;               /* {relayed, Inner}: sent round a cut path */
    char chan[MAXATOMLEN_UTF8]; /* the channel, an atom */
    uint32_t index;
    int64_t epoch;
    uint64_t base;   /* data: Base; ack: UpTo */
    size_t nframes;  /* data */
    const char *buf; /* the decoded buffer */
    size_t len;
    int frames_at; /* data: the first frame, buf[frames_at...] */
    uint64_t failed[TETHER_LANE_FAILED_MAX]; /* ack */
    size_t nfailed;
} tether_lane_inner_t;

/* The counters (tether/messaging.h), shared by the lanes of a node. */
typedef tether_messaging_stats_t tether_lane_stats_t;

/* What a lane asks of its owner. */
typedef struct tether_lane_cb {
    /* Seals and sends etf[0..len) (131-prefixed {tether_channel, Inner}). */
    void (*emit)(void *ctx, const char *etf, size_t len);
    /* Delivers payload (no 131) to ref (no 131): 0, or TETHER_ENOTFOUND
     * when there is no such process. */
    int (*deliver)(void *ctx, const char *ref, size_t ref_len,
                   const char *payload, size_t payload_len);
    /* A message with ack was given up; report is the one pushed with it,
     * freed by the lane (free()) after this returns. */
    void (*undelivered)(void *ctx, void *report, tether_lane_reason_t why);
    void *ctx;
} tether_lane_cb_t;

/* Sizes and times; zero fields take the TETHER_LANE_* defaults. */
typedef struct tether_lane_config {
    uint32_t part_bytes, window_bytes, rto_ms, rto_max_ms, hold_ms;
} tether_lane_config_t;

typedef struct tether_lane tether_lane_t;

/*
 * Decodes buf[0..len) (131-prefixed, untrusted) as {tether_channel,
 * Inner}: every length, integer and frame is checked, the frames too
 * (their number in out->nframes). Returns 0 or TETHER_EPROTO.
 */
TETHER_MUST_CHECK int tether__lane_decode(const char *buf, size_t len,
                                          tether_lane_inner_t *out);

/* If the term at b[idx] (the buffer valid as a whole) is a binary (not a
 * bit string), points *bytes at its contents and sets *len: true. */
bool tether__lane_binary_at(const char *b, int idx, const char **bytes,
                            size_t *len);

/* Decodes the frame at in->buf[*idx] (checked by tether__lane_decode)
 * and moves *idx past it. 0 or TETHER_EPROTO. */
TETHER_MUST_CHECK int tether__lane_frame(const tether_lane_inner_t *in,
                                         int *idx, tether_lane_frame_t *f);

/* A lane of channel `chan` (an atom name), lane `index`, whose sending
 * epoch is `epoch` (greater than any earlier lane's to the same peer:
 * the wall clock in microseconds). NULL when out of memory. */
tether_lane_t *tether__lane_new(const char *chan, uint32_t index, int64_t epoch,
                                const tether_lane_config_t *cfg,
                                const tether_lane_cb_t *cb,
                                tether_lane_stats_t *stats);

/* Frees the lane, its frames and their reports (no callback runs). */
void tether__lane_free(tether_lane_t *lane);

/*
 * Queues payload (no 131) for ref (no 131) and sends what the window
 * allows. report: NULL for a message without ack, else a malloc'd block
 * the lane owns, handed to cb->undelivered if the message is given up
 * (after deadline_ms, or on a noproc answer). Large payloads travel in
 * parts. Returns 0, TETHER_ETOOBIG (over TETHER_LANE_MSG_MAX) or
 * TETHER_ENOMEM (report then still the caller's).
 */
TETHER_MUST_CHECK int tether__lane_push(tether_lane_t *lane, uint64_t now,
                                        const char *ref, size_t ref_len,
                                        const char *payload, size_t plen,
                                        void *report, uint64_t deadline_ms);

/* Takes an opened inner term (decoded; in->chan and in->index are the
 * lane's): a batch is delivered and acknowledged, an ack frees frames. */
void tether__lane_recv(tether_lane_t *lane, uint64_t now,
                       const tether_lane_inner_t *in);

/* The peer came back: send what is in flight at once, rto reset. */
void tether__lane_peer_up(tether_lane_t *lane, uint64_t now);

/* Runs the retransmission timer if it is due at now. */
void tether__lane_tick(tether_lane_t *lane, uint64_t now);

/* When tether__lane_tick() next has work (monotonic ms), or 0: none. */
uint64_t tether__lane_deadline(const tether_lane_t *lane);

/* The lane's counts, for tests and info: frames pending and in flight,
 * bytes in flight, the current rto, the next expected sequence number. */
typedef struct tether_lane_info {
    size_t pending, inflight, inflight_bytes;
    uint32_t rto;
    uint64_t rx_next;
} tether_lane_info_t;
void tether__lane_info(const tether_lane_t *lane, tether_lane_info_t *out);

#endif /* TETHER_CNODE_LANE_H */
