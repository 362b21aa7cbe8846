/*
 * cnode/node.h: the C-node runtime as the layers above it (builtins, the
 * service API, the cluster process) and the tests see it: one epoll event
 * loop that owns every socket (listen, epmd registration, peer
 * connections), the timers, and the process table of cnode/proc.h. The
 * node's structure itself is in cnode/internal.h.
 *
 * Threading: everything runs on the thread that calls tether_node_run(),
 * except tether_node_stop(), tether_node_post() and
 * tether_node_post_send(), which any thread may call (they wake the loop
 * through an eventfd). Handlers run on the loop thread and must not
 * block; a handler with slow work hands it to a worker and replies later
 * with tether_node_post_send() (or tether_node_post() for anything else).
 *
 * Lifecycle (cnode/core.c): tether_node_new() (checks the config) ->
 * tether_node_start() (listens, registers with epmd, starts the built-in
 * processes) -> tether_node_run() (until tether_node_stop() or a handled
 * signal) -> tether_node_free() (closes every socket: peers see nodedown
 * at once).
 */
#ifndef TETHER_CNODE_NODE_H
#define TETHER_CNODE_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cnode/proc.h"
#include "tether/error.h"
#include "tether/node.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Counters (read on the loop thread, or after run returned). */
typedef struct tether_node_stats {
    uint64_t malformed_frames;
    uint64_t unknown_control;
    uint64_t bad_handshakes;
    uint64_t tls_failures; /* refused TLS handshakes, bad TLS records */
    uint64_t dropped_connections;
    uint64_t accepted;
    uint64_t connected; /* outgoing connections that completed */
    uint64_t msgs_in;
    uint64_t ticks_out;
} tether_node_stats_t;

/*
 * Sends msg (131-prefixed term, copied) from `from` (may be NULL) to
 * `to` on the loop thread: the way a worker thread replies later.
 */
TETHER_MUST_CHECK int tether_node_post_send(tether_node_t *node,
                                            const erlang_pid *from,
                                            const erlang_pid *to,
                                            const char *msg, size_t len);

/* Same, to an alias (gen_server replies to `[alias | Ref]` tags). */
TETHER_MUST_CHECK int tether_node_post_send_alias(tether_node_t *node,
                                                  const erlang_pid *from,
                                                  const erlang_ref *alias,
                                                  const char *msg, size_t len);

/* A SPAWN_REQUEST from a peer, as the spawn hook sees it. */
typedef struct tether_spawn_req {
    const char *peer;         /* the requesting node */
    const erlang_ref *req_id; /* the request id (also the monitor) */
    const erlang_pid *from;   /* the requesting process */
    const erlang_pid *group_leader;
    const char *module;
    const char *function;
    long arity;
    const char *args; /* the argument list, 131-prefixed */
    size_t args_len;
    const char *opts; /* the option list, 131-prefixed (NULL if none) */
    size_t opts_len;
} tether_spawn_req_t;

/*
 * Starts a process for a SPAWN_REQUEST (loop thread; pointers valid during
 * the call). On 0, *pid is the new process: the runtime answers
 * SPAWN_REPLY with it and sets up the link / monitor the requester asked
 * for. The process must not exit inside the hook (post itself a message
 * and exit from its handler), or the requester sees noproc. On a
 * negative return, *error_atom (a static string, default "notsup") is
 * the error in the SPAWN_REPLY. Hooks take no context: the layer that
 * sets one finds its state in the node (cnode/internal.h).
 */
typedef int (*tether_spawn_fn)(tether_node_t *node,
                               const tether_spawn_req_t *req, erlang_pid *pid,
                               const char **error_atom);

/* Sets the spawn hook (NULL: every SPAWN_REQUEST is answered notsup). */
void tether_node_set_spawn_handler(tether_node_t *node, tether_spawn_fn fn);

/* The process table (loop thread only). */
tether_procs_t *tether_node_procs(tether_node_t *node);

void tether_node_stats(const tether_node_t *node, tether_node_stats_t *st);

/* Number of connections that finished the handshake and are up. */
size_t tether_node_peer_count(const tether_node_t *node);

/* Logs one line through the node's sink when level <= the node's level. */
void tether__node_log(const tether_node_t *node, int level, const char *fmt,
                      ...) __attribute__((format(printf, 3, 4)));

/* ---- outgoing SPAWN_REQUEST (erpc calls from C to other nodes) ------ */

/*
 * What the runtime reports about spawn requests this node sent. All run on
 * the loop thread.
 *  reply     a SPAWN_REPLY for req_id: pid is the new process, or NULL and
 *            err (131-prefixed) is the error reason
 *  down      a MONITOR_P_EXIT with ref; returns true if it was one of
 *            ours (the process table never sees it then)
 *  nodedown  the connection to peer is gone (or never came up)
 */
typedef struct tether_spawn_out_ops {
    void (*reply)(tether_node_t *node, const erlang_ref *req_id,
                  const erlang_pid *pid, const char *err, size_t err_len);
    bool (*down)(tether_node_t *node, const erlang_ref *ref, const char *reason,
                 size_t reason_len);
    void (*nodedown)(tether_node_t *node, const char *peer);
} tether_spawn_out_ops_t;

/* Sets the hooks above (ops is copied; NULL clears). Loop thread. */
void tether__node_set_spawn_out(tether_node_t *node,
                                const tether_spawn_out_ops_t *ops);

/*
 * Sends SPAWN_REQUEST {M, F, length(args)} with options [monitor] to
 * `peer` (connecting first if needed), from our pid `from` with group
 * leader `gl`; args is a 131-prefixed proper list. The monitor reference
 * is req_id. Loop thread. Returns 0, TETHER_EINVAL or TETHER_ECLOSED (the
 * peer cannot be reached at all; nodedown follows otherwise).
 */
TETHER_MUST_CHECK int tether__node_spawn_request(
    tether_node_t *node, const char *peer, const erlang_ref *req_id,
    const erlang_pid *from, const erlang_pid *gl, const char *module,
    const char *function, const char *args, size_t args_len);

/*
 * Sends msg (131-prefixed) from `from` (may be NULL) to `to`, or to the
 * alias `alias` when it is not NULL, at once. Loop thread.
 */
int tether__node_send_now(tether_node_t *node, const erlang_pid *from,
                          const erlang_pid *to, const erlang_ref *alias,
                          const char *msg, size_t len);

/* ---- connection events and sends without auto-connect (cluster) ---- */

/*
 * Called on the loop thread when a connection to `peer` finished its
 * handshake (up) or a peer's last connection is gone (down; also for a
 * dial that never came up, and for a connection replaced by a newer one
 * of the same peer, before the new one's up). The hook runs inside the
 * runtime's I/O handling: it must only record the event (and may send
 * to local processes), never call back into the runtime's connections.
 */
typedef void (*tether_node_conn_fn)(tether_node_t *node, const char *peer,
                                    bool up, void *ctx);

/* Sets the connection hook (NULL clears). Loop thread. */
void tether__node_set_conn_hook(tether_node_t *node, tether_node_conn_fn fn,
                                void *ctx);

/* True if a connection to peer is up. Loop thread. */
bool tether__node_connected(const tether_node_t *node, const char *peer);

/* Calls fn for every peer whose connection is up. Loop thread. */
void tether__node_foreach_peer(tether_node_t *node,
                               void (*fn)(tether_node_t *node, const char *peer,
                                          void *ctx),
                               void *ctx);

/*
 * Starts a connection to peer unless one exists or is under way. Loop
 * thread. Returns 0 (a host name is then resolved off the loop; if it
 * does not resolve, the connection hook hears `down'), TETHER_EINVAL
 * (bad name, or ourselves) or TETHER_ECLOSED (cannot dial at all: no
 * host part, no memory).
 */
int tether__node_connect(tether_node_t *node, const char *peer);

/*
 * Sends msg (131-prefixed) from `from` to the registered `name` on peer
 * only if a connection to peer is up (erlang:send/3 with noconnect).
 * Loop thread. Returns 0, TETHER_ECLOSED (not connected: dropped),
 * TETHER_EINVAL or an encoding error.
 */
int tether__node_reg_send_noconnect(tether_node_t *node, const erlang_pid *from,
                                    const char *peer, const char *name,
                                    const char *msg, size_t len);

/* The configuration as checked (defaults filled in). */
const tether_node_config_t *tether__node_config(const tether_node_t *node);

#ifdef __cplusplus
}
#endif

#endif /* TETHER_CNODE_NODE_H */
