/*
 * Criterion suite for the C-node runtime (cnode/core.c, loop.c, conn.c;
 * core/engine.c has test_engine.c) without a network: configuration
 * checks, log levels, and the loop's posts, timers and cross-thread sends
 * (tether_node_new() opens no socket; tether_node_run() only needs epoll
 * and the eventfd).
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "cnode/node.h"

static tether_node_config_t good_cfg(void)
{
    tether_node_config_t cfg = {
        .name = "t1@127.0.0.1",
        .cookie = "secret",
        .log_level = TETHER_LOG_ERROR,
    };
    return cfg;
}

Test(cnode_node, rejects_bad_configs)
{
    tether_node_t *node = NULL;
    const char *why = NULL;
    tether_node_config_t cfg = good_cfg();
    cfg.name = "nohost";
    cr_assert_eq(tether_node_new(&cfg, &node, &why), TETHER_EINVAL);
    cr_assert_not_null(why);
    cfg = good_cfg();
    cfg.name = "a@b@c";
    cr_assert_eq(tether_node_new(&cfg, &node, &why), TETHER_EINVAL);
    cfg = good_cfg();
    cfg.cookie = "";
    cr_assert_eq(tether_node_new(&cfg, &node, &why), TETHER_EINVAL);
    cfg = good_cfg();
    cfg.listen_addr = "not-an-ip";
    cr_assert_eq(tether_node_new(&cfg, &node, &why), TETHER_EINVAL);
    cfg = good_cfg();
    cfg.log_level = 9;
    cr_assert_eq(tether_node_new(&cfg, &node, &why), TETHER_EINVAL);
    cr_assert_eq(tether_node_new(NULL, &node, &why), TETHER_EINVAL);
    cr_assert_null(node);
}

Test(cnode_node, parses_log_levels)
{
    cr_assert_eq(tether_log_level_parse("error"), TETHER_LOG_ERROR);
    cr_assert_eq(tether_log_level_parse("warning"), TETHER_LOG_WARNING);
    cr_assert_eq(tether_log_level_parse("info"), TETHER_LOG_INFO);
    cr_assert_eq(tether_log_level_parse("debug"), TETHER_LOG_DEBUG);
    cr_assert_eq(tether_log_level_parse("loud"), -1);
    cr_assert_eq(tether_log_level_parse(NULL), -1);
}

static void record_and_stop(tether_node_t *node, void *arg)
{
    int *count = arg;
    (*count)++;
    tether_node_stop(node);
}

Test(cnode_node, post_runs_on_the_loop_and_stop_ends_run)
{
    tether_node_config_t cfg = good_cfg();
    tether_node_t *node;
    cr_assert_eq(tether_node_new(&cfg, &node, NULL), 0);
    cr_assert_str_eq(tether_node_name(node), "t1@127.0.0.1");
    int count = 0;
    cr_assert_eq(tether_node_post(node, record_and_stop, &count), 0);
    cr_assert_eq(tether_node_run(node), 0);
    cr_assert_eq(count, 1);
    tether_node_free(node);
}

typedef struct {
    int fired[4];
    int n;
} fired_t;

static void timer_a(tether_node_t *node, void *arg)
{
    (void)node;
    fired_t *f = arg;
    f->fired[f->n++] = 'a';
}

static void timer_b(tether_node_t *node, void *arg)
{
    fired_t *f = arg;
    f->fired[f->n++] = 'b';
    tether_node_stop(node);
}

Test(cnode_node, timers_fire_in_deadline_order_and_cancel)
{
    tether_node_config_t cfg = good_cfg();
    tether_node_t *node;
    cr_assert_eq(tether_node_new(&cfg, &node, NULL), 0);
    fired_t f = {{0}, 0};
    tether_timer_id_t ida, idb, idc;
    cr_assert_eq(tether_node_timer_add(node, 5, timer_b, &f, &idb), 0);
    cr_assert_eq(tether_node_timer_add(node, 0, timer_a, &f, &ida), 0);
    cr_assert_eq(tether_node_timer_add(node, 1, timer_a, &f, &idc), 0);
    cr_assert_eq(tether_node_timer_cancel(node, idc), 0);
    cr_assert_eq(tether_node_timer_cancel(node, idc), TETHER_ENOTFOUND);
    cr_assert_eq(tether_node_run(node), 0);
    cr_assert_eq(f.n, 2);
    cr_assert_eq(f.fired[0], 'a');
    cr_assert_eq(f.fired[1], 'b');
    tether_node_free(node);
}

typedef struct {
    tether_node_t *node;
    erlang_pid pid;
} sender_t;

static void stop_on_message(tether_proc_t *self, const tether_msg_t *msg,
                            void *arg)
{
    (void)self;
    tether_node_t *node = arg;
    if (tether_term_is_atom(msg->data, msg->len, "from_thread"))
        tether_node_stop(node);
}

static void *send_from_thread(void *arg)
{
    sender_t *s = arg;
    char m[TETHER_ATOM_TERM_MAX];
    size_t l = tether_term_atom(m, sizeof m, "from_thread");
    cr_assert_eq(tether_node_post_send(s->node, NULL, &s->pid, m, l), 0);
    return NULL;
}

Test(cnode_node, post_send_from_another_thread_reaches_the_process)
{
    tether_node_config_t cfg = good_cfg();
    tether_node_t *node;
    cr_assert_eq(tether_node_new(&cfg, &node, NULL), 0);
    tether_proc_spec_t spec = {stop_on_message, NULL, node};
    tether_proc_t *p;
    cr_assert_eq(tether_proc_spawn(tether_node_procs(node), &spec, &p), 0);
    sender_t s = {node, *tether_proc_pid(p)};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, send_from_thread, &s), 0);
    cr_assert_eq(tether_node_run(node), 0);
    pthread_join(t, NULL);
    tether_procs_stats_t st;
    tether_procs_stats(tether_node_procs(node), &st);
    cr_assert_eq(st.delivered, 1);
    tether_node_free(node);
}

/* The loop thread's CPU time, read on the loop by cpu_mark(). */
typedef struct {
    tether_node_t *node;
    double cpu_ms[2];
    int marks;
} cpu_marks_t;

static void cpu_mark(tether_node_t *node, void *arg)
{
    cpu_marks_t *m = arg;
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    m->cpu_ms[m->marks++] = (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
    if (m->marks == 2)
        tether_node_stop(node);
}

/* Posts a mark, lets the loop idle IDLE_MS, posts the second mark. */
#define IDLE_MS 100
static void *idle_between_marks(void *arg)
{
    cpu_marks_t *m = arg;
    struct timespec idle = {.tv_nsec = IDLE_MS * 1000000L};
    if (tether_node_post(m->node, cpu_mark, m) == 0) {
        nanosleep(&idle, NULL);
        if (tether_node_post(m->node, cpu_mark, m) == 0)
            return NULL;
    }
    tether_node_stop(m->node); /* the marks are missing: the test fails */
    return NULL;
}

Test(cnode_node, busy_poll_off_sleeps_when_idle)
{
    tether_node_config_t cfg = good_cfg();
    cfg.busy_poll_us = TETHER_BUSY_POLL_OFF;
    cpu_marks_t m = {.marks = 0};
    cr_assert_eq(tether_node_new(&cfg, &m.node, NULL), 0);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, idle_between_marks, &m), 0);
    cr_assert_eq(tether_node_run(m.node), 0);
    pthread_join(th, NULL);
    cr_assert_eq(m.marks, 2);
    /* A loop that spun would have used the core for most of IDLE_MS. */
    cr_assert_lt(m.cpu_ms[1] - m.cpu_ms[0], IDLE_MS / 5.0, "%.1f ms of CPU",
                 m.cpu_ms[1] - m.cpu_ms[0]);
    tether_node_free(m.node);
}
