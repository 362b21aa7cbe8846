/*
 * tether/messaging.h: messages with delivery guarantees between cluster
 * members, from C: the C-node's side of tether_peer_service's
 * forward_message (src/tether_channel.erl on the BEAM), speaking its
 * wire format, so C-nodes and BEAM members send to each other both ways.
 *
 * A message to a process on another member travels on a lane: one per
 * peer, channel and lane index. A channel has `parallelism` lanes per
 * peer; the channel `default` always exists with parallelism 1, others
 * come from tether_cluster_config_t.channels (tether_cnode --channel
 * NAME:PARALLELISM). A message's partition key picks its lane, so
 * messages with one key (or none) on one channel are delivered in the
 * order they were sent; lanes never wait for each other. Configure a
 * channel alike on every member: a batch for a channel or lane index the
 * receiver lacks is counted (bad_lane) and not acknowledged.
 *
 * Every message of a lane has a sequence number under the lane's epoch.
 * The sender keeps it until the receiver acknowledges it (cumulative
 * acks), retransmits with bounded exponential backoff (200 ms doubling
 * up to 5 s; at once when the peer comes back), and the receiver drops
 * duplicates by (epoch, sequence) and delivers in order. Everything is
 * sealed by the cluster engine under the session of the two members and
 * carried over Erlang distribution to the peer's registered process
 * `tether_channel` (on a C-node, a C process the cluster starts), so a
 * defer partition holds it and delivers it on heal, a drop partition
 * makes it retransmit. Messages over 8 KiB travel in 8 KiB parts, one
 * part in flight per lane.
 *
 * With ack, a message is kept until acknowledged or until its budget
 * (ack_timeout_ms) is spent; then the sender's undelivered callback runs
 * with TETHER_MESSAGING_TIMEOUT, or with TETHER_MESSAGING_NOPROC when
 * the receiving member found no process for the ServerRef: the C
 * counterpart of {tether_undelivered, ServerRef, Msg, Reason}. Without
 * ack a message is held for retransmission for 1 s of its first
 * transmission only: one cut by a longer outage is dropped (counted),
 * never delivered out of order.
 *
 * A ServerRef is one term, 131-prefixed: a pid, a registered name (an
 * atom) or {Name, Node}. On a C-node, received messages go to the local
 * C process the ServerRef names (plain messages in its mailbox).
 *
 * Not supported from C: causal_label and transitive relays (a message a
 * BEAM member sends with causal_label to a C process is delivered in its
 * lane's order, still wrapped as {'$tether_causal', Label, T, V, Msg}).
 *
 * Threads: every function here runs on the node's loop thread (in a
 * process handler, a timer, a post), as the cluster functions do.
 */
#ifndef TETHER_MESSAGING_H
#define TETHER_MESSAGING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tether/error.h"
#include "tether/node.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TETHER_MESSAGING_PROCESS         "tether_channel" /* registered */
#define TETHER_MESSAGING_DEFAULT         "default"        /* channel */
#define TETHER_MESSAGING_CHANNELS_MAX    64    /* configured channels */
#define TETHER_MESSAGING_PARALLELISM_MAX 1024  /* lanes of one channel */
#define TETHER_MESSAGING_CALLBACKS_MAX   64    /* on_up plus on_down */
#define TETHER_MESSAGING_ACK_TIMEOUT_MS  60000 /* default budget */

/* A channel and its lanes per peer (parallelism >= 1). */
typedef struct tether_messaging_channel {
    const char *name; /* an atom name */
    uint32_t parallelism;
} tether_messaging_channel_t;

/* Why a message with ack was given up. */
typedef enum tether_messaging_reason {
    TETHER_MESSAGING_TIMEOUT = 1, /* not acknowledged within its budget */
    TETHER_MESSAGING_NOPROC = 2,  /* the receiver had no such process */
} tether_messaging_reason_t;

/*
 * A message with ack was given up. peer: the node it was for; to
 * (to_len bytes) and msg (len bytes): the ServerRef and the message as
 * given to tether_messaging_forward(), 131-prefixed, valid during the
 * call. Runs on the loop thread.
 */
typedef void (*tether_messaging_undelivered_fn)(
    tether_node_t *node, const char *peer, const char *to, size_t to_len,
    const char *msg, size_t len, tether_messaging_reason_t reason, void *ctx);

/* The options of one message; zero for no ack on `default`, lane 0. */
typedef struct tether_messaging_opts {
    bool ack;
    const char *channel;       /* an atom name; NULL: "default" */
    const char *partition_key; /* any term, 131-prefixed; NULL: lane 0 */
    size_t partition_key_len;
    uint32_t ack_timeout_ms; /* with ack; 0: TETHER_MESSAGING_ACK_TIMEOUT_MS */
    tether_messaging_undelivered_fn undelivered; /* with ack; may be NULL */
    void *ctx;                                   /* for undelivered */
} tether_messaging_opts_t;

/*
 * Sends msg (one term, 131-prefixed, copied) to the process `to` (a
 * ServerRef, 131-prefixed) on the member `peer` with opts (NULL: none).
 * The lane is the partition key's (the hash of its canonical form,
 * modulo the channel's parallelism; equal terms, equal lane). With peer
 * this node, msg is delivered at once. Returns 0, or:
 *   TETHER_ENOTFOUND  no such channel; or, peer this node, no process
 *   TETHER_ECLOSED    no cluster, or, without ack, peer is not a live
 *                     member (nodedown)
 *   TETHER_EINVAL     a bad node name, term or option
 *   TETHER_ETOOBIG    msg over 64 MiB
 *   TETHER_ENOMEM
 * With ack, 0 means the message is kept until acknowledged or given up
 * (then opts->undelivered runs).
 */
TETHER_MUST_CHECK int
tether_messaging_forward(tether_node_t *node, const char *peer, const char *to,
                         size_t to_len, const char *msg, size_t len,
                         const tether_messaging_opts_t *opts);

/* tether_messaging_forward() to the process registered as `name` (an
 * atom name) on peer. */
TETHER_MUST_CHECK int
tether_messaging_forward_name(tether_node_t *node, const char *peer,
                              const char *name, const char *msg, size_t len,
                              const tether_messaging_opts_t *opts);

/*
 * A member came up (up = true) or went down. peer: its node name;
 * channel: the channel the callback was registered for, or NULL. Runs on
 * the loop thread, once per transition.
 */
typedef void (*tether_messaging_event_fn)(tether_node_t *node, const char *peer,
                                          const char *channel, bool up,
                                          void *ctx);

/*
 * fn(ctx) runs each time `peer` (NULL: any node) becomes a member
 * (on_up) or stops being one (on_down: it left, died, or a drop
 * partition cut it off), as tether_peer_service:on_up/3 and on_down/3
 * on the BEAM; `channel` (NULL: none) scopes it to a configured channel,
 * whose name fn then gets. Returns 0, TETHER_ENOTFOUND (no such
 * channel), TETHER_EINVAL (a bad node name, or fn NULL), TETHER_ECLOSED
 * (no cluster), TETHER_ETOOBIG (TETHER_MESSAGING_CALLBACKS_MAX).
 */
TETHER_MUST_CHECK int tether_messaging_on_up(tether_node_t *node,
                                             const char *peer,
                                             const char *channel,
                                             tether_messaging_event_fn fn,
                                             void *ctx);
TETHER_MUST_CHECK int tether_messaging_on_down(tether_node_t *node,
                                               const char *peer,
                                               const char *channel,
                                               tether_messaging_event_fn fn,
                                               void *ctx);

/* The parallelism of `channel` (>= 1), TETHER_ENOTFOUND (no such
 * channel) or TETHER_ECLOSED (no cluster). */
int tether_messaging_parallelism(tether_node_t *node, const char *channel);

/* Counters of this node's messaging (malformed or refused input is
 * counted, never fatal). */
typedef struct tether_messaging_stats {
    uint64_t malformed;       /* undecodable batches, acks and frames */
    uint64_t refused;         /* envelopes the engine refused to open */
    uint64_t bad_lane;        /* batches for a lane not configured here */
    uint64_t stale;           /* batches of an older epoch */
    uint64_t duplicates;      /* frames received before, dropped */
    uint64_t rx_overflow;     /* frames too far ahead, dropped (resent) */
    uint64_t retransmissions; /* batches sent again */
    uint64_t dropped;         /* messages without ack held too long */
    uint64_t undelivered;     /* give-ups reported to the sender */
    uint64_t noproc;          /* messages for no process here */
    uint64_t delivered;       /* messages handed to a process here */
    uint64_t unsent;          /* batches that could not be sealed */
} tether_messaging_stats_t;

/* Copies the counters into *out. 0 or TETHER_ECLOSED (no cluster). */
int tether_messaging_stats(const tether_node_t *node,
                           tether_messaging_stats_t *out);

#ifdef __cplusplus
}
#endif

#endif /* TETHER_MESSAGING_H */
