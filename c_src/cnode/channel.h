/*
 * cnode/channel.h: internals of the C-node's messaging process
 * `tether_channel` (the public face is tether/messaging.h): how the
 * cluster process starts it and hands it member events and envelopes a
 * defer partition held, and how its mailbox is classified (exposed so
 * the tests and the fuzz target feed it untrusted bytes).
 */
#ifndef TETHER_CNODE_CHANNEL_H
#define TETHER_CNODE_CHANNEL_H

#include <stdbool.h>
#include <stddef.h>

#include "core/keys.h"
#include "tether/messaging.h"

/* Checks a channel configuration (names, parallelism, no repeats; an
 * entry `default` sets its parallelism). 0 or TETHER_EINVAL. */
TETHER_MUST_CHECK int
tether__channels_check(const tether_messaging_channel_t *chans, size_t n);

/* Starts the registered process `tether_channel` with the channels
 * (checked) and `default`. 0, TETHER_EEXIST, TETHER_EINVAL, TETHER_ENOMEM. */
TETHER_MUST_CHECK int
tether__channels_start(tether_node_t *node,
                       const tether_messaging_channel_t *chans, size_t n);

/* A member came up or went down (the cluster's MEMBER actions): queued
 * to the process, handled in its turn. */
void tether__channels_member(tether_node_t *node, const char *peer, bool up);

/* True if etf[0..len) (an opened envelope) is {tether_channel, _}. */
bool tether__channels_owns(const char *etf, size_t len);

/* An opened {tether_channel, Inner} that a defer partition held,
 * released on heal: queued to the process. */
void tether__channels_held(tether_node_t *node, const char *from,
                           const char *etf, size_t len);

/* What a mailbox message of `tether_channel` is. */
typedef enum tether_channels_msg_kind {
    TETHER_CHANNELS_MSG_BAD = 0, /* counted as malformed */
    TETHER_CHANNELS_MSG_ENV,     /* {tether_channel_env, From, Chan,
                                    Index, Bytes}: a sealed inner term */
    TETHER_CHANNELS_MSG_HELD,    /* {'$tether_held', From, Etf} */
    TETHER_CHANNELS_MSG_MEMBER,  /* {tether_member, up | down, Node} */
} tether_channels_msg_kind_t;

/* A classified message; bytes point into the buffer. */
typedef struct tether_channels_msg {
    int kind;
    char from[TETHER_NODE_NAME_MAX + 1];
    bool up;
    const char *bytes;
    size_t len;
} tether_channels_msg_t;

/* Classifies buf[0..len) (131-prefixed, untrusted). Returns the kind. */
int tether__channels_parse(const char *buf, size_t len,
                           tether_channels_msg_t *out);

#endif /* TETHER_CNODE_CHANNEL_H */
