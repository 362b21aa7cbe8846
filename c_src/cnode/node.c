/*
 * cnode/node.c: the C-node runtime (see node.h).
 *
 * One epoll instance watches the listen socket, the epmd registration
 * socket, an eventfd (posts from other threads and stop), an optional
 * signalfd, and every peer connection. Timers (handshake deadlines, ticks,
 * user timers) are kept in the loop and turned into the epoll timeout.
 *
 * A connection moves through these states:
 *
 *   EPMD_CONNECTING  outgoing: non-blocking connect to the peer's epmd
 *        | writable, SO_ERROR 0: PORT_PLEASE2 sent
 *   EPMD_WAIT        reading PORT2_RESP; found: connect to the port
 *   CONNECTING       non-blocking connect to the peer node
 *        | writable: handshake as initiator
 *   HANDSHAKE        (accepted sockets start here, as acceptor)
 *        | tether__hs_done()
 *   UP               frames in (reader) and out (control encoders)
 *
 * Any state may be left for CLOSING (error, timeout, EOF, peer not
 * reading); a closing connection is reaped at the end of the loop
 * iteration, and if its peer had been reached or operations were queued
 * for it, the process table hears tether_procs_node_down() (links and
 * monitors get noconnection). Closing is always deferred so that the
 * process table is never re-entered from its own output callback.
 *
 * Operations for a peer that is not UP yet are kept as pending copies and
 * encoded once the handshake tells which flags the peer has.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cnode/api.h"
#include "cnode/builtins.h"
#include "cnode/node.h"
#include "dist/control.h"
#include "dist/epmd.h"
#include "dist/flags.h"
#include "dist/frame.h"
#include "dist/handshake.h"

#define EPOLL_BATCH       64
#define READ_CHUNK        ((size_t)64 << 10)
#define READ_MAX_PER_WAKE ((size_t)1 << 20)
#define EPMD_TIMEOUT_MS   5000
#define HK_MIN_MS         100
#define HK_MAX_MS         1000
#define LISTEN_BACKLOG    128
#define PENDING_MAX       ((size_t)16 << 20)
#define RUN_BUDGET        4096
#define TICK_ANSWER_MS    250

/*
 * An outgoing SPAWN_REQUEST travels through the same pending queue as the
 * process table's operations; this kind is private to the runtime. Its
 * pending copy keeps module in from_name, function in to_name, the group
 * leader in `to` and the argument list in msg.
 */
#define OUT_SPAWN_REQUEST ((tether_out_kind_t)100)

typedef enum {
    W_LISTEN = 1,
    W_EPMD,
    W_EVENT,
    W_SIGNAL,
    W_CONN,
} watch_kind_t;

typedef struct watch {
    watch_kind_t kind;
} watch_t;

typedef enum {
    C_EPMD_CONNECTING = 1,
    C_EPMD_WAIT,
    C_CONNECTING,
    C_HANDSHAKE,
    C_UP,
    C_WAIT_PEER, /* our dial lost a simultaneous connect: no socket, the
                    peer's own connection to us is expected */
} cstate_t;

/* A copy of an operation waiting for its connection to come up. */
typedef struct pending {
    struct pending *next;
    tether_out_kind_t kind;
    bool has_from, has_to, has_ref;
    erlang_pid from, to;
    erlang_ref ref;
    char from_name[TETHER_ATOM_MAX];
    char to_name[TETHER_ATOM_MAX];
    uint64_t id;
    size_t len;
    char msg[];
} pending_t;

typedef struct conn {
    watch_t w; /* first: epoll data points here */
    struct conn *next, *prev;
    struct conn *cnext; /* close list */
    tether_node_t *node;
    int fd;
    cstate_t state;
    bool initiator;
    bool closing;
    bool was_up;
    bool want_out;
    bool dirty;
    char peer[TETHER_ATOM_MAX];
    struct sockaddr_in addr;
    char where[32]; /* "ADDR:PORT" of an accepted peer, for logs */
    uint16_t epmd_highest;
    tether_hs_t *hs;
    tether_dist_reader_t *reader;
    uint64_t dflags;
    uint8_t *in;
    size_t in_len, in_cap;
    ei_x_buff out;
    size_t out_off;
    pending_t *phead, *ptail;
    size_t pending_bytes;
    uint64_t deadline_ms;
    uint64_t last_rx_ms, last_tx_ms;
} conn_t;

typedef struct post {
    struct post *next;
    tether_node_post_fn fn;
    void *arg;
} post_t;

typedef struct timer {
    struct timer *next;
    uint64_t at_ms;
    tether_timer_id_t id;
    tether_node_post_fn fn;
    void *arg;
} ntimer_t;

struct tether_node {
    tether_node_config_t cfg;
    char name[TETHER_ATOM_MAX];
    char cookie[TETHER_NODE_COOKIE_MAX + 1];
    char listen_addr[INET_ADDRSTRLEN];
    char prefix[64];
    uint64_t our_flags;
    uint32_t creation;
    uint16_t port;
    int epfd;
    int listen_fd, epmd_fd, event_fd, signal_fd;
    watch_t w_listen, w_epmd, w_event, w_signal;
    conn_t *conns;
    conn_t *closing;
    tether_procs_t *procs;
    tether_node_stats_t stats;
    atomic_bool stop;
    pthread_mutex_t post_lock;
    post_t *posts;
    bool post_closed;
    ntimer_t *timers;
    tether_timer_id_t timer_seq;
    uint64_t next_hk_ms;
    uint64_t tick_ms;
    uint8_t *scratch;
    size_t scratch_cap;
    tether_spawn_fn spawn_fn;
    void *spawn_ctx;
    tether_spawn_out_ops_t spawn_out;
    void *spawn_out_ctx;
    tether_log_fn log_fn;
    void *log_ctx;
    atomic_int log_level;
    atomic_bool running;
    pthread_t loop_thread;
    void *api;
    tether_node_conn_fn conn_fn;
    void *conn_ctx;
    void *cluster;
};

/* ---- small helpers ------------------------------------------------- */

uint64_t tether_node_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

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

#define LOG(node, lvl, ...) tether__node_log((node), (lvl), __VA_ARGS__)

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -1;
    return 0;
}

static int ep_add(tether_node_t *node, int fd, uint32_t events, watch_t *w)
{
    struct epoll_event ev = {.events = events, .data.ptr = w};
    return epoll_ctl(node->epfd, EPOLL_CTL_ADD, fd, &ev);
}

static int ep_mod(tether_node_t *node, int fd, uint32_t events, watch_t *w)
{
    struct epoll_event ev = {.events = events, .data.ptr = w};
    return epoll_ctl(node->epfd, EPOLL_CTL_MOD, fd, &ev);
}

/* Splits "alive@host"; returns a pointer to host or NULL. */
static const char *host_part(const char *name)
{
    const char *at = strchr(name, '@');
    return at ? at + 1 : NULL;
}

/* Resolves a node's host: IPv4 literals and "localhost" only. */
static int resolve_host(const char *host, struct in_addr *addr)
{
    if (strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    return inet_pton(AF_INET, host, addr) == 1 ? 0 : TETHER_ENOTFOUND;
}

/* ---- connections --------------------------------------------------- */

static conn_t *conn_new(tether_node_t *node, int fd, cstate_t state)
{
    conn_t *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    if (ei_x_new(&c->out) < 0) {
        free(c);
        return NULL;
    }
    c->w.kind = W_CONN;
    c->node = node;
    c->fd = fd;
    c->state = state;
    uint64_t now = tether_node_now_ms();
    c->deadline_ms = now + node->cfg.hs_timeout_ms;
    c->last_rx_ms = c->last_tx_ms = now;
    c->next = node->conns;
    if (node->conns)
        node->conns->prev = c;
    node->conns = c;
    return c;
}

static const char *conn_label(const conn_t *c)
{
    if (c->peer[0])
        return c->peer;
    if (c->hs && tether__hs_peer_name(c->hs)[0])
        return tether__hs_peer_name(c->hs);
    return c->where[0] ? c->where : "(unknown peer)";
}

/*
 * Marks c for closing with a reason logged at `level` (-1: not logged);
 * the socket is closed and the table told in reap().
 */
static void conn_close(conn_t *c, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void conn_close(conn_t *c, int level, const char *fmt, ...)
{
    tether_node_t *node = c->node;
    if (c->closing)
        return;
    c->closing = true;
    c->cnext = node->closing;
    node->closing = c;
    if (level >= 0 && fmt) {
        char why[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, sizeof why, fmt, ap);
        va_end(ap);
        LOG(node, level, "%s", why);
    }
}

static void pending_free_all(conn_t *c)
{
    while (c->phead) {
        pending_t *p = c->phead;
        c->phead = p->next;
        free(p);
    }
    c->ptail = NULL;
    c->pending_bytes = 0;
}

/* Unlinks and frees c; tells the table when the peer is lost. */
static void conn_destroy(conn_t *c)
{
    tether_node_t *node = c->node;
    bool tell = c->peer[0] && (c->was_up || c->phead != NULL || c->initiator);
    if (c->fd >= 0) {
        epoll_ctl(node->epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        node->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->hs) {
        tether__hs_fini(c->hs);
        free(c->hs);
    }
    tether__reader_free(c->reader);
    pending_free_all(c);
    ei_x_free(&c->out);
    free(c->in);
    char peer[TETHER_ATOM_MAX];
    memcpy(peer, c->peer, sizeof peer);
    free(c);
    if (tell) {
        /* Only if no other live connection serves the same peer. */
        for (conn_t *o = node->conns; o; o = o->next)
            if (!o->closing && o->state == C_UP && strcmp(o->peer, peer) == 0)
                return;
        tether_procs_node_down(node->procs, peer);
        if (node->spawn_out.nodedown)
            node->spawn_out.nodedown(node, peer, node->spawn_out_ctx);
        if (node->conn_fn)
            node->conn_fn(node, peer, false, node->conn_ctx);
    }
}

/* Closes every connection marked closing; returns how many. */
static size_t reap(tether_node_t *node)
{
    size_t n = 0;
    while (node->closing) {
        conn_t *c = node->closing;
        node->closing = c->cnext;
        conn_destroy(c);
        n++;
    }
    return n;
}

static void conn_update_events(conn_t *c)
{
    bool want = c->out.index > (int)c->out_off ||
                c->state == C_EPMD_CONNECTING || c->state == C_CONNECTING;
    if (want == c->want_out)
        return;
    c->want_out = want;
    uint32_t ev = EPOLLIN | EPOLLRDHUP | (want ? EPOLLOUT : 0);
    if (c->state == C_EPMD_CONNECTING || c->state == C_CONNECTING)
        ev = EPOLLOUT;
    ep_mod(c->node, c->fd, ev, &c->w);
}

/* Writes as much of c's output as the socket takes. */
static void conn_flush(conn_t *c)
{
    c->dirty = false;
    if (c->closing || c->fd < 0 || c->state == C_EPMD_CONNECTING ||
        c->state == C_CONNECTING || c->state == C_WAIT_PEER)
        return;
    while (c->out.index > (int)c->out_off) {
        size_t left = (size_t)c->out.index - c->out_off;
        ssize_t n = send(c->fd, c->out.buff + c->out_off, left, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        conn_close(c, c->was_up ? TETHER_LOG_INFO : TETHER_LOG_DEBUG,
                   "connection to '%s' lost: %s", conn_label(c),
                   n < 0 ? strerror(errno) : "write returned 0");
        return;
    }
    if (c->out_off == (size_t)c->out.index) {
        c->out_off = 0;
        c->out.index = 0;
    } else if (c->out_off > ((size_t)1 << 20) &&
               c->out_off > (size_t)c->out.index / 2) {
        memmove(c->out.buff, c->out.buff + c->out_off,
                (size_t)c->out.index - c->out_off);
        c->out.index -= (int)c->out_off;
        c->out_off = 0;
    }
    conn_update_events(c);
}

static void mark_dirty(conn_t *c)
{
    c->dirty = true;
}

/* Appends raw bytes to c's output. */
static int conn_append(conn_t *c, const void *buf, size_t len)
{
    if (ei_x_append_buf(&c->out, buf, (int)len) < 0)
        return TETHER_ENOMEM;
    mark_dirty(c);
    return 0;
}

/* Drops c if it holds more unsent bytes than allowed. */
static void check_outbuf(conn_t *c)
{
    size_t unsent = (size_t)c->out.index - c->out_off;
    if (unsent <= c->node->cfg.outbuf_max)
        return;
    c->node->stats.dropped_connections++;
    conn_close(c, TETHER_LOG_WARNING,
               "dropping connection to '%s': it does not read "
               "(%zu bytes unsent)",
               conn_label(c), unsent);
}

/* ---- encoding operations ------------------------------------------ */

static const erlang_pid *
from_or_dummy(tether_node_t *node, const erlang_pid *from, erlang_pid *dummy)
{
    if (from)
        return from;
    memset(dummy, 0, sizeof *dummy);
    memcpy(dummy->node, node->name, strlen(node->name) + 1);
    dummy->creation = node->creation;
    return dummy;
}

static void ctl_proc(tether_ctl_proc_t *p, const erlang_pid *pid,
                     const char *name)
{
    memset(p, 0, sizeof *p);
    if (name) {
        p->is_name = 1;
        snprintf(p->name, sizeof p->name, "%s", name);
    } else if (pid) {
        p->pid = *pid;
    }
}

/* Encodes op into c's output (c is UP). */
static int encode_op(conn_t *c, const tether_out_t *op)
{
    tether_node_t *node = c->node;
    ei_x_buff *x = &c->out;
    uint64_t f = c->dflags;
    const uint8_t *m = (const uint8_t *)op->msg;
    erlang_pid dummy;
    const erlang_pid *from = from_or_dummy(node, op->from, &dummy);
    tether_ctl_proc_t cp;
    int rc;
    switch ((int)op->kind) {
    case TETHER_OUT_SEND:
        rc = tether__ctl_encode_send(x, f, from, op->to, m, op->msg_len);
        break;
    case TETHER_OUT_REG_SEND:
        rc = tether__ctl_encode_reg_send(x, f, from, op->to_name, m,
                                         op->msg_len);
        break;
    case TETHER_OUT_ALIAS_SEND:
        rc = tether__ctl_encode_alias_send(x, f, from, op->ref, m, op->msg_len);
        break;
    case TETHER_OUT_LINK:
        rc = tether__ctl_encode_link(x, f, from, op->to);
        break;
    case TETHER_OUT_UNLINK_ID:
        rc = tether__ctl_encode_unlink_id(x, f, op->id, from, op->to);
        break;
    case TETHER_OUT_UNLINK_ID_ACK:
        rc = tether__ctl_encode_unlink_id_ack(x, f, op->id, from, op->to);
        break;
    case TETHER_OUT_EXIT:
        rc = tether__ctl_encode_exit(x, f, from, op->to, m, op->msg_len);
        break;
    case TETHER_OUT_EXIT2:
        rc = tether__ctl_encode_exit2(x, f, from, op->to, m, op->msg_len);
        break;
    case TETHER_OUT_MONITOR:
        ctl_proc(&cp, op->to, op->to_name);
        rc = tether__ctl_encode_monitor_p(x, f, from, &cp, op->ref);
        break;
    case TETHER_OUT_DEMONITOR:
        ctl_proc(&cp, op->to, op->to_name);
        rc = tether__ctl_encode_demonitor_p(x, f, from, &cp, op->ref);
        break;
    case TETHER_OUT_MONITOR_EXIT:
        ctl_proc(&cp, op->from, op->from_name);
        rc = tether__ctl_encode_monitor_p_exit(x, f, &cp, op->to, op->ref, m,
                                               op->msg_len);
        break;
    case OUT_SPAWN_REQUEST: {
        /* [monitor] */
        static const uint8_t opts[] = {108, 0,   0,   0,   1,   119, 7,  'm',
                                       'o', 'n', 'i', 't', 'o', 'r', 106};
        int idx = 1, type = 0, size = 0;
        if (op->msg_len < 2 || (unsigned char)op->msg[0] != 131 ||
            ei_get_type(op->msg, &idx, &type, &size) < 0) {
            rc = TETHER_EINVAL;
            break;
        }
        if (type == ERL_NIL_EXT)
            size = 0;
        rc = tether__ctl_encode_spawn_request(
            x, f, op->ref, from, op->to, op->from_name, op->to_name, size, opts,
            sizeof opts, m, op->msg_len);
        break;
    }
    default:
        rc = TETHER_EINVAL;
    }
    if (rc < 0) {
        LOG(node, TETHER_LOG_WARNING,
            "could not encode operation %d for '%s': %s", (int)op->kind,
            c->peer, tether_strerror(rc));
        return rc;
    }
    c->last_tx_ms = tether_node_now_ms();
    mark_dirty(c);
    check_outbuf(c);
    return 0;
}

static int queue_pending(conn_t *c, const tether_out_t *op)
{
    if (c->pending_bytes + op->msg_len > PENDING_MAX) {
        c->node->stats.dropped_connections++;
        conn_close(c, TETHER_LOG_WARNING,
                   "dropping connection to '%s': too much queued before "
                   "the handshake",
                   conn_label(c));
        return TETHER_ETOOBIG;
    }
    pending_t *p = calloc(1, sizeof *p + op->msg_len);
    if (p == NULL)
        return TETHER_ENOMEM;
    p->kind = op->kind;
    if (op->from) {
        p->has_from = true;
        p->from = *op->from;
    }
    if (op->to) {
        p->has_to = true;
        p->to = *op->to;
    }
    if (op->ref) {
        p->has_ref = true;
        p->ref = *op->ref;
    }
    if (op->from_name)
        snprintf(p->from_name, sizeof p->from_name, "%s", op->from_name);
    if (op->to_name)
        snprintf(p->to_name, sizeof p->to_name, "%s", op->to_name);
    p->id = op->id;
    p->len = op->msg_len;
    if (op->msg_len)
        memcpy(p->msg, op->msg, op->msg_len);
    if (c->ptail)
        c->ptail->next = p;
    else
        c->phead = p;
    c->ptail = p;
    c->pending_bytes += op->msg_len;
    return 0;
}

static void flush_pending(conn_t *c)
{
    while (c->phead && !c->closing) {
        pending_t *p = c->phead;
        c->phead = p->next;
        tether_out_t op = {
            .kind = p->kind,
            .node = c->peer,
            .from = p->has_from ? &p->from : NULL,
            .from_name = p->from_name[0] ? p->from_name : NULL,
            .to = p->has_to ? &p->to : NULL,
            .to_name = p->to_name[0] ? p->to_name : NULL,
            .ref = p->has_ref ? &p->ref : NULL,
            .id = p->id,
            .msg = p->len ? p->msg : NULL,
            .msg_len = p->len,
        };
        (void)encode_op(c, &op);
        free(p);
    }
    if (c->phead == NULL)
        c->ptail = NULL;
    c->pending_bytes = 0;
}

static conn_t *find_conn(tether_node_t *node, const char *peer)
{
    conn_t *best = NULL;
    for (conn_t *c = node->conns; c; c = c->next) {
        if (c->closing || strcmp(c->peer, peer) != 0)
            continue;
        if (c->state == C_UP)
            return c;
        if (best == NULL)
            best = c;
    }
    return best;
}

/* ---- outgoing connections ----------------------------------------- */

static int connect_to(tether_node_t *node, const struct sockaddr_in *sa,
                      int *fdp)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return TETHER_EIO;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (const struct sockaddr *)sa, sizeof *sa) < 0 &&
        errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        LOG(node, TETHER_LOG_DEBUG, "connect failed: %s", strerror(e));
        return TETHER_EIO;
    }
    *fdp = fd;
    return 0;
}

/* Starts a connection to `peer`: epmd lookup first. */
static conn_t *conn_dial(tether_node_t *node, const char *peer)
{
    const char *host = host_part(peer);
    struct in_addr ia;
    if (host == NULL || resolve_host(host, &ia) < 0) {
        LOG(node, TETHER_LOG_WARNING,
            "cannot connect to '%s': host is not an IPv4 address", peer);
        return NULL;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons(node->cfg.epmd_port),
                             .sin_addr = ia};
    conn_t *c = conn_new(node, -1, C_EPMD_CONNECTING);
    if (c == NULL)
        return NULL;
    c->initiator = true;
    snprintf(c->peer, sizeof c->peer, "%s", peer);
    c->addr = sa;
    int fd;
    if (connect_to(node, &sa, &fd) < 0) {
        conn_close(c, TETHER_LOG_WARNING,
                   "cannot connect to '%s': epmd unreachable", peer);
        return c;
    }
    c->fd = fd;
    c->want_out = true;
    if (ep_add(node, fd, EPOLLOUT, &c->w) < 0)
        conn_close(c, TETHER_LOG_ERROR, "epoll_ctl: %s", strerror(errno));
    return c;
}

/* The process table's output callback. */
static int node_out(void *ctx, const tether_out_t *op)
{
    tether_node_t *node = ctx;
    if (op->node == NULL || strcmp(op->node, node->name) == 0)
        return TETHER_EINVAL;
    conn_t *c = find_conn(node, op->node);
    if (c == NULL) {
        c = conn_dial(node, op->node);
        if (c == NULL)
            return TETHER_ECLOSED;
    }
    if (c->state == C_UP)
        return encode_op(c, op);
    return queue_pending(c, op);
}

static int so_error(int fd)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return errno;
    return err;
}

static uint32_t random_u32(void)
{
    uint32_t v = 0;
    if (getrandom(&v, sizeof v, 0) != sizeof v)
        v = (uint32_t)tether_node_now_ms() ^ (uint32_t)getpid();
    return v;
}

static tether_hs_status_t hs_status(void *ctx, const char *peer_name,
                                    uint64_t peer_flags,
                                    uint32_t peer_creation);

static int start_handshake(conn_t *c, tether_hs_role_t role)
{
    tether_node_t *node = c->node;
    c->hs = malloc(sizeof *c->hs);
    if (c->hs == NULL)
        return TETHER_ENOMEM;
    int rc = tether__hs_init(c->hs, role, node->name, node->cookie,
                             node->our_flags, node->creation, random_u32());
    if (rc < 0)
        return rc;
    if (role == TETHER_HS_ACCEPTOR)
        tether__hs_set_status_fn(c->hs, hs_status, c);
    else if (c->epmd_highest != 0 && c->epmd_highest < 6)
        (void)tether__hs_set_v5_opener(c->hs);
    c->state = C_HANDSHAKE;
    return 0;
}

/* Moves handshake output into the connection's output buffer. */
static void hs_pump_output(conn_t *c)
{
    size_t n;
    const uint8_t *o = tether__hs_output(c->hs, &n);
    if (n) {
        if (conn_append(c, o, n) == 0)
            tether__hs_consume_output(c->hs, n);
    }
}

static void on_connected(conn_t *c)
{
    tether_node_t *node = c->node;
    int err = so_error(c->fd);
    if (err) {
        conn_close(c, TETHER_LOG_WARNING, "cannot connect to '%s'%s: %s",
                   c->peer, c->state == C_EPMD_CONNECTING ? " (its epmd)" : "",
                   strerror(err));
        return;
    }
    if (c->state == C_EPMD_CONNECTING) {
        uint8_t req[TETHER_EPMD_REQ_MAX];
        size_t n;
        const char *at = strchr(c->peer, '@');
        if (tether__epmd_encode_port_please2(req, sizeof req, &n, c->peer,
                                             (size_t)(at - c->peer)) < 0 ||
            conn_append(c, req, n) < 0) {
            conn_close(c, TETHER_LOG_WARNING, "bad node name '%s'", c->peer);
            return;
        }
        c->state = C_EPMD_WAIT;
        c->want_out = true; /* force an epoll update */
        ep_mod(node, c->fd, EPOLLIN | EPOLLRDHUP | EPOLLOUT, &c->w);
        conn_flush(c);
        return;
    }
    /* C_CONNECTING */
    if (start_handshake(c, TETHER_HS_INITIATOR) < 0) {
        conn_close(c, TETHER_LOG_ERROR, "handshake with '%s' failed: %s",
                   c->peer, "could not start");
        return;
    }
    c->want_out = true;
    ep_mod(node, c->fd, EPOLLIN | EPOLLRDHUP | EPOLLOUT, &c->w);
    hs_pump_output(c);
    conn_flush(c);
}

/* ---- input --------------------------------------------------------- */

/* Returns buf[slice] as a 131-prefixed term (in node scratch or in place). */
static const char *versioned_term(tether_node_t *node, const uint8_t *buf,
                                  const tether_etf_slice_t *s, int versioned,
                                  size_t *len)
{
    if (s->len == 0)
        return NULL;
    if (versioned && s->off > 0 && buf[s->off - 1] == 131) {
        *len = s->len + 1;
        return (const char *)buf + s->off - 1;
    }
    if (node->scratch_cap < s->len + 1) {
        size_t cap = s->len + 1 < 4096 ? 4096 : s->len + 1;
        uint8_t *p = realloc(node->scratch, cap);
        if (p == NULL)
            return NULL;
        node->scratch = p;
        node->scratch_cap = cap;
    }
    node->scratch[0] = 131;
    memcpy(node->scratch + 1, buf + s->off, s->len);
    *len = s->len + 1;
    return (const char *)node->scratch;
}

/* Sends SPAWN_REPLY with an error atom (notsup, badarg, system_limit). */
static void refuse_spawn(conn_t *c, const tether_ctl_t *ctl, const char *why)
{
    char reason[TETHER_ATOM_TERM_MAX];
    size_t rl = tether_term_atom(reason, sizeof reason, why);
    if (tether__ctl_encode_spawn_reply(&c->out, c->dflags, &ctl->ref,
                                       &ctl->from.pid, 0, NULL,
                                       (const uint8_t *)reason, rl) == 0)
        mark_dirty(c);
}

/* Reads the link and monitor options out of a validated OptList. */
static long spawn_opt_flags(const uint8_t *buf, const tether_etf_slice_t *s)
{
    long flags = 0;
    int idx = (int)s->off, n, type, size;
    const char *b = (const char *)buf;
    if (s->len == 0 || ei_get_type(b, &idx, &type, &size) < 0 ||
        type != ERL_LIST_EXT || ei_decode_list_header(b, &idx, &n) < 0)
        return 0;
    for (int i = 0; i < n; i++) {
        char a[MAXATOMLEN_UTF8];
        int at = idx, tarity;
        /* {monitor, MonitorOpts} (erpc:multicall) counts as monitor. */
        if (ei_decode_tuple_header(b, &at, &tarity) == 0 && tarity == 2 &&
            ei_decode_atom(b, &at, a) == 0) {
            if (strcmp(a, "monitor") == 0)
                flags |= TETHER_SPAWN_FLAG_MONITOR;
        } else if (at = idx, ei_decode_atom(b, &at, a) == 0) {
            if (strcmp(a, "link") == 0)
                flags |= TETHER_SPAWN_FLAG_LINK;
            else if (strcmp(a, "monitor") == 0)
                flags |= TETHER_SPAWN_FLAG_MONITOR;
        }
        if (ei_skip_term(b, &idx) < 0)
            break;
    }
    return flags;
}

/*
 * SPAWN_REQUEST: without a spawn hook the answer is notsup. With one, the
 * hook starts a process; the runtime replies with its pid and sets up the
 * link and monitor the requester asked for, in that order, before the
 * new process handles any message (so its exit reason, e.g. erpc's
 * {Ref, return, Value}, reaches the requester as DOWN).
 */
static void handle_spawn(conn_t *c, const tether_dist_msg_t *dm,
                         const tether_ctl_t *ctl)
{
    tether_node_t *node = c->node;
    if (node->spawn_fn == NULL) {
        refuse_spawn(c, ctl, "notsup");
        return;
    }
    size_t alen = 0, olen = 0;
    const char *args = NULL, *opts = NULL;
    char *args_copy = NULL;
    args = versioned_term(node, dm->data, &ctl->message, dm->versioned, &alen);
    if (args && args == (const char *)node->scratch) {
        /* The scratch buffer is reused for the options below. */
        args_copy = malloc(alen);
        if (args_copy == NULL) {
            refuse_spawn(c, ctl, "system_limit");
            return;
        }
        memcpy(args_copy, args, alen);
        args = args_copy;
    }
    opts =
        versioned_term(node, dm->data, &ctl->spawn_opts, dm->versioned, &olen);
    tether_spawn_req_t req = {
        .peer = c->peer,
        .req_id = &ctl->ref,
        .from = &ctl->from.pid,
        .group_leader = &ctl->group_leader,
        .module = ctl->module,
        .function = ctl->function,
        .arity = ctl->arity,
        .args = args,
        .args_len = alen,
        .opts = opts,
        .opts_len = olen,
    };
    erlang_pid pid;
    const char *why = "notsup";
    int rc = node->spawn_fn(node, &req, &pid, &why, node->spawn_ctx);
    free(args_copy);
    if (rc < 0) {
        refuse_spawn(c, ctl, why ? why : "notsup");
        return;
    }
    long flags = spawn_opt_flags(dm->data, &ctl->spawn_opts);
    if (tether__ctl_encode_spawn_reply(&c->out, c->dflags, &ctl->ref,
                                       &ctl->from.pid, flags, &pid, NULL,
                                       0) == 0)
        mark_dirty(c);
    if (flags & TETHER_SPAWN_FLAG_LINK)
        tether_procs_link_in(node->procs, &ctl->from.pid, &pid);
    if (flags & TETHER_SPAWN_FLAG_MONITOR)
        tether_procs_monitor_in(node->procs, &ctl->from.pid, &pid, NULL,
                                &ctl->ref);
}

static void dispatch(conn_t *c, const tether_dist_msg_t *dm)
{
    tether_node_t *node = c->node;
    tether_procs_t *procs = node->procs;
    tether_ctl_t ctl;
    int rc = tether__ctl_decode(dm->data, dm->len, dm->versioned, &ctl);
    if (rc == TETHER_EUNSUPP) {
        node->stats.unknown_control++;
        LOG(node, TETHER_LOG_WARNING,
            "unknown control message %d from '%s' ignored", ctl.op, c->peer);
        return;
    }
    if (rc < 0) {
        node->stats.malformed_frames++;
        LOG(node, TETHER_LOG_WARNING,
            "malformed control message from '%s' ignored (%s)", c->peer,
            tether_strerror(rc));
        return;
    }
    node->stats.msgs_in++;
    const uint8_t *b = dm->data;
    int v = dm->versioned;
    size_t len = 0;
    const char *t;
    switch (ctl.op) {
    case TETHER_DOP_SEND:
    case TETHER_DOP_SEND_TT:
        t = versioned_term(node, b, &ctl.message, v, &len);
        if (t)
            tether_procs_send_in(procs, NULL, &ctl.to.pid, t, len);
        break;
    case TETHER_DOP_SEND_SENDER:
    case TETHER_DOP_SEND_SENDER_TT:
        t = versioned_term(node, b, &ctl.message, v, &len);
        if (t)
            tether_procs_send_in(procs, &ctl.from.pid, &ctl.to.pid, t, len);
        break;
    case TETHER_DOP_REG_SEND:
    case TETHER_DOP_REG_SEND_TT:
        t = versioned_term(node, b, &ctl.message, v, &len);
        if (t)
            tether_procs_reg_send_in(procs, &ctl.from.pid, ctl.to.name, t, len);
        break;
    case TETHER_DOP_ALIAS_SEND:
    case TETHER_DOP_ALIAS_SEND_TT:
        t = versioned_term(node, b, &ctl.message, v, &len);
        if (t)
            tether_procs_alias_send_in(procs, &ctl.from.pid, &ctl.ref, t, len);
        break;
    case TETHER_DOP_LINK:
        tether_procs_link_in(procs, &ctl.from.pid, &ctl.to.pid);
        break;
    case TETHER_DOP_UNLINK:
    case TETHER_DOP_UNLINK_ID:
        tether_procs_unlink_in(procs, &ctl.from.pid, &ctl.to.pid,
                               ctl.unlink_id);
        break;
    case TETHER_DOP_UNLINK_ID_ACK:
        tether_procs_unlink_ack_in(procs, &ctl.from.pid, &ctl.to.pid,
                                   ctl.unlink_id);
        break;
    case TETHER_DOP_EXIT:
    case TETHER_DOP_EXIT_TT:
    case TETHER_DOP_PAYLOAD_EXIT:
    case TETHER_DOP_PAYLOAD_EXIT_TT:
    case TETHER_DOP_EXIT2:
    case TETHER_DOP_EXIT2_TT:
    case TETHER_DOP_PAYLOAD_EXIT2:
    case TETHER_DOP_PAYLOAD_EXIT2_TT: {
        bool exit2 = ctl.op == TETHER_DOP_EXIT2 ||
                     ctl.op == TETHER_DOP_EXIT2_TT ||
                     ctl.op == TETHER_DOP_PAYLOAD_EXIT2 ||
                     ctl.op == TETHER_DOP_PAYLOAD_EXIT2_TT;
        t = versioned_term(node, b, &ctl.reason, v, &len);
        if (t)
            tether_procs_exit_in(procs, &ctl.from.pid, &ctl.to.pid, t, len,
                                 exit2);
        break;
    }
    case TETHER_DOP_MONITOR_P:
        tether_procs_monitor_in(procs, &ctl.from.pid,
                                ctl.to.is_name ? NULL : &ctl.to.pid,
                                ctl.to.is_name ? ctl.to.name : NULL, &ctl.ref);
        break;
    case TETHER_DOP_DEMONITOR_P:
        tether_procs_demonitor_in(
            procs, &ctl.from.pid, ctl.to.is_name ? NULL : &ctl.to.pid,
            ctl.to.is_name ? ctl.to.name : NULL, &ctl.ref);
        break;
    case TETHER_DOP_MONITOR_P_EXIT:
    case TETHER_DOP_PAYLOAD_MONITOR_P_EXIT:
        t = versioned_term(node, b, &ctl.reason, v, &len);
        if (t && node->spawn_out.down &&
            node->spawn_out.down(node, &ctl.ref, t, len, node->spawn_out_ctx))
            break;
        if (t)
            tether_procs_monitor_exit_in(
                procs, ctl.from.is_name ? NULL : &ctl.from.pid,
                ctl.from.is_name ? ctl.from.name : NULL, c->peer, &ctl.to.pid,
                &ctl.ref, t, len);
        break;
    case TETHER_DOP_SPAWN_REQUEST:
    case TETHER_DOP_SPAWN_REQUEST_TT:
        handle_spawn(c, dm, &ctl);
        break;
    case TETHER_DOP_SPAWN_REPLY:
    case TETHER_DOP_SPAWN_REPLY_TT:
        if (node->spawn_out.reply == NULL)
            break;
        if (ctl.result_is_pid) {
            node->spawn_out.reply(node, &ctl.ref, &ctl.result_pid, NULL, 0,
                                  node->spawn_out_ctx);
        } else {
            t = versioned_term(node, b, &ctl.result, v, &len);
            if (t)
                node->spawn_out.reply(node, &ctl.ref, NULL, t, len,
                                      node->spawn_out_ctx);
        }
        break;
    default:
        /* NODE_LINK, GROUP_LEADER, SPAWN_REPLY: nothing to do yet. */
        LOG(node, TETHER_LOG_DEBUG, "control message %s from '%s' ignored",
            tether__ctl_op_name(ctl.op), c->peer);
        break;
    }
}

static tether_hs_status_t hs_status(void *ctx, const char *peer_name,
                                    uint64_t peer_flags, uint32_t peer_creation)
{
    conn_t *c = ctx;
    tether_node_t *node = c->node;
    (void)peer_flags;
    (void)peer_creation;
    for (conn_t *o = node->conns; o; o = o->next) {
        if (o == c || o->closing || strcmp(o->peer, peer_name) != 0)
            continue;
        if (o->state == C_UP)
            return TETHER_HS_STATUS_ALIVE;
        if (o->initiator && o->state != C_WAIT_PEER) {
            /* Simultaneous connect: the greater name keeps its own. */
            if (strcmp(node->name, peer_name) > 0)
                return TETHER_HS_STATUS_NOK;
            return TETHER_HS_STATUS_OK_SIMULTANEOUS;
        }
    }
    return TETHER_HS_STATUS_OK;
}

/* The handshake finished: c becomes the peer's connection. */
static void hs_done(conn_t *c)
{
    tether_node_t *node = c->node;
    const char *hs_peer = tether__hs_peer_name(c->hs);
    if (c->initiator && strcmp(hs_peer, c->peer) != 0) {
        node->stats.bad_handshakes++;
        conn_close(c, TETHER_LOG_WARNING,
                   "handshake with '%s' failed: the node at its port is "
                   "'%s'",
                   c->peer, hs_peer);
        return;
    }
    snprintf(c->peer, sizeof c->peer, "%s", hs_peer);
    c->dflags = tether__hs_flags(c->hs);
    /* Replace an older connection (the peer restarted) or take over the
     * queue of our own dial that lost a simultaneous connect. */
    for (conn_t *o = node->conns; o; o = o->next) {
        if (o == c || o->closing || strcmp(o->peer, c->peer) != 0)
            continue;
        while (o->phead) {
            pending_t *p = o->phead;
            o->phead = p->next;
            p->next = NULL;
            if (c->ptail)
                c->ptail->next = p;
            else
                c->phead = p;
            c->ptail = p;
        }
        o->ptail = NULL;
        o->pending_bytes = 0;
        bool old_up = o->state == C_UP;
        o->peer[0] = '\0'; /* told below, not when reaped */
        conn_close(o, old_up ? TETHER_LOG_INFO : TETHER_LOG_DEBUG,
                   "connection to '%s' replaced", c->peer);
        /* The old incarnation's links and monitors end before c is up. */
        if (old_up) {
            tether_procs_node_down(node->procs, c->peer);
            if (node->conn_fn)
                node->conn_fn(node, c->peer, false, node->conn_ctx);
        }
    }
    tether__hs_fini(c->hs);
    free(c->hs);
    c->hs = NULL;
    c->reader = tether__reader_new(node->cfg.frame_max, 0, 0);
    if (c->reader == NULL) {
        conn_close(c, TETHER_LOG_ERROR, "out of memory");
        return;
    }
    c->state = C_UP;
    c->was_up = true;
    c->last_rx_ms = c->last_tx_ms = tether_node_now_ms();
    if (c->initiator)
        node->stats.connected++;
    else
        node->stats.accepted++;
    LOG(node, TETHER_LOG_INFO, "connection %s '%s' up",
        c->initiator ? "to" : "from", c->peer);
    flush_pending(c);
    if (node->conn_fn)
        node->conn_fn(node, c->peer, true, node->conn_ctx);
}

/* The handshake's failure reason without a leading "peer NAME: ". */
static const char *hs_reason(const conn_t *c)
{
    const char *why = tether__hs_reason(c->hs);
    const char *peer = tether__hs_peer_name(c->hs);
    size_t pl = strlen(peer);
    if (pl && strncmp(why, "peer ", 5) == 0 &&
        strncmp(why + 5, peer, pl) == 0 && strncmp(why + 5 + pl, ": ", 2) == 0)
        return why + 5 + pl + 2;
    return why;
}

/*
 * Our dial was refused with "nok": the peer has a connection attempt of
 * its own under way to us (simultaneous connect, the peer's name wins).
 * Keep the queued operations without a socket until that connection is
 * up (hs_done takes them over) or the handshake deadline passes.
 */
static void wait_for_peer(conn_t *c)
{
    tether_node_t *node = c->node;
    LOG(node, TETHER_LOG_DEBUG,
        "simultaneous connect: waiting for '%s' to connect to us", c->peer);
    epoll_ctl(node->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->state = C_WAIT_PEER;
    c->in_len = 0;
    c->out.index = 0;
    c->out_off = 0;
    tether__hs_fini(c->hs);
    free(c->hs);
    c->hs = NULL;
    c->deadline_ms = tether_node_now_ms() + node->cfg.hs_timeout_ms;
}

/* Feeds c->in to the state machine of c's state; returns bytes used. */
static size_t consume_input(conn_t *c)
{
    tether_node_t *node = c->node;
    size_t off = 0;
    while (!c->closing && off < c->in_len) {
        const uint8_t *buf = c->in + off;
        size_t len = c->in_len - off;
        if (c->state == C_EPMD_WAIT) {
            tether_epmd_port_t pr;
            size_t used;
            int rc = tether__epmd_decode_port2_resp(buf, len, &pr, &used);
            if (rc == TETHER_EAGAIN)
                break;
            if (rc < 0) {
                conn_close(c, TETHER_LOG_WARNING,
                           "cannot connect to '%s': bad reply from its epmd",
                           c->peer);
                break;
            }
            if (pr.result != 0) {
                conn_close(c, TETHER_LOG_INFO,
                           "cannot connect to '%s': not registered in epmd",
                           c->peer);
                break;
            }
            epoll_ctl(node->epfd, EPOLL_CTL_DEL, c->fd, NULL);
            close(c->fd);
            c->fd = -1;
            c->in_len = 0;
            c->out.index = 0;
            c->out_off = 0;
            c->epmd_highest = pr.highest_version;
            struct sockaddr_in sa = c->addr;
            sa.sin_port = htons(pr.port);
            int fd;
            if (connect_to(node, &sa, &fd) < 0) {
                conn_close(c, TETHER_LOG_WARNING, "cannot connect to '%s'",
                           c->peer);
                return 0;
            }
            c->fd = fd;
            c->state = C_CONNECTING;
            c->want_out = true;
            if (ep_add(node, fd, EPOLLOUT, &c->w) < 0)
                conn_close(c, TETHER_LOG_ERROR, "epoll_ctl: %s",
                           strerror(errno));
            return 0; /* buffer was reset */
        }
        if (c->state == C_HANDSHAKE) {
            size_t used = 0;
            int rc = tether__hs_input(c->hs, buf, len, &used);
            off += used;
            hs_pump_output(c);
            if (c->initiator && tether__hs_failed(c->hs) == TETHER_EEXIST) {
                wait_for_peer(c);
                return 0;
            }
            if (!c->initiator && tether__hs_failed(c->hs) == TETHER_EEXIST) {
                /* We answered nok or the peer said false: not an error. */
                conn_flush(c);
                conn_close(c, TETHER_LOG_DEBUG,
                           "simultaneous connect from '%s': keeping ours",
                           conn_label(c));
                break;
            }
            if (rc < 0 || tether__hs_failed(c->hs)) {
                node->stats.bad_handshakes++;
                const char *why = hs_reason(c);
                conn_flush(c); /* a last status message, best effort */
                conn_close(c, TETHER_LOG_WARNING,
                           "handshake with '%s' failed: %s", conn_label(c),
                           why[0] ? why : tether_strerror(rc));
                break;
            }
            if (tether__hs_done(c->hs)) {
                hs_done(c);
                continue;
            }
            if (used == 0)
                break;
            continue;
        }
        if (c->state == C_UP) {
            size_t used = 0;
            tether_dist_ev_t ev;
            int rc = tether__reader_next(c->reader, buf, len, &used, &ev);
            if (rc == TETHER_EAGAIN)
                break;
            if (rc < 0) {
                node->stats.malformed_frames++;
                c->node->stats.dropped_connections++;
                conn_close(c, TETHER_LOG_WARNING,
                           "dropping connection to '%s': bad frame (%s)",
                           c->peer, tether_strerror(rc));
                break;
            }
            off += used;
            if (ev.kind == TETHER_DIST_EV_MSG) {
                dispatch(c, &ev.msg);
            } else if (ev.kind == TETHER_DIST_EV_TICK) {
                /* Answer a tick unless we spoke recently: a peer with a
                 * shorter net_ticktime than ours still hears from us. */
                uint64_t now = tether_node_now_ms();
                if (now - c->last_tx_ms >= TICK_ANSWER_MS &&
                    tether__frame_encode_tick(&c->out) == 0) {
                    c->last_tx_ms = now;
                    node->stats.ticks_out++;
                    mark_dirty(c);
                }
            }
            continue;
        }
        break;
    }
    return off;
}

/* Largest input buffer this state may need. */
static size_t in_limit(const conn_t *c)
{
    if (c->state == C_UP)
        return (size_t)c->node->cfg.frame_max + TETHER_FRAME_LEN_BYTES +
               READ_CHUNK;
    return TETHER_HS_MSG_MAX + READ_CHUNK;
}

static void conn_read(conn_t *c)
{
    size_t total = 0;
    while (!c->closing && total < READ_MAX_PER_WAKE) {
        if (c->in_cap - c->in_len < READ_CHUNK / 4) {
            size_t cap = c->in_cap ? c->in_cap * 2 : READ_CHUNK;
            if (cap > in_limit(c))
                cap = in_limit(c);
            if (cap <= c->in_cap) {
                c->node->stats.malformed_frames++;
                c->node->stats.dropped_connections++;
                conn_close(c, TETHER_LOG_WARNING,
                           "dropping connection to '%s': input too large",
                           conn_label(c));
                return;
            }
            uint8_t *p = realloc(c->in, cap);
            if (p == NULL) {
                conn_close(c, TETHER_LOG_ERROR, "out of memory");
                return;
            }
            c->in = p;
            c->in_cap = cap;
        }
        ssize_t n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0) {
            bool up = c->state == C_UP;
            if (c->state == C_HANDSHAKE)
                c->node->stats.bad_handshakes++;
            conn_close(c,
                       up ? TETHER_LOG_INFO
                          : (c->state == C_HANDSHAKE ? TETHER_LOG_WARNING
                                                     : TETHER_LOG_DEBUG),
                       up ? "connection to '%s' closed%s%s"
                          : (c->state == C_HANDSHAKE
                                 ? "handshake with '%s' failed: connection "
                                   "closed%s%s"
                                 : "connection to '%s' closed%s%s"),
                       conn_label(c), n < 0 ? ": " : "",
                       n < 0 ? strerror(errno) : "");
            break;
        }
        bool drained = (size_t)n < c->in_cap - c->in_len;
        total += (size_t)n;
        c->in_len += (size_t)n;
        c->last_rx_ms = tether_node_now_ms();
        size_t used = consume_input(c);
        if (c->fd < 0 || c->state == C_CONNECTING)
            return;
        if (used > 0) {
            memmove(c->in, c->in + used, c->in_len - used);
            c->in_len -= used;
        }
        /* A short read emptied the socket: epoll (level-triggered) says
         * when more comes, so no recv is spent just to hear EAGAIN. */
        if (drained)
            break;
    }
}

static void on_conn_event(conn_t *c, uint32_t events)
{
    if (c->closing)
        return;
    if (c->state == C_EPMD_CONNECTING || c->state == C_CONNECTING) {
        if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
            on_connected(c);
        return;
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        conn_read(c);
    if (!c->closing && (events & EPOLLOUT))
        conn_flush(c);
}

/* ---- listen, epmd, posts, signals ---------------------------------- */

static void on_accept(tether_node_t *node)
{
    for (;;) {
        struct sockaddr_in sa;
        socklen_t sl = sizeof sa;
        int fd = accept4(node->listen_fd, (struct sockaddr *)&sa, &sl,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                LOG(node, TETHER_LOG_WARNING, "accept: %s", strerror(errno));
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conn_t *c = conn_new(node, fd, C_HANDSHAKE);
        if (c == NULL) {
            close(fd);
            continue;
        }
        char ip[INET_ADDRSTRLEN] = "?";
        inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof ip);
        snprintf(c->where, sizeof c->where, "%s:%u", ip,
                 (unsigned)ntohs(sa.sin_port));
        if (start_handshake(c, TETHER_HS_ACCEPTOR) < 0 ||
            ep_add(node, fd, EPOLLIN | EPOLLRDHUP, &c->w) < 0) {
            conn_close(c, TETHER_LOG_ERROR, "could not start a handshake");
            continue;
        }
    }
}

static void on_epmd(tether_node_t *node)
{
    char buf[256];
    ssize_t n = recv(node->epmd_fd, buf, sizeof buf, 0);
    if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR)))
        return;
    LOG(node, TETHER_LOG_WARNING,
        "epmd closed the registration socket; the name is unpublished");
    epoll_ctl(node->epfd, EPOLL_CTL_DEL, node->epmd_fd, NULL);
    close(node->epmd_fd);
    node->epmd_fd = -1;
}

static void run_posts(tether_node_t *node)
{
    uint64_t v;
    while (read(node->event_fd, &v, sizeof v) > 0)
        ;
    pthread_mutex_lock(&node->post_lock);
    post_t *list = node->posts;
    node->posts = NULL;
    pthread_mutex_unlock(&node->post_lock);
    /* Reverse into posting order. */
    post_t *rev = NULL;
    while (list) {
        post_t *p = list;
        list = p->next;
        p->next = rev;
        rev = p;
    }
    while (rev) {
        post_t *p = rev;
        rev = p->next;
        p->fn(node, p->arg);
        free(p);
    }
}

static void on_signal(tether_node_t *node)
{
    struct signalfd_siginfo si;
    while (read(node->signal_fd, &si, sizeof si) == sizeof si) {
        LOG(node, TETHER_LOG_INFO, "signal %u: shutting down",
            (unsigned)si.ssi_signo);
        atomic_store(&node->stop, true);
    }
}

/* ---- timers and housekeeping ---------------------------------------- */

static void housekeeping(tether_node_t *node, uint64_t now)
{
    uint64_t dead_ms = (uint64_t)node->cfg.ticktime_s * 1000u;
    for (conn_t *c = node->conns; c; c = c->next) {
        if (c->closing)
            continue;
        if (c->state != C_UP) {
            if (now >= c->deadline_ms) {
                if (c->state == C_HANDSHAKE)
                    node->stats.bad_handshakes++;
                conn_close(c, TETHER_LOG_WARNING,
                           c->state == C_HANDSHAKE
                               ? "handshake with '%s' failed: timed out"
                               : "cannot connect to '%s': timed out",
                           conn_label(c));
            }
            continue;
        }
        if (now - c->last_rx_ms > dead_ms) {
            c->node->stats.dropped_connections++;
            conn_close(c, TETHER_LOG_WARNING,
                       "connection to '%s' lost: no input for %u s "
                       "(net_ticktime)",
                       c->peer, node->cfg.ticktime_s);
            continue;
        }
        if (now - c->last_tx_ms >= node->tick_ms) {
            if (tether__frame_encode_tick(&c->out) == 0) {
                node->stats.ticks_out++;
                c->last_tx_ms = now;
                mark_dirty(c);
                check_outbuf(c);
            }
        }
    }
}

int tether_node_timer_add(tether_node_t *node, uint64_t ms,
                          tether_node_post_fn fn, void *arg,
                          tether_timer_id_t *id)
{
    ntimer_t *t = calloc(1, sizeof *t);
    if (t == NULL)
        return TETHER_ENOMEM;
    t->at_ms = tether_node_now_ms() + ms;
    t->id = ++node->timer_seq;
    t->fn = fn;
    t->arg = arg;
    ntimer_t **pp = &node->timers;
    while (*pp && (*pp)->at_ms <= t->at_ms)
        pp = &(*pp)->next;
    t->next = *pp;
    *pp = t;
    if (id)
        *id = t->id;
    return 0;
}

int tether_node_timer_cancel(tether_node_t *node, tether_timer_id_t id)
{
    for (ntimer_t **pp = &node->timers; *pp; pp = &(*pp)->next) {
        if ((*pp)->id == id) {
            ntimer_t *t = *pp;
            *pp = t->next;
            free(t);
            return 0;
        }
    }
    return TETHER_ENOTFOUND;
}

static void run_timers(tether_node_t *node, uint64_t now)
{
    while (node->timers && node->timers->at_ms <= now) {
        ntimer_t *t = node->timers;
        node->timers = t->next;
        t->fn(node, t->arg);
        free(t);
    }
    if (now >= node->next_hk_ms) {
        housekeeping(node, now);
        uint64_t hk = node->tick_ms / 2;
        if (hk < HK_MIN_MS)
            hk = HK_MIN_MS;
        if (hk > HK_MAX_MS)
            hk = HK_MAX_MS;
        node->next_hk_ms = now + hk;
    }
}

/* Microseconds on the monotonic clock (the busy-poll window). */
static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int wait_timeout(tether_node_t *node, uint64_t now)
{
    if (tether_procs_pending(node->procs) || node->closing)
        return 0;
    uint64_t next = node->next_hk_ms;
    if (node->timers && node->timers->at_ms < next)
        next = node->timers->at_ms;
    return next <= now ? 0 : (int)(next - now);
}

/* ---- lifecycle ------------------------------------------------------ */

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
        strchr(host_part(cfg->name), '@') != NULL ||
        (size_t)(strchr(cfg->name, '@') - cfg->name) > TETHER_EPMD_NAME_MAX) {
        *why = "node name must be name@host";
        return TETHER_EINVAL;
    }
    if (cfg->cookie == NULL || cfg->cookie[0] == '\0' ||
        strlen(cfg->cookie) > TETHER_NODE_COOKIE_MAX) {
        *why = "the cookie is empty or too long";
        return TETHER_EINVAL;
    }
    struct in_addr ia;
    const char *la =
        cfg->listen_addr ? cfg->listen_addr : TETHER_NODE_LISTEN_ADDR_DEFAULT;
    if (inet_pton(AF_INET, la, &ia) != 1) {
        *why = "listen address must be an IPv4 address";
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
    snprintf(node->name, sizeof node->name, "%s", cfg->name);
    snprintf(node->cookie, sizeof node->cookie, "%s", cfg->cookie);
    snprintf(node->listen_addr, sizeof node->listen_addr, "%s", la);
    snprintf(node->prefix, sizeof node->prefix, "%s",
             cfg->log_prefix ? cfg->log_prefix : "tether_cnode");
    node->cfg.name = node->name;
    node->cfg.cookie = node->cookie;
    node->cfg.listen_addr = node->listen_addr;
    node->cfg.log_prefix = node->prefix;
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
    if (node->cfg.outbuf_max == 0)
        node->cfg.outbuf_max = TETHER_NODE_OUTBUF_MAX_DEFAULT;
    if (node->cfg.frame_max == 0)
        node->cfg.frame_max = TETHER_NODE_FRAME_MAX_DEFAULT;
    node->tick_ms = (uint64_t)node->cfg.ticktime_s * 1000u / 4u;
    if (node->tick_ms == 0)
        node->tick_ms = 1;
    node->our_flags = TETHER_DIST_FLAGS_ADVERTISED |
                      (cfg->visible ? TETHER_DFLAG_PUBLISHED : 0);
    node->epfd = node->listen_fd = node->epmd_fd = node->event_fd =
        node->signal_fd = -1;
    node->w_listen.kind = W_LISTEN;
    node->w_epmd.kind = W_EPMD;
    node->w_event.kind = W_EVENT;
    node->w_signal.kind = W_SIGNAL;
    pthread_mutex_init(&node->post_lock, NULL);
    atomic_init(&node->stop, false);
    atomic_init(&node->log_level, cfg->log_level);
    atomic_init(&node->running, false);
    int rc = tether_procs_new(node->name, 0, node_out, node, &node->procs);
    if (rc < 0)
        goto fail;
    /* Messages from sockets reach an idle process without a mailbox copy:
     * dispatch() and the posts run outside every handler. */
    tether__procs_set_direct(node->procs, true);
    node->epfd = epoll_create1(EPOLL_CLOEXEC);
    node->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (node->epfd < 0 || node->event_fd < 0 ||
        ep_add(node, node->event_fd, EPOLLIN, &node->w_event) < 0) {
        *why = "cannot create epoll or eventfd";
        rc = TETHER_EIO;
        goto fail;
    }
    *nodep = node;
    return 0;
fail:
    tether_node_free(node);
    return rc;
}

static int do_listen(tether_node_t *node)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return TETHER_EIO;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons(node->cfg.listen_port)};
    inet_pton(AF_INET, node->listen_addr, &sa.sin_addr);
    socklen_t sl = sizeof sa;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        listen(fd, LISTEN_BACKLOG) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) < 0) {
        LOG(node, TETHER_LOG_ERROR, "cannot listen on %s:%u: %s",
            node->listen_addr, node->cfg.listen_port, strerror(errno));
        close(fd);
        return TETHER_EIO;
    }
    node->listen_fd = fd;
    node->port = ntohs(sa.sin_port);
    if (ep_add(node, fd, EPOLLIN, &node->w_listen) < 0)
        return TETHER_EIO;
    return 0;
}

/* Blocking (bounded) read of exactly what the decoder needs. */
static int epmd_register(tether_node_t *node)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return TETHER_EIO;
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons(node->cfg.epmd_port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        LOG(node, TETHER_LOG_ERROR,
            "cannot reach epmd on 127.0.0.1:%u: %s (is epmd running?)",
            node->cfg.epmd_port, strerror(errno));
        close(fd);
        return TETHER_EIO;
    }
    uint8_t req[TETHER_EPMD_REQ_MAX];
    size_t n;
    const char *at = strchr(node->name, '@');
    int rc = tether__epmd_encode_alive2(
        req, sizeof req, &n, node->port,
        node->cfg.visible ? TETHER_EPMD_NODE_NORMAL : TETHER_EPMD_NODE_HIDDEN,
        node->name, (size_t)(at - node->name), NULL, 0);
    if (rc < 0 || send(fd, req, n, MSG_NOSIGNAL) != (ssize_t)n) {
        LOG(node, TETHER_LOG_ERROR, "cannot register with epmd");
        close(fd);
        return rc < 0 ? rc : TETHER_EIO;
    }
    uint8_t resp[16];
    size_t got = 0;
    tether_epmd_alive_t alive;
    size_t used;
    uint64_t deadline = tether_node_now_ms() + EPMD_TIMEOUT_MS;
    for (;;) {
        rc = tether__epmd_decode_alive2_resp(resp, got, &alive, &used);
        if (rc != TETHER_EAGAIN)
            break;
        uint64_t now = tether_node_now_ms();
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (now >= deadline || poll(&pfd, 1, (int)(deadline - now)) <= 0) {
            rc = TETHER_ETIMEDOUT;
            break;
        }
        ssize_t r = recv(fd, resp + got, sizeof resp - got, 0);
        if (r <= 0) {
            rc = TETHER_ECLOSED;
            break;
        }
        got += (size_t)r;
    }
    if (rc < 0) {
        LOG(node, TETHER_LOG_ERROR, "epmd registration failed: %s",
            tether_strerror(rc));
        close(fd);
        return rc;
    }
    if (alive.result != 0) {
        LOG(node, TETHER_LOG_ERROR,
            "the name '%.*s' is already registered in epmd (result %u)",
            (int)(at - node->name), node->name, (unsigned)alive.result);
        close(fd);
        return TETHER_EEXIST;
    }
    node->creation = alive.creation;
    node->epmd_fd = fd;
    set_nonblock(fd);
    if (ep_add(node, fd, EPOLLIN | EPOLLRDHUP, &node->w_epmd) < 0)
        return TETHER_EIO;
    return 0;
}

int tether_node_start(tether_node_t *node)
{
    int rc = do_listen(node);
    if (rc < 0)
        return rc;
    rc = epmd_register(node);
    if (rc < 0)
        return rc;
    tether_procs_set_creation(node->procs, node->creation);
    rc = tether__builtins_start(node->procs);
    if (rc == 0)
        rc = tether__api_start(node);
    if (rc < 0) {
        LOG(node, TETHER_LOG_ERROR, "cannot start built-in processes: %s",
            tether_strerror(rc));
        return rc;
    }
    node->next_hk_ms = tether_node_now_ms();
    LOG(node, TETHER_LOG_DEBUG, "listening on %s:%u, creation %u",
        node->listen_addr, node->port, node->creation);
    return 0;
}

int tether_node_handle_signals(tether_node_t *node)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0)
        return TETHER_EIO;
    node->signal_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (node->signal_fd < 0 ||
        ep_add(node, node->signal_fd, EPOLLIN, &node->w_signal) < 0)
        return TETHER_EIO;
    return 0;
}

int tether_node_run(tether_node_t *node)
{
    struct epoll_event evs[EPOLL_BATCH];
    uint64_t active_us = 0; /* when sockets last had events */
    node->loop_thread = pthread_self();
    atomic_store(&node->running, true);
    while (!atomic_load(&node->stop)) {
        uint64_t now = tether_node_now_ms();
        int timeout = wait_timeout(node, now);
        if (timeout != 0 && now_us() - active_us < node->cfg.busy_poll_us)
            timeout = 0; /* busy-poll: see TETHER_BUSY_POLL_DEFAULT_US */
        int n = epoll_wait(node->epfd, evs, EPOLL_BATCH, timeout);
        if (n > 0)
            active_us = now_us();
        else if (n == 0 && timeout == 0)
            sched_yield(); /* spinning: let a runnable peer have the core */
        if (n < 0) {
            if (errno == EINTR)
                continue;
            LOG(node, TETHER_LOG_ERROR, "epoll_wait: %s", strerror(errno));
            return TETHER_EIO;
        }
        for (int i = 0; i < n; i++) {
            watch_t *w = evs[i].data.ptr;
            switch (w->kind) {
            case W_LISTEN:
                on_accept(node);
                break;
            case W_EPMD:
                on_epmd(node);
                break;
            case W_EVENT:
                run_posts(node);
                break;
            case W_SIGNAL:
                on_signal(node);
                break;
            case W_CONN:
                on_conn_event((conn_t *)w, evs[i].events);
                break;
            }
        }
        run_timers(node, tether_node_now_ms());
        /* Let processes run, then act on lost connections; repeat while
         * either produces work, within a budget so sockets stay served. */
        for (int round = 0; round < 8; round++) {
            size_t ran = tether_procs_run(node->procs, RUN_BUDGET);
            size_t reaped = reap(node);
            if (ran == 0 && reaped == 0)
                break;
        }
        for (conn_t *c = node->conns; c; c = c->next)
            if (c->dirty && !c->closing)
                conn_flush(c);
        reap(node);
    }
    LOG(node, TETHER_LOG_INFO,
        "stopping: %" PRIu64 " malformed frames, %" PRIu64
        " unknown control messages, %" PRIu64 " bad handshakes, %" PRIu64
        " dropped connections",
        node->stats.malformed_frames, node->stats.unknown_control,
        node->stats.bad_handshakes, node->stats.dropped_connections);
    atomic_store(&node->running, false);
    return 0;
}

void tether_node_stop(tether_node_t *node)
{
    atomic_store(&node->stop, true);
    uint64_t one = 1;
    if (node->event_fd >= 0) {
        ssize_t r = write(node->event_fd, &one, sizeof one);
        (void)r;
    }
}

void tether_node_free(tether_node_t *node)
{
    if (node == NULL)
        return;
    /* Workers first: they may still post to this node. */
    tether__api_free(node);
    /* Close every connection: peers see the sockets go at once. */
    while (node->conns) {
        conn_t *c = node->conns;
        c->peer[0] = '\0'; /* no node_down: the table goes too */
        if (!c->closing) {
            c->closing = true;
        }
        conn_destroy(c);
    }
    node->closing = NULL;
    if (node->epmd_fd >= 0)
        close(node->epmd_fd);
    if (node->listen_fd >= 0)
        close(node->listen_fd);
    if (node->signal_fd >= 0)
        close(node->signal_fd);
    if (node->event_fd >= 0)
        close(node->event_fd);
    if (node->epfd >= 0)
        close(node->epfd);
    tether_procs_free(node->procs);
    while (node->posts) {
        post_t *p = node->posts;
        node->posts = p->next;
        free(p);
    }
    while (node->timers) {
        ntimer_t *t = node->timers;
        node->timers = t->next;
        free(t);
    }
    free(node->scratch);
    pthread_mutex_destroy(&node->post_lock);
    explicit_bzero(node->cookie, sizeof node->cookie);
    free(node);
}

int tether_node_post(tether_node_t *node, tether_node_post_fn fn, void *arg)
{
    post_t *p = malloc(sizeof *p);
    if (p == NULL)
        return TETHER_ENOMEM;
    p->fn = fn;
    p->arg = arg;
    pthread_mutex_lock(&node->post_lock);
    p->next = node->posts;
    node->posts = p;
    pthread_mutex_unlock(&node->post_lock);
    uint64_t one = 1;
    ssize_t r = write(node->event_fd, &one, sizeof one);
    (void)r;
    return 0;
}

typedef struct post_send {
    bool has_from;
    bool to_alias;
    erlang_pid from;
    erlang_pid to;
    erlang_ref alias;
    size_t len;
    char msg[];
} post_send_t;

int tether__node_send_now(tether_node_t *node, const erlang_pid *from,
                          const erlang_pid *to, const erlang_ref *alias,
                          const char *msg, size_t len)
{
    if (alias == NULL)
        return tether_procs_send(node->procs, from, to, msg, len);
    if (strcmp(alias->node, node->name) == 0) {
        tether_procs_alias_send_in(node->procs, from, alias, msg, len);
        return 0;
    }
    tether_out_t op = {.kind = TETHER_OUT_ALIAS_SEND,
                       .node = alias->node,
                       .from = from,
                       .ref = alias,
                       .msg = msg,
                       .msg_len = len};
    return node_out(node, &op);
}

static void do_post_send(tether_node_t *node, void *arg)
{
    post_send_t *ps = arg;
    (void)tether__node_send_now(node, ps->has_from ? &ps->from : NULL, &ps->to,
                                ps->to_alias ? &ps->alias : NULL, ps->msg,
                                ps->len);
    free(ps);
}

static int post_send(tether_node_t *node, const erlang_pid *from,
                     const erlang_pid *to, const erlang_ref *alias,
                     const char *msg, size_t len)
{
    post_send_t *ps = calloc(1, sizeof *ps + len);
    if (ps == NULL)
        return TETHER_ENOMEM;
    if (from) {
        ps->has_from = true;
        ps->from = *from;
    }
    if (to)
        ps->to = *to;
    if (alias) {
        ps->to_alias = true;
        ps->alias = *alias;
    }
    ps->len = len;
    memcpy(ps->msg, msg, len);
    int rc = tether_node_post(node, do_post_send, ps);
    if (rc < 0)
        free(ps);
    return rc;
}

int tether_node_post_send(tether_node_t *node, const erlang_pid *from,
                          const erlang_pid *to, const char *msg, size_t len)
{
    return post_send(node, from, to, NULL, msg, len);
}

int tether_node_post_send_alias(tether_node_t *node, const erlang_pid *from,
                                const erlang_ref *alias, const char *msg,
                                size_t len)
{
    return post_send(node, from, NULL, alias, msg, len);
}

void tether_node_set_spawn_handler(tether_node_t *node, tether_spawn_fn fn,
                                   void *ctx)
{
    node->spawn_fn = fn;
    node->spawn_ctx = ctx;
}

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

size_t tether_node_peer_count(const tether_node_t *node)
{
    size_t n = 0;
    for (const conn_t *c = node->conns; c; c = c->next)
        if (!c->closing && c->state == C_UP)
            n++;
    return n;
}

bool tether_node_stopping(const tether_node_t *node)
{
    return atomic_load(&node->stop);
}

bool tether_node_on_loop(const tether_node_t *node)
{
    return atomic_load(&node->running) &&
           pthread_equal(node->loop_thread, pthread_self());
}

void *tether__node_api(const tether_node_t *node)
{
    return node->api;
}

void tether__node_set_api(tether_node_t *node, void *api)
{
    node->api = api;
}

const tether_node_config_t *tether__node_config(const tether_node_t *node)
{
    return &node->cfg;
}

void tether__node_set_spawn_out(tether_node_t *node,
                                const tether_spawn_out_ops_t *ops, void *ctx)
{
    if (ops)
        node->spawn_out = *ops;
    else
        memset(&node->spawn_out, 0, sizeof node->spawn_out);
    node->spawn_out_ctx = ctx;
}

int tether__node_spawn_request(tether_node_t *node, const char *peer,
                               const erlang_ref *req_id, const erlang_pid *from,
                               const erlang_pid *gl, const char *module,
                               const char *function, const char *args,
                               size_t args_len)
{
    if (peer == NULL || req_id == NULL || from == NULL || gl == NULL ||
        module == NULL || function == NULL || args == NULL || args_len < 2 ||
        strlen(module) >= TETHER_ATOM_MAX ||
        strlen(function) >= TETHER_ATOM_MAX || !tether_node_name_valid(peer))
        return TETHER_EINVAL;
    tether_out_t op = {.kind = OUT_SPAWN_REQUEST,
                       .node = peer,
                       .from = from,
                       .from_name = module,
                       .to = gl,
                       .to_name = function,
                       .ref = req_id,
                       .msg = args,
                       .msg_len = args_len};
    return node_out(node, &op);
}

void tether__node_set_conn_hook(tether_node_t *node, tether_node_conn_fn fn,
                                void *ctx)
{
    node->conn_fn = fn;
    node->conn_ctx = ctx;
}

bool tether__node_connected(const tether_node_t *node, const char *peer)
{
    for (const conn_t *c = node->conns; c; c = c->next)
        if (!c->closing && c->state == C_UP && strcmp(c->peer, peer) == 0)
            return true;
    return false;
}

void tether__node_foreach_peer(tether_node_t *node,
                               void (*fn)(tether_node_t *node, const char *peer,
                                          void *ctx),
                               void *ctx)
{
    for (conn_t *c = node->conns; c; c = c->next)
        if (!c->closing && c->state == C_UP)
            fn(node, c->peer, ctx);
}

int tether__node_connect(tether_node_t *node, const char *peer)
{
    if (peer == NULL || !tether_node_name_valid(peer) ||
        strcmp(peer, node->name) == 0)
        return TETHER_EINVAL;
    if (find_conn(node, peer) != NULL)
        return 0;
    return conn_dial(node, peer) != NULL ? 0 : TETHER_ECLOSED;
}

int tether__node_reg_send_noconnect(tether_node_t *node, const erlang_pid *from,
                                    const char *peer, const char *name,
                                    const char *msg, size_t len)
{
    if (peer == NULL || name == NULL || strlen(name) >= TETHER_ATOM_MAX)
        return TETHER_EINVAL;
    conn_t *c = find_conn(node, peer);
    if (c == NULL || c->state != C_UP)
        return TETHER_ECLOSED;
    tether_out_t op = {.kind = TETHER_OUT_REG_SEND,
                       .node = peer,
                       .from = from,
                       .to_name = name,
                       .msg = msg,
                       .msg_len = len};
    return encode_op(c, &op);
}

void *tether__node_cluster(const tether_node_t *node)
{
    return node->cluster;
}

void tether__node_set_cluster(tether_node_t *node, void *cluster)
{
    node->cluster = cluster;
}
