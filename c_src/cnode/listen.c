/*
 * cnode/listen.c: the node's two server-side sockets (see internal.h):
 * the listen socket, whose accepted connections go to conn.c, and the
 * epmd registration socket, which stays open as long as the name is
 * published (epmd unpublishes the name when it closes).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cnode/internal.h"
#include "cnode/resolve.h"
#include "dist/epmd.h"

#define EPMD_TIMEOUT_MS 5000
#define LISTEN_BACKLOG  128

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -1;
    return 0;
}

static void on_accept(tether_node_t *node, tether__watcher_t *w,
                      uint32_t events)
{
    (void)w;
    (void)events;
    for (;;) {
        struct sockaddr_storage sa;
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
        char where[TETHER_ADDR_STR_MAX];
        tether__addr_format((struct sockaddr *)&sa, where, sizeof where);
        tether__conn_accepted(node, fd, where);
    }
}

static void on_epmd(tether_node_t *node, tether__watcher_t *w, uint32_t events)
{
    (void)w;
    (void)events;
    char buf[256];
    ssize_t n = recv(node->epmd_fd, buf, sizeof buf, 0);
    if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR)))
        return;
    LOG(node, TETHER_LOG_WARNING,
        "epmd closed the registration socket; the name is unpublished");
    tether__loop_unwatch(node, node->epmd_fd);
    close(node->epmd_fd);
    node->epmd_fd = -1;
}

void tether__listen_init(tether_node_t *node)
{
    node->listen_fd = node->epmd_fd = -1;
    node->w_listen.cb = on_accept;
    node->w_epmd.cb = on_epmd;
}

int tether__listen_start(tether_node_t *node)
{
    tether_addr_t a;
    if (tether__addr_literal(node->listen_addr, node->family,
                             node->cfg.listen_port, &a) < 0)
        return TETHER_EINVAL; /* checked by tether_node_new */
    int fd =
        socket(node->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return TETHER_EIO;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    socklen_t sl = sizeof a.ss;
    char where[TETHER_ADDR_STR_MAX];
    tether__addr_format((struct sockaddr *)&a.ss, where, sizeof where);
    if (bind(fd, (struct sockaddr *)&a.ss, a.len) < 0 ||
        listen(fd, LISTEN_BACKLOG) < 0 ||
        getsockname(fd, (struct sockaddr *)&a.ss, &sl) < 0) {
        LOG(node, TETHER_LOG_ERROR, "cannot listen on %s: %s", where,
            strerror(errno));
        close(fd);
        return TETHER_EIO;
    }
    node->listen_fd = fd;
    node->port = node->family == AF_INET6
                     ? ntohs(((struct sockaddr_in6 *)&a.ss)->sin6_port)
                     : ntohs(((struct sockaddr_in *)&a.ss)->sin_port);
    if (tether__loop_watch(node, fd, EPOLLIN, &node->w_listen) < 0)
        return TETHER_EIO;
    return 0;
}

/*
 * Blocking (bounded) read of exactly what the decoder needs. epmd is
 * reached on the loopback address of the node's family, as erl_epmd
 * does (127.0.0.1, or ::1 under inet6_*).
 */
int tether__epmd_register(tether_node_t *node)
{
    tether_addr_t a;
    if (tether__addr_literal(node->family == AF_INET6 ? "::1" : "127.0.0.1",
                             node->family, node->cfg.epmd_port, &a) < 0)
        return TETHER_EIO;
    int fd = socket(node->family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return TETHER_EIO;
    if (connect(fd, (struct sockaddr *)&a.ss, a.len) < 0) {
        char where[TETHER_ADDR_STR_MAX];
        tether__addr_format((struct sockaddr *)&a.ss, where, sizeof where);
        LOG(node, TETHER_LOG_ERROR,
            "cannot reach epmd on %s: %s (is epmd running?)", where,
            strerror(errno));
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
    if (tether__loop_watch(node, fd, EPOLLIN | EPOLLRDHUP, &node->w_epmd) < 0)
        return TETHER_EIO;
    return 0;
}

void tether__listen_fini(tether_node_t *node)
{
    if (node->epmd_fd >= 0)
        close(node->epmd_fd);
    if (node->listen_fd >= 0)
        close(node->listen_fd);
}
