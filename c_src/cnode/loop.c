/*
 * cnode/loop.c: the event loop's machinery (see internal.h): one epoll
 * instance, watchers that carry their own callback, one-shot timers,
 * posts from other threads (woken through an eventfd) and signals
 * (through a signalfd). What a loop iteration does with them is decided
 * in core.c; the loop knows nothing of connections or processes.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "cnode/internal.h"

#define EPOLL_BATCH 64

/*
 * A turn of the busy-poll (an empty epoll_wait and a sched_yield) takes a
 * few microseconds. One that took longer than this came back after
 * another process had the core: the CPU is contended, spinning only takes
 * time from the peers this node waits for, and a spinner that used its
 * share waits longer for the core than a sleeper the kernel wakes. The
 * loop then sleeps until its next event.
 */
#define SPIN_PREEMPTED_US 50

struct tether__post {
    struct tether__post *next;
    tether_node_post_fn fn;
    void *arg;
};

struct tether__timer {
    struct tether__timer *next;
    uint64_t at_ms;
    tether_timer_id_t id;
    tether_node_post_fn fn;
    void *arg;
};

typedef struct tether__post post_t;
typedef struct tether__timer ntimer_t;

uint64_t tether_node_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Microseconds on the monotonic clock (the busy-poll window). */
static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- watchers ------------------------------------------------------ */

int tether__loop_watch(tether_node_t *node, int fd, uint32_t events,
                       tether__watcher_t *w)
{
    struct epoll_event ev = {.events = events, .data.ptr = w};
    return epoll_ctl(node->epfd, EPOLL_CTL_ADD, fd, &ev);
}

int tether__loop_rewatch(tether_node_t *node, int fd, uint32_t events,
                         tether__watcher_t *w)
{
    struct epoll_event ev = {.events = events, .data.ptr = w};
    return epoll_ctl(node->epfd, EPOLL_CTL_MOD, fd, &ev);
}

void tether__loop_unwatch(tether_node_t *node, int fd)
{
    epoll_ctl(node->epfd, EPOLL_CTL_DEL, fd, NULL);
}

int tether__loop_poll(tether_node_t *node, int timeout)
{
    struct epoll_event evs[EPOLL_BATCH];
    uint64_t spin = 0;
    if (timeout != 0 && node->cfg.busy_poll_us > 0) {
        /* busy-poll: see TETHER_BUSY_POLL_DEFAULT_US */
        uint64_t t = now_us();
        if (node->spun_us != 0 && t - node->spun_us > SPIN_PREEMPTED_US)
            node->active_us = 0; /* preempted while spinning */
        if (t - node->active_us < node->cfg.busy_poll_us) {
            spin = t;
            timeout = 0;
        }
    }
    node->spun_us = spin;
    int n = epoll_wait(node->epfd, evs, EPOLL_BATCH, timeout);
    if (n > 0) {
        node->active_us = now_us();
        node->spun_us = 0;
    } else if (n == 0 && timeout == 0) {
        sched_yield(); /* spinning: let a runnable peer have the core */
    }
    if (n < 0) {
        if (errno == EINTR)
            return TETHER_EAGAIN;
        LOG(node, TETHER_LOG_ERROR, "epoll_wait: %s", strerror(errno));
        return TETHER_EIO;
    }
    for (int i = 0; i < n; i++) {
        tether__watcher_t *w = evs[i].data.ptr;
        w->cb(node, w, evs[i].events);
    }
    return 0;
}

/* ---- posts --------------------------------------------------------- */

void tether__loop_wake(tether_node_t *node)
{
    uint64_t one = 1;
    if (node->event_fd >= 0) {
        ssize_t r = write(node->event_fd, &one, sizeof one);
        (void)r;
    }
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
    tether__loop_wake(node);
    return 0;
}

/* The eventfd's callback: runs what other threads posted, in order. */
static void run_posts(tether_node_t *node, tether__watcher_t *w,
                      uint32_t events)
{
    (void)w;
    (void)events;
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

/* ---- signals ------------------------------------------------------- */

static void on_signal(tether_node_t *node, tether__watcher_t *w,
                      uint32_t events)
{
    (void)w;
    (void)events;
    struct signalfd_siginfo si;
    while (read(node->signal_fd, &si, sizeof si) == sizeof si) {
        LOG(node, TETHER_LOG_INFO, "signal %u: shutting down",
            (unsigned)si.ssi_signo);
        atomic_store(&node->stop, true);
    }
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
        tether__loop_watch(node, node->signal_fd, EPOLLIN, &node->w_signal) < 0)
        return TETHER_EIO;
    return 0;
}

/* ---- timers -------------------------------------------------------- */

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

void tether__loop_run_timers(tether_node_t *node, uint64_t now)
{
    while (node->timers && node->timers->at_ms <= now) {
        ntimer_t *t = node->timers;
        node->timers = t->next;
        t->fn(node, t->arg);
        free(t);
    }
}

uint64_t tether__loop_next_deadline(const tether_node_t *node,
                                    uint64_t deadline)
{
    if (node->timers && node->timers->at_ms < deadline)
        return node->timers->at_ms;
    return deadline;
}

/* ---- the loop thread ----------------------------------------------- */

bool tether_node_stopping(const tether_node_t *node)
{
    return atomic_load(&node->stop);
}

bool tether_node_on_loop(const tether_node_t *node)
{
    return atomic_load(&node->running) &&
           pthread_equal(node->loop_thread, pthread_self());
}

/* ---- init and fini ------------------------------------------------- */

int tether__loop_init(tether_node_t *node)
{
    node->epfd = node->event_fd = node->signal_fd = -1;
    node->w_event.cb = run_posts;
    node->w_signal.cb = on_signal;
    pthread_mutex_init(&node->post_lock, NULL);
    atomic_init(&node->stop, false);
    atomic_init(&node->running, false);
    node->epfd = epoll_create1(EPOLL_CLOEXEC);
    node->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (node->epfd < 0 || node->event_fd < 0 ||
        tether__loop_watch(node, node->event_fd, EPOLLIN, &node->w_event) < 0)
        return TETHER_EIO;
    return 0;
}

void tether__loop_close(tether_node_t *node)
{
    if (node->signal_fd >= 0)
        close(node->signal_fd);
    if (node->event_fd >= 0)
        close(node->event_fd);
    if (node->epfd >= 0)
        close(node->epfd);
}

void tether__loop_fini(tether_node_t *node)
{
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
    pthread_mutex_destroy(&node->post_lock);
}
