/*
 * cnode/cluster.h: internals of the C-node's cluster process (the public
 * face is tether/cluster.h): how a message in its mailbox is classified,
 * exposed so the tests can feed it untrusted bytes without sockets.
 */
#ifndef TETHER_CNODE_CLUSTER_H
#define TETHER_CNODE_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include "core/engine.h"
#include "core/keys.h"
#include "tether/cluster.h"

/* What a mailbox message is. */
typedef enum tether_cluster_msg_kind {
    TETHER_CLUSTER_MSG_BAD = 0,  /* anything we do not take: counted */
    TETHER_CLUSTER_MSG_DATA,     /* {'$tether', From, Bytes} */
    TETHER_CLUSTER_MSG_CALL,     /* {'$gen_call', {Pid, Tag}, Request} */
    TETHER_CLUSTER_MSG_WAKE,     /* '$tether_wake': connection events queued */
    TETHER_CLUSTER_MSG_EXIT,     /* {'EXIT', Pid, Reason}: a trapped exit */
    TETHER_CLUSTER_MSG_DOWN,     /* {'DOWN', Ref, process, Pid, Reason} */
    TETHER_CLUSTER_MSG_REG_PING, /* {'$tether_reg_ping', Ref, From} */
} tether_cluster_msg_kind_t;

/* A classified message; pointers and indexes refer into the buffer. */
typedef struct tether_cluster_msg {
    int kind;                            /* tether_cluster_msg_kind_t */
    char from[TETHER_NODE_NAME_MAX + 1]; /* DATA, REG_PING */
    const uint8_t *bytes;                /* DATA: the engine bytes */
    size_t len;
    int from_index; /* CALL: the {Pid, Tag} term */
    int req_index;  /* CALL: the request term */
    erlang_ref ref; /* DOWN: the monitor */
    int ref_index;  /* REG_PING: the Ref term, buf[ref_index, ref_end) */
    int ref_end;
} tether_cluster_msg_t;

/*
 * Classifies buf[0..len) (a 131-prefixed term from the mailbox). The
 * buffer is checked in bounds first; a name must be an atom of
 * 1..TETHER_NODE_NAME_MAX bytes of the form name@host and Bytes a binary
 * (not a bitstring). Returns the kind (also in out->kind); BAD for
 * anything else, never an error.
 */
int tether__cluster_parse(const char *buf, size_t len,
                          tether_cluster_msg_t *out);

/* Messages the process refused (counted, ignored); 0 without a cluster. */
uint64_t tether__cluster_bad_input(const tether_node_t *node);

/* The engine's counters, or NULL without a cluster (tests, metrics). */
const tether_engine_stats_t *
tether__cluster_engine_stats(const tether_node_t *node);

/* Passes the time to the engine and carries out its pending actions, for
 * code on the loop that sealed or opened envelopes with the engine
 * (channel.c); nothing while the cluster is already doing so. */
void tether__cluster_kick(tether_node_t *node);

/* The cluster's engine, or NULL without a cluster: for tests and fuzz
 * targets that drive its sessions without a distribution connection.
 * Loop thread. */
tether_engine_t *tether__cluster_engine(const tether_node_t *node);

/* tether_cluster_lead() for the `tether` process itself (--lead): a
 * quorum candidacy refused for want of a quorum (the node has not joined
 * yet) is kept and campaigns again as members come up (*outcome is then
 * NO_QUORUM and 0 is returned). */
TETHER_MUST_CHECK int
tether__cluster_lead_at_start(tether_node_t *node, const char *name, size_t len,
                              const tether_cluster_lead_opts_t *o, int *outcome,
                              uint64_t *fence);

#endif /* TETHER_CNODE_CLUSTER_H */
