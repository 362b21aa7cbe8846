/*
 * tether/node.h: a tether C-node: create, start, run and stop it; post work
 * to its loop; timers; logging.
 *
 * A node is one event loop (epoll) that owns every socket, the timers and
 * the C processes (services, functions in progress). Everything runs on
 * the thread that calls tether_node_run() (the loop thread), except the
 * functions marked "any thread". Handlers run on the loop thread and must
 * not block: slow work goes to the worker pool (tether/workers.h) and the
 * result is delivered later.
 *
 * Lifecycle: tether_node_new() (checks the config, no network) ->
 * register functions and services (tether/function.h,
 * tether/gen_service.h) -> tether_node_start()
 * (listens, registers with epmd, starts the built-in processes: net_kernel,
 * rex, echo, and the worker pool) -> tether_node_run() (until
 * tether_node_stop() or a handled signal) -> tether_node_free().
 */
#ifndef TETHER_NODE_H
#define TETHER_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tether/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TETHER_NODE_TICKTIME_DEFAULT     60   /* seconds */
#define TETHER_NODE_HS_TIMEOUT_DEFAULT   7000 /* ms: OTP's net_setuptime */
#define TETHER_NODE_OUTBUF_MAX_DEFAULT   ((size_t)64 << 20)
#define TETHER_NODE_FRAME_MAX_DEFAULT    (UINT32_C(1) << 30) /* also the max */
#define TETHER_NODE_OUTBUF_MAX_LIMIT     ((size_t)512 << 20)
#define TETHER_NODE_OUT_STALL_MS         5000
#define TETHER_NODE_LISTEN_ADDR_DEFAULT  "127.0.0.1"
#define TETHER_NODE_LISTEN_ADDR6_DEFAULT "::1"
#define TETHER_NODE_COOKIE_MAX           1020

/*
 * How the node speaks distribution, as `erl -proto_dist`: IPv4 or IPv6
 * (node names' hosts resolve to that family, epmd is reached on
 * 127.0.0.1 or ::1), plain TCP or TLS (OTP's inet_tls_dist, configured
 * by an ssl_dist_optfile).
 */
typedef enum tether_proto_dist {
    TETHER_PROTO_INET_TCP = 0, /* the default */
    TETHER_PROTO_INET6_TCP,
    TETHER_PROTO_INET_TLS,
    TETHER_PROTO_INET6_TLS,
} tether_proto_dist_t;

/* "inet_tcp" ... "inet6_tls" to a tether_proto_dist_t, or -1. */
int tether_proto_dist_parse(const char *text);

typedef enum tether_log_level {
    TETHER_LOG_ERROR = 0,
    TETHER_LOG_WARNING = 1,
    TETHER_LOG_INFO = 2,
    TETHER_LOG_DEBUG = 3,
} tether_log_level_t;

/* Everything a node needs to start; zero fields take the defaults. */
typedef struct tether_node_config {
    const char *name;             /* full node name "alive@host" (required) */
    const char *cookie;           /* the distribution cookie (required) */
    const char *listen_addr;      /* an address literal of the protocol's
                                     family; default 127.0.0.1 (inet_*) or
                                     ::1 (inet6_*) */
    uint16_t listen_port;         /* 0: any free port */
    uint16_t epmd_port;           /* 0: 4369 */
    bool visible;                 /* PUBLISHED + node type 77; else hidden */
    unsigned ticktime_s;          /* net_ticktime; 0: 60 */
    int log_level;                /* tether_log_level_t */
    unsigned hs_timeout_ms;       /* connection set-up deadline (name look-up,
                                     TLS and distribution handshakes), as
                                     net_setuptime; 0: 7 s */
    /* A connection is dropped when more than outbuf_max bytes (default
     * 64 MiB, at most TETHER_NODE_OUTBUF_MAX_LIMIT) wait to be sent and
     * none went for TETHER_NODE_OUT_STALL_MS (a peer that stopped
     * reading), or at once when more than outbuf_max + frame_max wait.
     * One large term (up to frame_max) is no reason: it is written as
     * the peer reads it. */
    size_t outbuf_max;
    uint32_t frame_max; /* largest message accepted, whole frame or
                           reassembled from fragments; 0: 1 GiB, which is
                           also the most allowed */
    const char *log_prefix;       /* default "tether_cnode" */
    unsigned workers;             /* worker threads; 0: max(2, CPUs) */
    unsigned busy_poll_us;        /* spin this long after activity before the
                                     loop sleeps; 0: the default (200);
                                     TETHER_BUSY_POLL_OFF: never spin */
    int proto_dist;               /* tether_proto_dist_t */
    const char *ssl_dist_optfile; /* *_tls: OTP's ssl_dist_optfile (required
                                     then; read by tether_node_new) */
    unsigned dial_log_ms;         /* failed connections to one node: the
                                     first is logged, then one summary at
                                     most this often until one succeeds
                                     (the others at debug level, prefixed
                                     "suppressed: "); 0: 60 s */
} tether_node_config_t;

#define TETHER_NODE_DIAL_LOG_MS_DEFAULT 60000u

/*
 * The loop keeps polling without sleeping for busy_poll_us after the last
 * socket activity: a peer that just sent usually sends again within
 * microseconds, and a wake-up from epoll_wait costs tens of them on a
 * virtual machine (it halves a round trip here). An idle node sleeps,
 * and so does a node whose spinning was preempted (another process had
 * the core for more than a few tens of microseconds): on a busy machine
 * spinning only takes time from the peer it waits for.
 */
#define TETHER_BUSY_POLL_DEFAULT_US 200u
#define TETHER_BUSY_POLL_OFF        0xffffffffu

typedef struct tether_node tether_node_t;

/* Runs on the loop thread; posted from any thread. */
typedef void (*tether_node_post_fn)(tether_node_t *node, void *arg);

/*
 * Checks cfg (a copy is kept) and creates the node without touching the
 * network (under TLS it reads the ssl_dist_optfile and the certificates
 * it names). Returns 0, TETHER_EINVAL (with a reason written to *why when
 * why is not NULL: a static string, or for the TLS set-up a thread-local
 * one valid until the thread's next call) or TETHER_ENOMEM.
 */
TETHER_MUST_CHECK int tether_node_new(const tether_node_config_t *cfg,
                                      tether_node_t **node, const char **why);

/*
 * Listens, registers the name with epmd (the creation comes from the
 * reply), starts the built-in processes, the services registered so far
 * and the worker pool. Returns 0, TETHER_EEXIST (name taken in epmd),
 * TETHER_EIO (could not listen or reach epmd) or TETHER_EPROTO; a line is
 * logged.
 */
TETHER_MUST_CHECK int tether_node_start(tether_node_t *node);

/*
 * Makes SIGINT and SIGTERM stop the loop (through a signalfd; the signals
 * are blocked in the calling thread, so call it before starting other
 * threads, i.e. before tether_node_start()). Returns 0 or TETHER_EIO.
 */
TETHER_MUST_CHECK int tether_node_handle_signals(tether_node_t *node);

/* Runs the loop until stopped. Returns 0 or TETHER_EIO (epoll failed). */
int tether_node_run(tether_node_t *node);

/* Makes tether_node_run() return soon. Any thread; async-signal-safe. */
void tether_node_stop(tether_node_t *node);

/*
 * Stops the worker pool (waiting for running jobs), closes every socket
 * (peers see nodedown at once) and frees the node. run must have returned.
 */
void tether_node_free(tether_node_t *node);

/* Runs fn(node, arg) on the loop thread. Any thread. 0 or ENOMEM. */
TETHER_MUST_CHECK int tether_node_post(tether_node_t *node,
                                       tether_node_post_fn fn, void *arg);

/* Full node name, creation (after start), and the port we listen on. */
const char *tether_node_name(const tether_node_t *node);
uint32_t tether_node_creation(const tether_node_t *node);
uint16_t tether_node_port(const tether_node_t *node);

/*
 * True once tether_node_stop() was called or a handled signal arrived.
 * Any thread: long jobs on workers poll it to end early, since
 * tether_node_free() waits for running jobs.
 */
bool tether_node_stopping(const tether_node_t *node);

/* True when called on the thread running tether_node_run(). */
bool tether_node_on_loop(const tether_node_t *node);

/* Milliseconds on the monotonic clock the loop uses. */
uint64_t tether_node_now_ms(void);

/* A one-shot timer: fn(node, arg) runs on the loop after `ms` (loop only). */
typedef uint64_t tether_timer_id_t;
TETHER_MUST_CHECK int tether_node_timer_add(tether_node_t *node, uint64_t ms,
                                            tether_node_post_fn fn, void *arg,
                                            tether_timer_id_t *id);
/* Cancels a timer; TETHER_ENOTFOUND when it already ran. Loop only. */
int tether_node_timer_cancel(tether_node_t *node, tether_timer_id_t id);

/* ---- logging -------------------------------------------------------- */

/*
 * A log sink: receives every line at or below the node's level, without
 * prefix or newline. Called on whichever thread logged (loop or worker),
 * so it must be thread-safe. The default writes "PREFIX: line" to stderr.
 */
typedef void (*tether_log_fn)(void *ctx, int level, const char *line);

/* Replaces the log sink (NULL: back to stderr). Call before start. */
void tether_node_set_log_fn(tether_node_t *node, tether_log_fn fn, void *ctx);

/* Changes the log level (a tether_log_level_t); any thread. */
void tether_node_set_log_level(tether_node_t *node, int level);

/* Logs one line at `level` through the node's sink. Any thread. */
void tether_node_log(const tether_node_t *node, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Parses "error|warning|info|debug"; returns the level or -1. */
int tether_log_level_parse(const char *text);

#ifdef __cplusplus
}
#endif

#endif /* TETHER_NODE_H */
