/*
 * cnode/core.c: a node's lifecycle (tether/node.h). This is the only file
 * that decides in which order the layers of internal.h start, run and
 * are freed; each layer only knows how to init and fini itself.
 *
 *   new    configuration checked and defaults filled in; loop (epoll,
 *          eventfd), listen and connection state, the process table
 *   start  listen socket, epmd registration (the creation), built-in
 *          processes, rex, the erpc and erlang_call hooks, the services
 *          registered so far, the worker pool
 *   run    one iteration: poll (watcher callbacks), timers, connection
 *          housekeeping, processes and reaping of lost connections in
 *          rounds, then every connection's output
 *   free   workers first (they may still post), then the service API,
 *          connections (peers see nodedown at once), the server sockets,
 *          the loop's descriptors, the process table (its exit hooks may
 *          still cancel timers), the loop's posts and timers
 */
#include <arpa/inet.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnode/builtins.h"
#include "cnode/internal.h"
#include "cnode/optfile.h"
#include "cnode/resolve.h"
#include "cnode/tls.h"
#include "dist/epmd.h"
#include "dist/flags.h"

#define RUN_BUDGET 4096

/* ---- logging ------------------------------------------------------- */

int tether_log_level_parse(const char *text)
{
    static const char *const names[] = {"error", "warning", "info", "debug"};
    for (int i = 0; i < 4; i++)
        if (text && strcmp(text, names[i]) == 0)
            return i;
    return -1;
}

static void vlog(const tether_node_t *node, int level, const char *fmt,
                 va_list ap) __attribute__((format(printf, 3, 0)));

/* Formats one line and hands it to the node's sink (default: stderr). */
static void vlog(const tether_node_t *node, int level, const char *fmt,
                 va_list ap)
{
    if (node && level > atomic_load(&node->log_level))
        return;
    char line[1024];
    vsnprintf(line, sizeof line, fmt, ap);
    if (node && node->log_fn) {
        node->log_fn(node->log_ctx, level, line);
        return;
    }
    fprintf(stderr, "%s: %s\n", node ? node->prefix : "tether_cnode", line);
}

void tether__node_log(const tether_node_t *node, int level, const char *fmt,
                      ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(node, level, fmt, ap);
    va_end(ap);
}

void tether_node_log(const tether_node_t *node, int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(node, level, fmt, ap);
    va_end(ap);
}

void tether_node_set_log_fn(tether_node_t *node, tether_log_fn fn, void *ctx)
{
    node->log_fn = fn;
    node->log_ctx = ctx;
}

void tether_node_set_log_level(tether_node_t *node, int level)
{
    if (level >= TETHER_LOG_ERROR && level <= TETHER_LOG_DEBUG)
        atomic_store(&node->log_level, level);
}

/* ---- lifecycle ----------------------------------------------------- */

int tether_proto_dist_parse(const char *text)
{
    static const char *const names[] = {"inet_tcp", "inet6_tcp", "inet_tls",
                                        "inet6_tls"};
    for (int i = 0; i < 4; i++)
        if (text && strcmp(text, names[i]) == 0)
            return i;
    return -1;
}

/*
 * Reads the ssl_dist_optfile and builds the TLS contexts. On failure
 * *why is a thread-local sentence naming the file and the problem.
 */
static int tls_setup(tether_node_t *node, const char *path, const char **why)
{
    static __thread char msg[TETHER_OPTFILE_ERR_MAX + 64];
    char err[TETHER_OPTFILE_ERR_MAX];
    tether__tls_opts_t opts;
    if (path == NULL || *path == '\0') {
        *why = "TLS distribution needs an ssl_dist_optfile";
        return TETHER_EINVAL;
    }
    int rc = tether__optfile_read(path, &opts, err, sizeof err);
    if (rc == 0) {
        rc = tether__tls_ctx_new(&opts, &node->tls, err, sizeof err);
        tether__tls_opts_free(&opts);
        if (rc < 0)
            snprintf(msg, sizeof msg, "ssl_dist_optfile '%s': %s", path, err);
    } else {
        snprintf(msg, sizeof msg, "ssl_dist_optfile %s", err);
    }
    if (rc < 0)
        *why = msg;
    return rc;
}

int tether_node_new(const tether_node_config_t *cfg, tether_node_t **nodep,
                    const char **why)
{
    const char *dummy;
    if (why == NULL)
        why = &dummy;
    *why = NULL;
    if (cfg == NULL || nodep == NULL) {
        *why = "no configuration";
        return TETHER_EINVAL;
    }
    if (!tether_node_name_valid(cfg->name) ||
        strchr(strchr(cfg->name, '@') + 1, '@') != NULL ||
        (size_t)(strchr(cfg->name, '@') - cfg->name) > TETHER_EPMD_NAME_MAX) {
        *why = "node name must be name@host";
        return TETHER_EINVAL;
    }
    if (cfg->cookie == NULL || cfg->cookie[0] == '\0' ||
        strlen(cfg->cookie) > TETHER_NODE_COOKIE_MAX) {
        *why = "the cookie is empty or too long";
        return TETHER_EINVAL;
    }
    if (cfg->proto_dist < TETHER_PROTO_INET_TCP ||
        cfg->proto_dist > TETHER_PROTO_INET6_TLS) {
        *why = "bad proto_dist";
        return TETHER_EINVAL;
    }
    bool v6 = cfg->proto_dist == TETHER_PROTO_INET6_TCP ||
              cfg->proto_dist == TETHER_PROTO_INET6_TLS;
    struct in6_addr ia;
    const char *la = cfg->listen_addr ? cfg->listen_addr
                     : v6             ? TETHER_NODE_LISTEN_ADDR6_DEFAULT
                                      : TETHER_NODE_LISTEN_ADDR_DEFAULT;
    if (inet_pton(v6 ? AF_INET6 : AF_INET, la, &ia) != 1) {
        *why = v6 ? "listen address must be an IPv6 address under inet6_*"
                  : "listen address must be an IPv4 address under inet_*";
        return TETHER_EINVAL;
    }
    if (cfg->log_level < TETHER_LOG_ERROR ||
        cfg->log_level > TETHER_LOG_DEBUG) {
        *why = "bad log level";
        return TETHER_EINVAL;
    }
    tether_node_t *node = calloc(1, sizeof *node);
    if (node == NULL)
        return TETHER_ENOMEM;
    node->cfg = *cfg;
    node->family = v6 ? AF_INET6 : AF_INET;
    snprintf(node->name, sizeof node->name, "%s", cfg->name);
    snprintf(node->cookie, sizeof node->cookie, "%s", cfg->cookie);
    snprintf(node->listen_addr, sizeof node->listen_addr, "%s", la);
    snprintf(node->prefix, sizeof node->prefix, "%s",
             cfg->log_prefix ? cfg->log_prefix : "tether_cnode");
    node->cfg.name = node->name;
    node->cfg.cookie = node->cookie;
    node->cfg.listen_addr = node->listen_addr;
    node->cfg.log_prefix = node->prefix;
    node->cfg.ssl_dist_optfile = NULL; /* read below, not kept */
    if (node->cfg.epmd_port == 0)
        node->cfg.epmd_port = TETHER_EPMD_PORT;
    if (node->cfg.ticktime_s == 0)
        node->cfg.ticktime_s = TETHER_NODE_TICKTIME_DEFAULT;
    if (node->cfg.hs_timeout_ms == 0)
        node->cfg.hs_timeout_ms = TETHER_NODE_HS_TIMEOUT_DEFAULT;
    if (node->cfg.busy_poll_us == 0)
        node->cfg.busy_poll_us = TETHER_BUSY_POLL_DEFAULT_US;
    else if (node->cfg.busy_poll_us == TETHER_BUSY_POLL_OFF)
        node->cfg.busy_poll_us = 0;
    if (node->cfg.dial_log_ms == 0)
        node->cfg.dial_log_ms = TETHER_NODE_DIAL_LOG_MS_DEFAULT;
    if (node->cfg.outbuf_max == 0)
        node->cfg.outbuf_max = TETHER_NODE_OUTBUF_MAX_DEFAULT;
    if (node->cfg.frame_max == 0 ||
        node->cfg.frame_max > TETHER_NODE_FRAME_MAX_DEFAULT)
        node->cfg.frame_max = TETHER_NODE_FRAME_MAX_DEFAULT;
    if (node->cfg.outbuf_max > TETHER_NODE_OUTBUF_MAX_LIMIT)
        node->cfg.outbuf_max = TETHER_NODE_OUTBUF_MAX_LIMIT;
    node->our_flags = TETHER_DIST_FLAGS_ADVERTISED |
                      (cfg->visible ? TETHER_DFLAG_PUBLISHED : 0);
    atomic_init(&node->log_level, cfg->log_level);
    tether__listen_init(node);
    tether__conn_init(node);
    int rc = tether__loop_init(node);
    if (rc < 0) {
        *why = "cannot create epoll or eventfd";
        goto fail;
    }
    if (cfg->proto_dist >= TETHER_PROTO_INET_TLS) {
        rc = tls_setup(node, cfg->ssl_dist_optfile, why);
        if (rc < 0)
            goto fail;
    }
    rc = tether_procs_new(node->name, 0, tether__conn_out, node, &node->procs);
    if (rc < 0)
        goto fail;
    /* Messages from sockets reach an idle process without a mailbox copy:
     * dispatch and the posts run outside every handler. */
    tether__procs_set_direct(node->procs, true);
    *nodep = node;
    return 0;
fail:
    tether_node_free(node);
    return rc;
}

int tether_node_start(tether_node_t *node)
{
    int rc = tether__listen_start(node);
    if (rc < 0)
        return rc;
    rc = tether__epmd_register(node);
    if (rc < 0)
        return rc;
    tether_procs_set_creation(node->procs, node->creation);
    rc = tether__builtins_start(node->procs);
    if (rc == 0)
        rc = tether__rex_start(node);
    if (rc == 0) {
        tether__erpc_start(node);
        tether__erlang_call_start(node);
        rc = tether__services_start(node);
    }
    if (rc == 0)
        rc = tether__workers_start(node);
    if (rc < 0) {
        LOG(node, TETHER_LOG_ERROR, "cannot start built-in processes: %s",
            tether_strerror(rc));
        return rc;
    }
    node->next_hk_ms = tether_node_now_ms();
    LOG(node, TETHER_LOG_DEBUG, "listening on %s%s%s:%u%s, creation %u",
        node->family == AF_INET6 ? "[" : "", node->listen_addr,
        node->family == AF_INET6 ? "]" : "", node->port,
        node->tls ? " (TLS)" : "", node->creation);
    return 0;
}

/* How long the loop may sleep: not at all while work is waiting. */
static int run_timeout(const tether_node_t *node, uint64_t now)
{
    if (tether_procs_pending(node->procs) || node->closing)
        return 0;
    uint64_t next = tether__loop_next_deadline(node, node->next_hk_ms);
    return next <= now ? 0 : (int)(next - now);
}

int tether_node_run(tether_node_t *node)
{
    node->loop_thread = pthread_self();
    node->active_us = 0;
    atomic_store(&node->running, true);
    while (!atomic_load(&node->stop)) {
        int rc =
            tether__loop_poll(node, run_timeout(node, tether_node_now_ms()));
        if (rc == TETHER_EAGAIN)
            continue;
        if (rc < 0)
            return rc;
        uint64_t now = tether_node_now_ms();
        tether__loop_run_timers(node, now);
        tether__conn_housekeeping(node, now);
        /* Let processes run, then act on lost connections; repeat while
         * either produces work, within a budget so sockets stay served. */
        for (int round = 0; round < 8; round++) {
            size_t ran = tether_procs_run(node->procs, RUN_BUDGET);
            size_t reaped = tether__conn_reap(node);
            if (ran == 0 && reaped == 0)
                break;
        }
        tether__conn_flush_dirty(node);
        tether__conn_reap(node);
    }
    LOG(node, TETHER_LOG_INFO,
        "stopping: %" PRIu64 " malformed frames, %" PRIu64
        " unknown control messages, %" PRIu64 " bad handshakes, %" PRIu64
        " TLS failures, %" PRIu64 " dropped connections",
        node->stats.malformed_frames, node->stats.unknown_control,
        node->stats.bad_handshakes, node->stats.tls_failures,
        node->stats.dropped_connections);
    atomic_store(&node->running, false);
    return 0;
}

void tether_node_stop(tether_node_t *node)
{
    atomic_store(&node->stop, true);
    tether__loop_wake(node);
}

void tether_node_free(tether_node_t *node)
{
    if (node == NULL)
        return;
    /* Workers and resolvers first: they may still post to this node. */
    tether__workers_fini(node);
    tether__resolve_fini(node);
    tether__erlang_call_fini(node);
    tether__erpc_stop(node);
    tether__functions_fini(node);
    tether__services_fini(node);
    /* Close every connection: peers see the sockets go at once. */
    tether__conn_fini(node);
    tether__listen_fini(node);
    tether__loop_close(node);
    /* Exit hooks run here and may still cancel timers. */
    tether_procs_free(node->procs);
    tether__loop_fini(node);
    tether__dispatch_fini(node);
    tether__tls_ctx_free(node->tls);
    explicit_bzero(node->cookie, sizeof node->cookie);
    free(node);
}

/* ---- accessors ----------------------------------------------------- */

tether_procs_t *tether_node_procs(tether_node_t *node)
{
    return node->procs;
}

const char *tether_node_name(const tether_node_t *node)
{
    return node->name;
}

uint32_t tether_node_creation(const tether_node_t *node)
{
    return node->creation;
}

uint16_t tether_node_port(const tether_node_t *node)
{
    return node->port;
}

void tether_node_stats(const tether_node_t *node, tether_node_stats_t *st)
{
    *st = node->stats;
}

const tether_node_config_t *tether__node_config(const tether_node_t *node)
{
    return &node->cfg;
}
