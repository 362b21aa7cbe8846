/*
 * cnode/node.h: the C-node runtime: one epoll event loop that owns every
 * socket (listen, epmd registration, peer connections), the timers, and
 * the process table of cnode/proc.h.
 *
 * Threading: everything runs on the thread that calls tether_node_run(),
 * except tether_node_stop(), tether_node_post() and
 * tether_node_post_send(), which any thread may call (they wake the loop
 * through an eventfd). Handlers run on the loop thread and must not
 * block; a handler with slow work hands it to a worker and replies later
 * with tether_node_post_send() (or tether_node_post() for anything else).
 *
 * Lifecycle: tether_node_new() (checks the config) -> tether_node_start()
 * (listens, registers with epmd, starts the built-in processes) ->
 * tether_node_run() (until tether_node_stop() or a handled signal) ->
 * tether_node_free() (closes every socket: peers see nodedown at once).
 */
#ifndef TETHER_CNODE_NODE_H
#define TETHER_CNODE_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cnode/proc.h"
#include "tether/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TETHER_NODE_TICKTIME_DEFAULT    60    /* seconds */
#define TETHER_NODE_HS_TIMEOUT_DEFAULT  10000 /* milliseconds */
#define TETHER_NODE_OUTBUF_MAX_DEFAULT  ((size_t)64 << 20)
#define TETHER_NODE_FRAME_MAX_DEFAULT   (UINT32_C(128) << 20)
#define TETHER_NODE_LISTEN_ADDR_DEFAULT "127.0.0.1"
#define TETHER_NODE_COOKIE_MAX          1020

typedef enum tether_log_level {
    TETHER_LOG_ERROR = 0,
    TETHER_LOG_WARNING = 1,
    TETHER_LOG_INFO = 2,
    TETHER_LOG_DEBUG = 3,
} tether_log_level_t;

/* Everything a node needs to start; zero fields take the defaults. */
typedef struct tether_node_config {
    const char *name;        /* full node name "alive@host" (required) */
    const char *cookie;      /* the distribution cookie (required) */
    const char *listen_addr; /* IPv4 literal; default 127.0.0.1 */
    uint16_t listen_port;    /* 0: any free port */
    uint16_t epmd_port;      /* 0: 4369 */
    bool visible;            /* PUBLISHED + node type 77; else hidden */
    unsigned ticktime_s;     /* net_ticktime; 0: 60 */
    int log_level;           /* tether_log_level_t */
    unsigned hs_timeout_ms;  /* handshake deadline; 0: 10 s */
    size_t outbuf_max;       /* unsent bytes per connection before drop */
    uint32_t frame_max;      /* largest frame accepted; 0: 128 MiB */
    const char *log_prefix;  /* default "tether_cnode" */
} tether_node_config_t;

/* Counters (read on the loop thread, or after run returned). */
typedef struct tether_node_stats {
    uint64_t malformed_frames;
    uint64_t unknown_control;
    uint64_t bad_handshakes;
    uint64_t dropped_connections;
    uint64_t accepted;
    uint64_t connected; /* outgoing connections that completed */
    uint64_t msgs_in;
    uint64_t ticks_out;
} tether_node_stats_t;

typedef struct tether_node tether_node_t;

/* Runs on the loop thread; posted from any thread. */
typedef void (*tether_node_post_fn)(tether_node_t *node, void *arg);

/*
 * Checks cfg (a copy is kept) and creates the node without touching the
 * network. Returns 0, TETHER_EINVAL (with a reason written to *why when
 * why is not NULL: a static string) or TETHER_ENOMEM.
 */
TETHER_MUST_CHECK int tether_node_new(const tether_node_config_t *cfg,
                                      tether_node_t **node, const char **why);

/*
 * Listens, registers the name with epmd (ALIVE2; the socket stays open for
 * the node's life, the creation comes from the reply) and starts the
 * built-in processes (net_kernel, echo). Waits at most a few seconds for
 * epmd. Returns 0, TETHER_EEXIST (name taken in epmd), TETHER_EIO (could
 * not listen or reach epmd) or TETHER_EPROTO; a line is logged.
 */
TETHER_MUST_CHECK int tether_node_start(tether_node_t *node);

/*
 * Makes SIGINT and SIGTERM stop the loop (through a signalfd; the signals
 * are blocked in the calling thread, so call it before starting other
 * threads). Returns 0 or TETHER_EIO.
 */
TETHER_MUST_CHECK int tether_node_handle_signals(tether_node_t *node);

/* Runs the loop until stopped. Returns 0 or TETHER_EIO (epoll failed). */
int tether_node_run(tether_node_t *node);

/* Makes tether_node_run() return soon. Any thread; async-signal-safe. */
void tether_node_stop(tether_node_t *node);

/* Closes every socket and frees the node (run must have returned). */
void tether_node_free(tether_node_t *node);

/* Runs fn(node, arg) on the loop thread. Any thread. 0 or ENOMEM/ECLOSED. */
TETHER_MUST_CHECK int tether_node_post(tether_node_t *node,
                                       tether_node_post_fn fn, void *arg);

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
 * the error in the SPAWN_REPLY.
 */
typedef int (*tether_spawn_fn)(tether_node_t *node,
                               const tether_spawn_req_t *req, erlang_pid *pid,
                               const char **error_atom, void *ctx);

/* Sets the spawn hook (NULL: every SPAWN_REQUEST is answered notsup). */
void tether_node_set_spawn_handler(tether_node_t *node, tether_spawn_fn fn,
                                   void *ctx);

/* The process table (loop thread only). */
tether_procs_t *tether_node_procs(tether_node_t *node);

/* Full node name, creation (after start), and the port we listen on. */
const char *tether_node_name(const tether_node_t *node);
uint32_t tether_node_creation(const tether_node_t *node);
uint16_t tether_node_port(const tether_node_t *node);

void tether_node_stats(const tether_node_t *node, tether_node_stats_t *st);

/* Number of connections that finished the handshake and are up. */
size_t tether_node_peer_count(const tether_node_t *node);

/* Milliseconds on the monotonic clock the loop uses. */
uint64_t tether_node_now_ms(void);

/* A one-shot timer: fn(node, arg) runs on the loop after `ms`. */
typedef uint64_t tether_timer_id_t;
TETHER_MUST_CHECK int tether_node_timer_add(tether_node_t *node, uint64_t ms,
                                            tether_node_post_fn fn, void *arg,
                                            tether_timer_id_t *id);
/* Cancels a timer; TETHER_ENOTFOUND when it already ran. */
int tether_node_timer_cancel(tether_node_t *node, tether_timer_id_t id);

/* Parses "error|warning|info|debug"; returns the level or -1. */
int tether_log_level_parse(const char *text);

/* Logs one line "PREFIX: text" to stderr when level <= the node's level. */
void tether__node_log(const tether_node_t *node, int level, const char *fmt,
                      ...) __attribute__((format(printf, 3, 4)));

#ifdef __cplusplus
}
#endif

#endif /* TETHER_CNODE_NODE_H */
