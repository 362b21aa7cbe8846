/*
 * cnode/conn.c: peer connections (see internal.h): their buffers, the
 * queue of operations waiting for a handshake, epmd lookups, the
 * handshake pump, reading frames, ticks and deadlines, and sending.
 *
 * A connection moves through these states:
 *
 *   RESOLVING        outgoing: the host part of the name is being looked
 *        |           up on the resolver threads (numeric hosts skip it)
 *   EPMD_CONNECTING  non-blocking connect to the peer's epmd
 *        | writable, SO_ERROR 0: PORT_PLEASE2 sent
 *   EPMD_WAIT        reading PORT2_RESP; found: connect to the port
 *   CONNECTING       non-blocking connect to the peer node
 *        | writable: handshake as initiator
 *   TLS_HANDSHAKE    under TLS only: the TLS handshake (client, or server
 *        |           for accepted sockets), then everything below runs
 *        |           over its plaintext
 *   HANDSHAKE        (accepted plain sockets start here, as acceptor)
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
 * encoded once the handshake tells which flags the peer has. The whole
 * set-up, from the look-up to the distribution handshake, must finish
 * within the set-up time (hs_timeout_ms, net_setuptime).
 *
 * Under TLS, c->out still collects plaintext (handshake messages and
 * frames); conn_flush() encrypts it into the TLS output a chunk at a time
 * and sends that, and input is decrypted into c->in, where the same state
 * machine reads it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cnode/internal.h"
#include "cnode/resolve.h"
#include "cnode/tls.h"
#include "dist/control.h"
#include "dist/epmd.h"
#include "dist/frame.h"
#include "dist/handshake.h"

#define READ_CHUNK        ((size_t)64 << 10)
#define READ_MAX_PER_WAKE ((size_t)1 << 20)
#define HK_MIN_MS         100
#define HK_MAX_MS         1000
#define PENDING_MAX       ((size_t)16 << 20)
#define TICK_ANSWER_MS    250
#define TLS_SEAL_CHUNK    ((size_t)256 << 10)

typedef struct tether__conn conn_t;

typedef enum {
    C_RESOLVING = 1,
    C_EPMD_CONNECTING,
    C_EPMD_WAIT,
    C_CONNECTING,
    C_TLS_HANDSHAKE,
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

struct tether__conn {
    tether__watcher_t w;
    conn_t *next, *prev;
    conn_t *cnext; /* close list */
    tether_node_t *node;
    int fd;
    cstate_t state;
    bool initiator;
    bool closing;
    bool was_up;
    bool want_out;
    bool dirty;
    char peer[TETHER_ATOM_MAX];
    tether_addr_t addr;
    char where[TETHER_ADDR_STR_MAX]; /* "ADDR:PORT" of an accepted peer */
    uint64_t resolve_id;             /* RESOLVING: the look-up's id */
    tether__tls_t *tls;              /* NULL: plain TCP (or not yet) */
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
    uint64_t over_ms; /* since when over outbuf_max with no byte written;
                         0: not over */
};

/* Splits "alive@host"; returns a pointer to host or NULL. */
static const char *host_part(const char *name)
{
    const char *at = strchr(name, '@');
    return at ? at + 1 : NULL;
}

/* ---- connections --------------------------------------------------- */

static void on_conn_event(tether_node_t *node, tether__watcher_t *w,
                          uint32_t events);

static conn_t *conn_new(tether_node_t *node, int fd, cstate_t state)
{
    conn_t *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    if (ei_x_new(&c->out) < 0) {
        free(c);
        return NULL;
    }
    c->w.cb = on_conn_event;
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

/* The dial log entry of peer, or NULL; with make, a new one (taking the
 * slot logged longest ago when all are used). */
static struct tether__dial_log *dial_log_find(tether_node_t *node,
                                              const char *peer, bool make)
{
    struct tether__dial_log *victim = NULL;
    for (size_t i = 0; i < TETHER__DIAL_LOGS; i++) {
        struct tether__dial_log *e = &node->dial_logs[i];
        if (e->peer[0] && strcmp(e->peer, peer) == 0)
            return e;
        if (victim != NULL && !victim->peer[0])
            continue; /* a free slot beats any used one */
        if (victim == NULL || !e->peer[0] || e->logged_ms < victim->logged_ms)
            victim = e;
    }
    if (!make)
        return NULL;
    snprintf(victim->peer, sizeof victim->peer, "%s", peer);
    victim->suppressed = 0;
    victim->logged_ms = 0;
    return victim;
}

/*
 * Logs why a dial to peer failed, rate-limited per peer: the first
 * failure is printed, later ones are counted (and logged at debug level,
 * prefixed "suppressed: ") until dial_log_ms has passed since the last
 * printed line; the next is printed with the count. A connection that
 * comes up forgets the peer (dial_log_forget).
 */
static void dial_log(tether_node_t *node, const char *peer, int level,
                     const char *why)
{
    uint64_t now = tether_node_now_ms();
    struct tether__dial_log *e = dial_log_find(node, peer, false);
    if (e == NULL) {
        e = dial_log_find(node, peer, true);
        e->logged_ms = now;
        LOG(node, level, "%s", why);
        return;
    }
    if (now - e->logged_ms < node->cfg.dial_log_ms) {
        e->suppressed++;
        LOG(node, TETHER_LOG_DEBUG, "suppressed: %s", why);
        return;
    }
    if (e->suppressed > 0)
        LOG(node, level, "%s (and %u earlier failures in the last %u s)", why,
            (unsigned)e->suppressed,
            (unsigned)((now - e->logged_ms + 999) / 1000));
    else
        LOG(node, level, "%s", why);
    e->logged_ms = now;
    e->suppressed = 0;
}

static void dial_log_forget(tether_node_t *node, const char *peer)
{
    struct tether__dial_log *e = dial_log_find(node, peer, false);
    if (e)
        e->peer[0] = '\0';
}

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
        /* A dial of ours that never came up: rate-limited per peer. */
        if (c->initiator && !c->was_up && c->peer[0] &&
            (level == TETHER_LOG_WARNING || level == TETHER_LOG_INFO))
            dial_log(node, c->peer, level, why);
        else
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
        tether__loop_unwatch(node, c->fd);
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
    tether__tls_free(c->tls);
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
        tether__spawn_out_nodedown(node, peer);
        if (node->conn_fn)
            node->conn_fn(node, peer, false, node->conn_ctx);
    }
}

size_t tether__conn_reap(tether_node_t *node)
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

/* Bytes waiting to be sent: plaintext not yet written or sealed, and
 * TLS records not yet written. */
static size_t unsent(const conn_t *c)
{
    size_t n = (size_t)c->out.index - c->out_off, t = 0;
    if (c->tls)
        (void)tether__tls_output(c->tls, &t);
    return n + t;
}

static void conn_update_events(conn_t *c)
{
    if (c->fd < 0)
        return;
    bool want = unsent(c) > 0 || c->state == C_EPMD_CONNECTING ||
                c->state == C_CONNECTING;
    if (want == c->want_out)
        return;
    c->want_out = want;
    uint32_t ev = EPOLLIN | EPOLLRDHUP | (want ? EPOLLOUT : 0);
    if (c->state == C_EPMD_CONNECTING || c->state == C_CONNECTING)
        ev = EPOLLOUT;
    tether__loop_rewatch(c->node, c->fd, ev, &c->w);
}

static void tls_failed(conn_t *c, bool handshake);

/*
 * The bytes to write next: plaintext, or under TLS the sealed records,
 * sealing the next chunk of plaintext when none are left (so that at most
 * TLS_SEAL_CHUNK of ciphertext waits besides the plaintext). *n is 0 when
 * nothing is left or sealing failed (c is then closing).
 */
static const uint8_t *next_out(conn_t *c, size_t *n)
{
    size_t left = (size_t)c->out.index - c->out_off;
    if (c->tls == NULL) {
        *n = left;
        return (const uint8_t *)c->out.buff + c->out_off;
    }
    const uint8_t *p = tether__tls_output(c->tls, n);
    if (*n == 0 && left > 0 && c->state != C_TLS_HANDSHAKE) {
        size_t k = left < TLS_SEAL_CHUNK ? left : TLS_SEAL_CHUNK;
        int rc = tether__tls_write(
            c->tls, (const uint8_t *)c->out.buff + c->out_off, k);
        if (rc < 0) {
            tls_failed(c, false);
            *n = 0;
            return NULL;
        }
        c->out_off += k;
        p = tether__tls_output(c->tls, n);
    }
    return p;
}

/* The socket took n bytes of what next_out() gave. */
static void out_sent(conn_t *c, size_t n)
{
    if (c->over_ms != 0 && n > 0) /* it reads: the stall clock restarts */
        c->over_ms = tether_node_now_ms();
    if (c->tls)
        tether__tls_consume_output(c->tls, n);
    else
        c->out_off += n;
}

/* Writes as much of c's output as the socket takes. */
static void conn_flush(conn_t *c)
{
    c->dirty = false;
    if (c->closing || c->fd < 0 || c->state == C_RESOLVING ||
        c->state == C_EPMD_CONNECTING || c->state == C_CONNECTING ||
        c->state == C_WAIT_PEER)
        return;
    for (;;) {
        size_t left;
        const uint8_t *p = next_out(c, &left);
        if (left == 0 || c->closing)
            break;
        ssize_t n = send(c->fd, p, left, MSG_NOSIGNAL);
        if (n > 0) {
            out_sent(c, (size_t)n);
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
    if (c->closing)
        return;
    if (c->out_off == (size_t)c->out.index) {
        c->out_off = 0;
        c->out.index = 0;
        c->over_ms = 0;
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

/* Drops c if it holds more unsent bytes than allowed (see node.h's
 * outbuf_max): over outbuf_max with nothing written for OUT_STALL_MS, or
 * over outbuf_max + frame_max at all. */
static void check_outbuf(conn_t *c)
{
    size_t left = unsent(c), max = c->node->cfg.outbuf_max;
    uint64_t now = tether_node_now_ms();
    if (left <= max) {
        c->over_ms = 0;
        return;
    }
    if (c->over_ms == 0)
        c->over_ms = now;
    if (left <= max + c->node->cfg.frame_max &&
        now - c->over_ms < TETHER_NODE_OUT_STALL_MS)
        return; /* a large term going out as the peer reads it */
    c->node->stats.dropped_connections++;
    conn_close(c, TETHER_LOG_WARNING,
               "dropping connection to '%s': it does not read "
               "(%zu bytes unsent)",
               conn_label(c), left);
}

/* ---- encoding operations ------------------------------------------- */

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
    case TETHER__OUT_SPAWN_REQUEST:
        rc = tether__spawn_out_encode(x, f, from, op);
        break;
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

/* ---- outgoing connections ------------------------------------------ */

static int connect_to(tether_node_t *node, const tether_addr_t *a, int *fdp)
{
    int fd =
        socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return TETHER_EIO;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (const struct sockaddr *)&a->ss, a->len) < 0 &&
        errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        LOG(node, TETHER_LOG_DEBUG, "connect failed: %s", strerror(e));
        return TETHER_EIO;
    }
    *fdp = fd;
    return 0;
}

/* c's host is known (c->addr): connects to the peer's epmd. */
static void dial_epmd(conn_t *c)
{
    tether_node_t *node = c->node;
    int fd;
    tether__addr_set_port(&c->addr, node->cfg.epmd_port);
    if (connect_to(node, &c->addr, &fd) < 0) {
        conn_close(c, TETHER_LOG_WARNING,
                   "cannot connect to '%s': epmd unreachable", c->peer);
        return;
    }
    c->fd = fd;
    c->state = C_EPMD_CONNECTING;
    c->want_out = true;
    if (tether__loop_watch(node, fd, EPOLLOUT, &c->w) < 0)
        conn_close(c, TETHER_LOG_ERROR, "epoll_ctl: %s", strerror(errno));
}

/* The look-up of a dialing connection's host is answered (loop thread). */
static void on_resolved(tether_node_t *node, uint64_t id, int rc,
                        const tether_addr_t *addr, const char *why)
{
    conn_t *c = node->conns;
    while (c && !(c->state == C_RESOLVING && c->resolve_id == id))
        c = c->next;
    if (c == NULL || c->closing)
        return; /* given up on meanwhile (set-up time, node down) */
    if (rc < 0) {
        conn_close(c, TETHER_LOG_WARNING,
                   "cannot connect to '%s': cannot resolve host '%s': %s",
                   c->peer, host_part(c->peer), why);
        return;
    }
    c->addr = *addr;
    dial_epmd(c);
}

/*
 * Starts a connection to `peer`: its host is resolved as inet does
 * (numeric at once, names off the loop), then epmd is asked for its port.
 * NULL only for a name without a host part or without memory.
 */
static conn_t *conn_dial(tether_node_t *node, const char *peer)
{
    const char *host = host_part(peer);
    if (host == NULL || *host == '\0') {
        LOG(node, TETHER_LOG_WARNING, "cannot connect to '%s': no host part",
            peer);
        return NULL;
    }
    conn_t *c = conn_new(node, -1, C_RESOLVING);
    if (c == NULL)
        return NULL;
    c->initiator = true;
    snprintf(c->peer, sizeof c->peer, "%s", peer);
    if (tether__addr_literal(host, node->family, 0, &c->addr) == 0) {
        dial_epmd(c);
        return c;
    }
    c->resolve_id = ++node->resolve_seq;
    int rc = tether__resolve_start(node, host, node->family, c->resolve_id,
                                   on_resolved);
    if (rc < 0)
        conn_close(c, TETHER_LOG_WARNING,
                   "cannot connect to '%s': cannot resolve host '%s': %s", peer,
                   host, tether_strerror(rc));
    return c;
}

int tether__conn_out(void *ctx, const tether_out_t *op)
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

/* ---- the handshake pump -------------------------------------------- */

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
    if (c->tls && tether__hs_set_len4(c->hs) < 0)
        return TETHER_EINVAL;
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

static void start_tls(conn_t *c, bool server);

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
        tether__loop_rewatch(node, c->fd, EPOLLIN | EPOLLRDHUP | EPOLLOUT,
                             &c->w);
        conn_flush(c);
        return;
    }
    /* C_CONNECTING */
    if (node->tls) {
        start_tls(c, false);
        return;
    }
    if (start_handshake(c, TETHER_HS_INITIATOR) < 0) {
        conn_close(c, TETHER_LOG_ERROR, "handshake with '%s' failed: %s",
                   c->peer, "could not start");
        return;
    }
    c->want_out = true;
    tether__loop_rewatch(node, c->fd, EPOLLIN | EPOLLRDHUP | EPOLLOUT, &c->w);
    hs_pump_output(c);
    conn_flush(c);
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
    c->reader = tether__reader_new(node->cfg.frame_max, node->cfg.frame_max, 0);
    if (c->reader == NULL) {
        conn_close(c, TETHER_LOG_ERROR, "out of memory");
        return;
    }
    c->state = C_UP;
    c->was_up = true;
    dial_log_forget(node, c->peer);
    c->last_rx_ms = c->last_tx_ms = tether_node_now_ms();
    if (c->initiator)
        node->stats.connected++;
    else
        node->stats.accepted++;
    LOG(node, TETHER_LOG_INFO, "connection %s '%s' up%s",
        c->initiator ? "to" : "from", c->peer, c->tls ? " (TLS)" : "");
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
    tether__loop_unwatch(node, c->fd);
    close(c->fd);
    c->fd = -1;
    c->state = C_WAIT_PEER;
    c->in_len = 0;
    c->out.index = 0;
    c->out_off = 0;
    tether__hs_fini(c->hs);
    free(c->hs);
    c->hs = NULL;
    tether__tls_free(c->tls);
    c->tls = NULL;
    c->deadline_ms = tether_node_now_ms() + node->cfg.hs_timeout_ms;
}

/* ---- input --------------------------------------------------------- */

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
            tether__loop_unwatch(node, c->fd);
            close(c->fd);
            c->fd = -1;
            c->in_len = 0;
            c->out.index = 0;
            c->out_off = 0;
            c->epmd_highest = pr.highest_version;
            tether__addr_set_port(&c->addr, pr.port);
            int fd;
            if (connect_to(node, &c->addr, &fd) < 0) {
                conn_close(c, TETHER_LOG_WARNING, "cannot connect to '%s'",
                           c->peer);
                return 0;
            }
            c->fd = fd;
            c->state = C_CONNECTING;
            c->want_out = true;
            if (tether__loop_watch(node, fd, EPOLLOUT, &c->w) < 0)
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
                tether__dispatch(node, c, &ev.msg);
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

/*
 * Makes room for input in c->in (growing it up to in_limit). Returns 0,
 * or -1 when c had to close (input too large, no memory).
 */
static int in_reserve(conn_t *c)
{
    if (c->in_cap - c->in_len >= READ_CHUNK / 4)
        return 0;
    size_t cap = c->in_cap ? c->in_cap * 2 : READ_CHUNK;
    if (cap > in_limit(c))
        cap = in_limit(c);
    if (cap <= c->in_cap) {
        c->node->stats.malformed_frames++;
        c->node->stats.dropped_connections++;
        conn_close(c, TETHER_LOG_WARNING,
                   "dropping connection to '%s': input too large",
                   conn_label(c));
        return -1;
    }
    uint8_t *p = realloc(c->in, cap);
    if (p == NULL) {
        conn_close(c, TETHER_LOG_ERROR, "out of memory");
        return -1;
    }
    c->in = p;
    c->in_cap = cap;
    return 0;
}

/* Feeds what c->in holds to the state machine and keeps the rest. */
static void feed_input(conn_t *c)
{
    size_t used = consume_input(c);
    if (c->fd < 0 || c->state == C_CONNECTING)
        return; /* the buffer was reset */
    if (used > 0) {
        memmove(c->in, c->in + used, c->in_len - used);
        c->in_len -= used;
    }
}

/* The peer closed the socket (err: errno, or 0 for an orderly EOF). */
static void conn_eof(conn_t *c, int err)
{
    const char *sep = err ? ": " : "", *why = err ? strerror(err) : "";
    switch (c->state) {
    case C_TLS_HANDSHAKE:
        c->node->stats.tls_failures++;
        conn_close(c, TETHER_LOG_WARNING,
                   "TLS handshake with '%s' failed: connection closed%s%s",
                   conn_label(c), sep, why);
        break;
    case C_HANDSHAKE:
        c->node->stats.bad_handshakes++;
        if (c->initiator && tether__hs_awaiting_ack(c->hs))
            conn_close(c, TETHER_LOG_WARNING,
                       "handshake with '%s' failed: it closed the connection "
                       "on our challenge reply: its cookie is likely not "
                       "ours (check --cookie)",
                       conn_label(c));
        else
            conn_close(c, TETHER_LOG_WARNING,
                       "handshake with '%s' failed: connection closed%s%s",
                       conn_label(c), sep, why);
        break;
    default:
        conn_close(c, c->state == C_UP ? TETHER_LOG_INFO : TETHER_LOG_DEBUG,
                   "connection to '%s' closed%s%s", conn_label(c), sep, why);
    }
}

/* One line and a count for a refused TLS handshake or a TLS error. */
static void tls_failed(conn_t *c, bool handshake)
{
    c->node->stats.tls_failures++;
    if (handshake) {
        conn_flush(c); /* the alert, best effort */
        conn_close(c, TETHER_LOG_WARNING, "TLS handshake with '%s' failed: %s",
                   conn_label(c), tether__tls_reason(c->tls));
    } else {
        c->node->stats.dropped_connections++;
        conn_close(c, TETHER_LOG_WARNING,
                   "dropping connection to '%s': TLS error: %s", conn_label(c),
                   tether__tls_reason(c->tls));
    }
}

/*
 * Ciphertext arrived: the TLS handshake while it lasts (then the
 * distribution handshake starts over it), then every record decrypted
 * into c->in for the state machine.
 */
static void tls_input(conn_t *c)
{
    if (c->state == C_TLS_HANDSHAKE) {
        int rc = tether__tls_handshake(c->tls);
        mark_dirty(c);
        if (rc == TETHER_EAGAIN)
            return;
        if (rc < 0) {
            tls_failed(c, true);
            return;
        }
        if (start_handshake(c, c->initiator ? TETHER_HS_INITIATOR
                                            : TETHER_HS_ACCEPTOR) < 0) {
            conn_close(c, TETHER_LOG_ERROR, "handshake with '%s' failed: %s",
                       conn_label(c), "could not start");
            return;
        }
        hs_pump_output(c);
    }
    while (!c->closing && c->tls) {
        if (in_reserve(c) < 0)
            return;
        long n =
            tether__tls_read(c->tls, c->in + c->in_len, c->in_cap - c->in_len);
        if (n == TETHER_EAGAIN)
            break;
        if (n == TETHER_ECLOSED) {
            conn_eof(c, 0);
            break;
        }
        if (n < 0) {
            tls_failed(c, false);
            break;
        }
        c->in_len += (size_t)n;
        feed_input(c);
        if (c->fd < 0)
            return;
    }
    if (c->tls)
        mark_dirty(c); /* records OpenSSL answers with (key updates) */
}

/* TLS starts on c's socket: as the server (accepted) or the client. */
static void start_tls(conn_t *c, bool server)
{
    tether_node_t *node = c->node;
    int rc = tether__tls_new(node->tls, server,
                             server ? NULL : host_part(c->peer), &c->tls);
    if (rc < 0) {
        conn_close(c, TETHER_LOG_ERROR, "TLS with '%s' could not start: %s",
                   conn_label(c), tether_strerror(rc));
        return;
    }
    c->state = C_TLS_HANDSHAKE;
    c->want_out = true; /* force an epoll update */
    tether__loop_rewatch(node, c->fd, EPOLLIN | EPOLLRDHUP | EPOLLOUT, &c->w);
    tls_input(c); /* the client's hello */
    conn_flush(c);
}

static void conn_read(conn_t *c)
{
    size_t total = 0;
    while (!c->closing && total < READ_MAX_PER_WAKE) {
        uint8_t *dst;
        size_t cap;
        if (c->tls) {
            dst = tether__tls_in_space(c->tls, READ_CHUNK, &cap);
            if (dst == NULL) {
                conn_close(c, TETHER_LOG_ERROR, "out of memory");
                return;
            }
        } else {
            if (in_reserve(c) < 0)
                return;
            dst = c->in + c->in_len;
            cap = c->in_cap - c->in_len;
        }
        ssize_t n = recv(c->fd, dst, cap, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0) {
            conn_eof(c, n < 0 ? errno : 0);
            break;
        }
        bool drained = (size_t)n < cap;
        total += (size_t)n;
        c->last_rx_ms = tether_node_now_ms();
        if (c->tls) {
            tether__tls_in_commit(c->tls, (size_t)n);
            tls_input(c);
        } else {
            c->in_len += (size_t)n;
            feed_input(c);
        }
        if (c->fd < 0 || c->state == C_CONNECTING)
            return;
        /* A short read emptied the socket: epoll (level-triggered) says
         * when more comes, so no recv is spent just to hear EAGAIN. */
        if (drained)
            break;
    }
}

static void on_conn_event(tether_node_t *node, tether__watcher_t *w,
                          uint32_t events)
{
    (void)node;
    conn_t *c = tether__container_of(w, conn_t, w);
    if (c->closing)
        return;
    if (c->state == C_RESOLVING)
        return; /* no socket yet */
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

/* ---- ticks and deadlines ------------------------------------------- */

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
                if (c->state == C_TLS_HANDSHAKE)
                    node->stats.tls_failures++;
                conn_close(
                    c, TETHER_LOG_WARNING,
                    c->state == C_TLS_HANDSHAKE
                        ? "TLS handshake with '%s' failed: timed out (set-up "
                          "time)"
                    : c->state == C_HANDSHAKE
                        ? "handshake with '%s' failed: timed out"
                    : c->state == C_RESOLVING
                        ? "cannot connect to '%s': resolving its host timed "
                          "out"
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

void tether__conn_housekeeping(tether_node_t *node, uint64_t now)
{
    if (now < node->next_hk_ms)
        return;
    housekeeping(node, now);
    uint64_t hk = node->tick_ms / 2;
    if (hk < HK_MIN_MS)
        hk = HK_MIN_MS;
    if (hk > HK_MAX_MS)
        hk = HK_MAX_MS;
    node->next_hk_ms = now + hk;
}

/* ---- sending ------------------------------------------------------- */

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
    return tether__conn_out(node, &op);
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

/* ---- what the layers above ask of connections ---------------------- */

size_t tether_node_peer_count(const tether_node_t *node)
{
    size_t n = 0;
    for (const conn_t *c = node->conns; c; c = c->next)
        if (!c->closing && c->state == C_UP)
            n++;
    return n;
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

/* ---- what the loop and the other runtime files ask ----------------- */

void tether__conn_accepted(tether_node_t *node, int fd, const char *where)
{
    conn_t *c = conn_new(node, fd, C_HANDSHAKE);
    if (c == NULL) {
        close(fd);
        return;
    }
    snprintf(c->where, sizeof c->where, "%s", where);
    if (tether__loop_watch(node, fd, EPOLLIN | EPOLLRDHUP, &c->w) < 0)
        conn_close(c, TETHER_LOG_ERROR, "epoll_ctl: %s", strerror(errno));
    else if (node->tls)
        start_tls(c, true);
    else if (start_handshake(c, TETHER_HS_ACCEPTOR) < 0)
        conn_close(c, TETHER_LOG_ERROR, "could not start a handshake");
}

void tether__conn_flush_dirty(tether_node_t *node)
{
    for (conn_t *c = node->conns; c; c = c->next)
        if (c->dirty && !c->closing)
            conn_flush(c);
}

const char *tether__conn_peer(const conn_t *c)
{
    return c->peer;
}

void tether__conn_spawn_reply(conn_t *c, const erlang_ref *ref,
                              const erlang_pid *to, long flags,
                              const erlang_pid *pid, const char *reason,
                              size_t reason_len)
{
    if (tether__ctl_encode_spawn_reply(&c->out, c->dflags, ref, to, flags, pid,
                                       (const uint8_t *)reason,
                                       reason_len) == 0)
        mark_dirty(c);
}

void tether__conn_init(tether_node_t *node)
{
    node->tick_ms = (uint64_t)node->cfg.ticktime_s * 1000u / 4u;
    if (node->tick_ms == 0)
        node->tick_ms = 1;
}

void tether__conn_fini(tether_node_t *node)
{
    while (node->conns) {
        conn_t *c = node->conns;
        c->peer[0] = '\0'; /* no node_down: the table goes too */
        c->closing = true;
        conn_destroy(c);
    }
    node->closing = NULL;
}
