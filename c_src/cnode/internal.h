/*
 * cnode/internal.h: the inside of a C-node, shared by the files of
 * cnode/ and by nothing else.
 *
 * One structure, struct tether_node, holds the state of every layer as
 * typed members, grouped by the file that owns them:
 *
 *   core.c         lifecycle: the only file that decides the order in
 *                  which the layers below start and are freed; identity,
 *                  configuration, logging, counters
 *   loop.c         epoll, watchers (each carries its callback), timers,
 *                  posts from other threads (eventfd), signals (signalfd)
 *   listen.c       the listen socket and the epmd registration socket
 *   resolve.c      host name look-ups on the resolver threads
 *   tls.c          TLS contexts (the connection's TLS lives in conn.c)
 *   conn.c         peer connections: buffers, the queue of operations
 *                  waiting for a handshake, epmd lookups, the handshake
 *                  pump, reading frames, ticks and deadlines
 *   dispatch.c     incoming control messages to the process table, and
 *                  incoming SPAWN_REQUEST
 *   spawn_out.c    outgoing SPAWN_REQUEST and what comes back for it
 *   functions.c    the module/function/arity table and the calls in it
 *   erpc.c         incoming erpc (one C process per call)
 *   rex.c          the registered process rex (rpc:call, block_call, cast)
 *   gen_service.c  gen_server services, from-handles and replies
 *   send.c         tether_send, tether_send_name
 *   erlang_call.c  calls from C into Erlang (outgoing erpc)
 *   workers.c      the worker pool
 *   cluster.c      the cluster process `tether`
 *   channel.c      the messaging process `tether_channel` (lanes: lane.c)
 *
 * Layers talk downwards through these members and the functions below;
 * upwards only through the hooks a layer above sets (spawn, spawn_out,
 * conn), so no file of the runtime knows the service API or the cluster.
 */
#ifndef TETHER_CNODE_INTERNAL_H
#define TETHER_CNODE_INTERNAL_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ei.h>

#include "cnode/api.h"
#include "cnode/node.h"
#include "cnode/proc.h"
#include "dist/frame.h"
#include "tether/gen_service.h"
#include "tether/node.h"
#include "tether/workers.h"

#define LOG(node, lvl, ...) tether__node_log((node), (lvl), __VA_ARGS__)

/* Peers whose failed dials are remembered for rate-limited logging; past
 * that many at once the oldest is forgotten (its next failure is logged
 * as a first one). */
#define TETHER__DIAL_LOGS 64

/* Buckets of the function table (functions.c). */
#define TETHER__FN_BUCKETS 256

typedef struct tether__watcher tether__watcher_t;

/*
 * Called by the loop with the epoll events of the watcher's descriptor.
 * The watcher is embedded in whatever owns the descriptor (the node, a
 * connection), which the callback recovers with tether__container_of.
 */
typedef void (*tether__watcher_cb)(tether_node_t *node, tether__watcher_t *w,
                                   uint32_t events);

struct tether__watcher {
    tether__watcher_cb cb;
};

#define tether__container_of(ptr, type, member)                                \
    ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* Private to their files. */
struct tether__conn;        /* conn.c */
struct tether__post;        /* loop.c */
struct tether__timer;       /* loop.c */
struct tether__fn_entry;    /* functions.c */
struct tether__pending_svc; /* gen_service.c */
struct tether__out_call;    /* erlang_call.c */
struct tether_cluster;      /* cluster.c */
struct tether_channels;     /* channel.c */
struct tether__resolve_job; /* resolve.c */
struct tether__tls_ctx;     /* tls.c */

struct tether_node {
    /* core.c: who we are, the configuration as checked, logging. */
    tether_node_config_t cfg;
    char name[TETHER_ATOM_MAX];
    char cookie[TETHER_NODE_COOKIE_MAX + 1];
    char listen_addr[INET6_ADDRSTRLEN];
    int family;                  /* AF_INET or AF_INET6 (proto_dist) */
    struct tether__tls_ctx *tls; /* NULL: plain TCP */
    char prefix[64];
    uint64_t our_flags; /* distribution flags we advertise */
    uint32_t creation;  /* from epmd (listen.c) */
    tether_procs_t *procs;
    tether_node_stats_t stats;
    tether_log_fn log_fn;
    void *log_ctx; /* the embedder's, for log_fn */
    atomic_int log_level;

    /* loop.c */
    int epfd, event_fd, signal_fd;
    tether__watcher_t w_event, w_signal;
    atomic_bool stop;
    atomic_bool running;
    pthread_t loop_thread;
    uint64_t active_us; /* when sockets last had events (busy poll) */
    uint64_t spun_us;   /* when the last poll that spun began; 0: it slept
                           or had events */
    pthread_mutex_t post_lock;
    struct tether__post *posts;
    struct tether__timer *timers;
    tether_timer_id_t timer_seq;

    /* listen.c */
    int listen_fd, epmd_fd;
    uint16_t port;
    tether__watcher_t w_listen, w_epmd;

    /* resolve.c: look-ups under way (loop thread), their threads. */
    tether_pool_t *resolver;
    struct tether__resolve_job *resolving;

    /* conn.c */
    struct tether__conn *conns;
    uint64_t resolve_seq;         /* ids of the look-ups conn.c waits for */
    struct tether__conn *closing; /* reaped at the end of an iteration */
    uint64_t tick_ms;             /* net_ticktime / 4 */
    uint64_t next_hk_ms;          /* next housekeeping */
    tether_node_conn_fn conn_fn;
    void *conn_ctx; /* the cluster's, for conn_fn */
    /* Failed dials per peer, for rate-limited logging (conn.c). */
    struct tether__dial_log {
        char peer[TETHER_ATOM_MAX]; /* "" for a free slot */
        uint64_t logged_ms;         /* when a line was last printed */
        uint32_t suppressed;        /* failures since, not printed */
    } dial_logs[TETHER__DIAL_LOGS];

    /* dispatch.c */
    uint8_t *scratch; /* a term given a version byte */
    size_t scratch_cap;
    tether_spawn_fn spawn_fn;

    /* spawn_out.c */
    tether_spawn_out_ops_t spawn_out;

    /* functions.c */
    struct tether__fn_entry *fns[TETHER__FN_BUCKETS];

    /* gen_service.c: services registered before start wait here. */
    struct tether__pending_svc *pending_svcs;
    bool services_started;

    /* rex.c */
    tether_proc_t *rex;
    erlang_pid rex_pid;

    /* erlang_call.c: calls waiting for their outcome. */
    struct tether__out_call *outs;

    /* workers.c */
    tether_pool_t *pool;

    /* cluster.c */
    struct tether_cluster *cluster;

    /* channel.c */
    struct tether_channels *channels;
};

/* ---- loop.c -------------------------------------------------------- */

/* Creates epoll and the eventfd of posts. Returns 0 or TETHER_EIO. */
TETHER_MUST_CHECK int tether__loop_init(tether_node_t *node);
/* Closes the signalfd, the eventfd and epoll. */
void tether__loop_close(tether_node_t *node);
/* Frees posts and timers that never ran. */
void tether__loop_fini(tether_node_t *node);

/* Watches fd for events (EPOLL_CTL_ADD / MOD / DEL). 0 or -1 (errno). */
int tether__loop_watch(tether_node_t *node, int fd, uint32_t events,
                       tether__watcher_t *w);
int tether__loop_rewatch(tether_node_t *node, int fd, uint32_t events,
                         tether__watcher_t *w);
void tether__loop_unwatch(tether_node_t *node, int fd);

/*
 * Waits up to timeout_ms (busy-polling while the node was active) and
 * runs the callbacks of the watchers that have events. Returns 0,
 * TETHER_EAGAIN (interrupted: nothing ran) or TETHER_EIO.
 */
int tether__loop_poll(tether_node_t *node, int timeout_ms);

/* Runs the timers due at `now`. */
void tether__loop_run_timers(tether_node_t *node, uint64_t now);

/* The earlier of `deadline` and the first timer. */
uint64_t tether__loop_next_deadline(const tether_node_t *node,
                                    uint64_t deadline);

/* Wakes the loop from any thread. */
void tether__loop_wake(tether_node_t *node);

/* ---- listen.c ------------------------------------------------------ */

/* No socket yet. */
void tether__listen_init(tether_node_t *node);

/* Listens on the configured address; node->port is the port. */
TETHER_MUST_CHECK int tether__listen_start(tether_node_t *node);

/* Registers our name with epmd; node->creation comes from the reply. */
TETHER_MUST_CHECK int tether__epmd_register(tether_node_t *node);

/* Closes the epmd and listen sockets. */
void tether__listen_fini(tether_node_t *node);

/* ---- conn.c -------------------------------------------------------- */

typedef struct tether__conn tether__conn_t;

/* Derives the tick period from the configuration; no connection yet. */
void tether__conn_init(tether_node_t *node);

/* Closes every connection without telling the process table. */
void tether__conn_fini(tether_node_t *node);

/* The process table's output callback (ctx is the node). */
int tether__conn_out(void *ctx, const tether_out_t *op);

/* Takes an accepted socket; `where` ("ADDR:PORT") is for logs. */
void tether__conn_accepted(tether_node_t *node, int fd, const char *where);

/* Deadlines and ticks of every connection, when due at `now`. */
void tether__conn_housekeeping(tether_node_t *node, uint64_t now);

/* Closes every connection marked closing; returns how many. */
size_t tether__conn_reap(tether_node_t *node);

/* Writes the output of every connection that has new output. */
void tether__conn_flush_dirty(tether_node_t *node);

/* The peer of an UP connection. */
const char *tether__conn_peer(const tether__conn_t *c);

/*
 * Queues a SPAWN_REPLY on c for the request ref from `to`: the new
 * process pid (with the link/monitor flags), or the error atom term
 * reason (131-prefixed) when pid is NULL.
 */
void tether__conn_spawn_reply(tether__conn_t *c, const erlang_ref *ref,
                              const erlang_pid *to, long flags,
                              const erlang_pid *pid, const char *reason,
                              size_t reason_len);

/* ---- dispatch.c ---------------------------------------------------- */

/* Acts on one control message that arrived on c. */
void tether__dispatch(tether_node_t *node, tether__conn_t *c,
                      const tether_dist_msg_t *dm);

/* Frees the scratch buffer. */
void tether__dispatch_fini(tether_node_t *node);

/* ---- spawn_out.c --------------------------------------------------- */

/*
 * An outgoing SPAWN_REQUEST travels through the same pending queue as
 * the process table's operations; this kind is private to the runtime.
 * Its op keeps module in from_name, function in to_name, the group
 * leader in `to` and the argument list in msg.
 */
#define TETHER__OUT_SPAWN_REQUEST ((tether_out_kind_t)100)

/* Encodes a TETHER__OUT_SPAWN_REQUEST op from `from` for flags f. */
int tether__spawn_out_encode(ei_x_buff *x, uint64_t f, const erlang_pid *from,
                             const tether_out_t *op);

/* What came back for our requests, to the hooks (see node.h). */
void tether__spawn_out_reply(tether_node_t *node, const erlang_ref *req_id,
                             const erlang_pid *pid, const char *err,
                             size_t err_len);
bool tether__spawn_out_down(tether_node_t *node, const erlang_ref *ref,
                            const char *reason, size_t reason_len);
void tether__spawn_out_nodedown(tether_node_t *node, const char *peer);

/* ---- functions.c: calls -------------------------------------------- */

/* Hands a completed call's outcome (call->out) to its caller. Loop. */
typedef void (*tether__call_deliver_fn)(tether_call_t *call);

/*
 * A call of a registered function in progress. The one who makes it
 * (erpc.c, rex.c, tether__call_invoke) sets mode, deliver and what
 * deliver needs; functions.c runs it, encodes the outcome for the mode
 * and calls deliver on the loop thread, then frees it.
 */
struct tether_call {
    tether_node_t *node;
    tether_reply_mode_t mode;
    tether__call_deliver_fn deliver; /* NULL: the outcome is dropped */
    erlang_pid pid;                  /* ERPC, CAST: the erpc process */
    tether_from_t *from;             /* REX: the caller */
    tether__call_done_fn done;       /* INNER */
    void *done_ctx;
    char module[TETHER_NAME_MAX];
    char function[TETHER_NAME_MAX];
    int arity;
    char *buf; /* owned copy of the request (131-prefixed) */
    size_t len;
    int args_index;     /* first argument */
    int alist0, alist1; /* the argument list term */
    int ref0, ref1;     /* erpc's Ref */
    ei_x_buff out;      /* the encoded outcome */
};

/* True if s is a module, function or service name that fits an atom. */
bool tether__name_ok(const char *s);

/* A call with a copy of buf[0..len); NULL without memory. */
tether_call_t *tether__call_new(tether_node_t *node, tether_reply_mode_t mode,
                                const char *buf, size_t len);
void tether__call_free(tether_call_t *call);

/*
 * Reads M, F and the argument list (a proper list; a string is rewritten
 * as a list) at call->buf[idx]. Returns 0 or a negative number.
 */
int tether__call_parse(tether_call_t *call, int idx);

/* Runs the function of call, or raises undef as the BEAM would. Loop. */
void tether__call_run(tether_call_t *call);

/* Completes call with (cls, value, stack) as tether_call_raise does. */
int tether__call_complete(tether_call_t *call, tether_class_t cls,
                          const char *value, size_t vlen, const char *stack,
                          size_t slen);

/* Frees the function table. */
void tether__functions_fini(tether_node_t *node);

/* ---- erpc.c, rex.c ------------------------------------------------- */

/* Answers erpc's SPAWN_REQUESTs from now on / no more. */
void tether__erpc_start(tether_node_t *node);
void tether__erpc_stop(tether_node_t *node);

/* Starts the registered process rex. */
TETHER_MUST_CHECK int tether__rex_start(tether_node_t *node);

/* ---- gen_service.c, send.c ----------------------------------------- */

/* A from-handle for From = {Pid, Tag} at b[idx]; NULL if malformed. */
tether_from_t *tether__from_new(tether_node_t *node, const erlang_pid *self,
                                const char *b, int idx);

/* A from-handle for rex's plain {From, {call, ...}}: {rex, Reply}. */
tether_from_t *tether__from_rex(tether_node_t *node, const erlang_pid *self,
                                const erlang_pid *to);

/* Starts the services registered before start. */
TETHER_MUST_CHECK int tether__services_start(tether_node_t *node);

/* Frees services that never started. */
void tether__services_fini(tether_node_t *node);

/* Sends msg now (loop thread) or through a post (any other thread). */
int tether__send_any(tether_node_t *node, const erlang_pid *self,
                     const erlang_pid *to, const erlang_ref *alias,
                     const char *msg, size_t len);

/* ---- erlang_call.c, workers.c -------------------------------------- */

/* Takes the spawn_out hooks / gives them back and drops open calls. */
void tether__erlang_call_start(tether_node_t *node);
void tether__erlang_call_fini(tether_node_t *node);

/* Starts the node's pool / stops it, waiting for running jobs. */
TETHER_MUST_CHECK int tether__workers_start(tether_node_t *node);
void tether__workers_fini(tether_node_t *node);

#endif /* TETHER_CNODE_INTERNAL_H */
