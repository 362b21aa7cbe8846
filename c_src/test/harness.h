/*
 * test/harness.h: a tiny in-test shell for engines (header-only, static):
 * direct FIFO delivery between a few engines, switchable links, a virtual
 * clock, and a log of MEMBER actions ("tether_member up b@test"; other
 * events go to a hook when one is set). Used by test_direct.c,
 * test_engine.c, test_registry.c and test_service_table.c.
 */
#ifndef TETHER_TEST_HARNESS_H
#define TETHER_TEST_HARNESS_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ei.h>

#include "core/engine.h"

#define H_MAX      8
#define H_QUEUE    4096
#define H_EVENTS   256
#define H_EVENT_SZ 128

typedef struct h_msg {
    int src, dst;
    uint8_t *data;
    size_t len;
} h_msg_t;

typedef struct harness {
    int n;
    char names[H_MAX][32];
    tether_engine_t *e[H_MAX];
    uint64_t inc[H_MAX];
    int link[H_MAX][H_MAX]; /* 1: bytes flow src -> dst */
    int conn[H_MAX][H_MAX];
    h_msg_t q[H_QUEUE];
    size_t qh, qn;
    uint64_t now;
    char events[H_MAX][H_EVENTS][H_EVENT_SZ];
    int nevents[H_MAX];
    uint8_t secret[TETHER_CLUSTER_SECRET_BYTES];
    size_t defer_max;
    /* When set, h_pump hands each action other than SEND and CONNECT to
     * on_action(action_ctx, engine index, action); MEMBER actions are also
     * logged with h_log_event. */
    void (*on_action)(void *ctx, int i, const tether_action_t *a);
    void *action_ctx;
    /* When set, h_pump shows each SEND action to tap(tap_ctx, engine
     * index, action) before it delivers it. */
    void (*tap)(void *ctx, int i, const tether_action_t *a);
    void *tap_ctx;
} harness_t;

static inline int h_index(harness_t *h, const char *name)
{
    for (int i = 0; i < h->n; i++)
        if (strcmp(h->names[i], name) == 0)
            return i;
    return -1;
}

static inline void h_start(harness_t *h, int i)
{
    tether_engine_config_t cfg;

    tether_engine_config_default(&cfg);
    cfg.name = h->names[i];
    cfg.incarnation = h->inc[i];
    cfg.heartbeat_ms = 100;
    cfg.ttl_ms = 400;
    cfg.defer_max = h->defer_max ? h->defer_max : 64;
    cfg.cluster_secret = h->secret;
    memset(cfg.seed, 0x40 + i, sizeof cfg.seed);
    cfg.seed[0] = (uint8_t)h->inc[i];
    cr_assert_eq(tether_engine_new(&cfg, &h->e[i]), 0);
    cr_assert_eq(tether_engine_tick(h->e[i], h->now), 0);
}

static inline void h_init(harness_t *h, int n)
{
    memset(h, 0, sizeof *h);
    h->n = n;
    memset(h->secret, 0x5a, sizeof h->secret);
    for (int i = 0; i < n; i++) {
        snprintf(h->names[i], sizeof h->names[i], "%c@test", 'a' + i);
        h->inc[i] = 1;
        for (int j = 0; j < n; j++)
            h->link[i][j] = 1;
    }
}

static inline void h_start_all(harness_t *h)
{
    for (int i = 0; i < h->n; i++)
        h_start(h, i);
}

static inline void h_peer_up(harness_t *h, int a, int b)
{
    if (h->conn[a][b] || h->e[a] == NULL || h->e[b] == NULL)
        return;
    h->conn[a][b] = h->conn[b][a] = 1;
    tether_engine_peer_up(h->e[a], h->names[b]);
    tether_engine_peer_up(h->e[b], h->names[a]);
}

static inline void h_cut(harness_t *h, int a, int b)
{
    if (!h->conn[a][b])
        return;
    h->conn[a][b] = h->conn[b][a] = 0;
    if (h->e[a])
        tether_engine_peer_down(h->e[a], h->names[b]);
    if (h->e[b])
        tether_engine_peer_down(h->e[b], h->names[a]);
}

/* Logs a MEMBER action of engine i as "tether_member up|down Node". */
static inline void h_log_event(harness_t *h, int i, const tether_action_t *a)
{
    char buf[H_EVENT_SZ] = {0};

    snprintf(buf, sizeof buf, "tether_member %s %.60s",
             a->u.member.up ? "up" : "down", a->peer);
    if (h->nevents[i] < H_EVENTS)
        memcpy(h->events[i][h->nevents[i]++], buf, sizeof buf);
}

/* Drains every engine and delivers queued bytes until all is quiet. */
static inline void h_pump(harness_t *h)
{
    for (int rounds = 0; rounds < 100000; rounds++) {
        int any = 0;
        for (int i = 0; i < h->n; i++) {
            tether_action_t a;
            while (h->e[i] && tether_engine_next_action(h->e[i], &a)) {
                int j = h_index(h, a.peer);
                any = 1;
                if (a.kind == TETHER_ACT_SEND && h->tap != NULL)
                    h->tap(h->tap_ctx, i, &a);
                if (a.kind == TETHER_ACT_SEND && j >= 0 && h->conn[i][j] &&
                    h->link[i][j] && h->qn < H_QUEUE) {
                    h_msg_t *m = &h->q[(h->qh + h->qn++) % H_QUEUE];
                    m->src = i;
                    m->dst = j;
                    m->len = a.u.send.bytes.len;
                    m->data = tether_engine_action_take(&a);
                } else if (a.kind == TETHER_ACT_CONNECT && j >= 0) {
                    h_peer_up(h, i, j);
                } else if (a.kind != TETHER_ACT_SEND &&
                           a.kind != TETHER_ACT_CONNECT) {
                    if (a.kind == TETHER_ACT_MEMBER)
                        h_log_event(h, i, &a);
                    if (h->on_action != NULL)
                        h->on_action(h->action_ctx, i, &a);
                }
                tether_engine_action_release(&a);
            }
        }
        if (h->qn > 0) {
            h_msg_t m = h->q[h->qh];
            h->qh = (h->qh + 1) % H_QUEUE;
            h->qn--;
            if (h->e[m.dst] && h->conn[m.src][m.dst])
                tether_engine_recv(h->e[m.dst], h->names[m.src], m.data, m.len);
            free(m.data);
            any = 1;
        }
        if (!any)
            return;
    }
    cr_assert_fail("harness did not settle");
}

/* Advances the clock by ms in 10 ms ticks, pumping after each. */
static inline void h_run(harness_t *h, uint64_t ms)
{
    h_pump(h);
    for (uint64_t t = 0; t < ms; t += 10) {
        h->now += 10;
        for (int i = 0; i < h->n; i++)
            if (h->e[i])
                tether_engine_tick(h->e[i], h->now);
        h_pump(h);
    }
}

static inline void h_free(harness_t *h)
{
    while (h->qn > 0) {
        free(h->q[h->qh].data);
        h->qh = (h->qh + 1) % H_QUEUE;
        h->qn--;
    }
    for (int i = 0; i < h->n; i++)
        tether_engine_free(h->e[i]);
}

/* Makes every engine but a join a, runs until they agree and checks
 * that a has a session with each. */
static inline void h_join_all(harness_t *h)
{
    for (int i = 1; i < h->n; i++)
        cr_assert_eq(tether_engine_join(h->e[i], h->names[0]), 0);
    h_run(h, 1000);
    for (int i = 1; i < h->n; i++)
        cr_assert(tether_engine_session_up(h->e[0], h->names[i]));
}

/* Starts n engines and makes them one cluster (h_join_all). */
static inline void h_cluster(harness_t *h, int n)
{
    h_init(h, n);
    h_start_all(h);
    h_join_all(h);
}

/* Advances engine i's clock by one heartbeat and returns the first sealed
 * heartbeat it sends (the caller frees it; its length in *len); every
 * other action is released unseen. */
static inline uint8_t *h_catch_heartbeat(harness_t *h, int i, size_t *len)
{
    tether_action_t a;
    uint8_t *hb = NULL;

    h->now += 100;
    tether_engine_tick(h->e[i], h->now);
    while (tether_engine_next_action(h->e[i], &a)) {
        if (a.kind == TETHER_ACT_SEND && hb == NULL &&
            a.u.send.bytes.ptr[1] == TETHER_MSG_HEARTBEAT) {
            *len = a.u.send.bytes.len;
            hb = tether_engine_action_take(&a);
        }
        tether_engine_action_release(&a);
    }
    cr_assert_not_null(hb);
    return hb;
}

/* Starts m as a fresh ETF term {Tag, ...} of arity elements. */
static inline void h_etf_begin(ei_x_buff *m, int arity, const char *tag)
{
    cr_assert_eq(ei_x_new_with_version(m), 0);
    cr_assert_eq(ei_x_encode_tuple_header(m, arity), 0);
    cr_assert_eq(ei_x_encode_atom(m, tag), 0);
}

/* Sends the term m from engine `from` to engine `to` as a message of the
 * given type, frees m and pumps. */
static inline void h_send_etf(harness_t *h, int from, int to, uint8_t type,
                              ei_x_buff *m)
{
    cr_assert_eq(tether_engine_send(h->e[from], h->names[to], type,
                                    (const uint8_t *)m->buff, (size_t)m->index,
                                    0),
                 0);
    h_pump(h);
    ei_x_free(m);
}

/* Members of engine i joined by spaces, into buf. */
static inline const char *h_members(harness_t *h, int i, char *buf, size_t cap)
{
    const char *m[H_MAX * 2];
    size_t n = tether_engine_members(h->e[i], m, H_MAX * 2), off = 0;

    buf[0] = '\0';
    for (size_t k = 0; k < n && k < H_MAX * 2; k++) {
        int w = snprintf(buf + off, cap - off, "%s%s", k ? " " : "", m[k]);
        if (w < 0 || (size_t)w >= cap - off)
            break;
        off += (size_t)w;
    }
    return buf;
}

static inline int h_has_event(harness_t *h, int i, const char *ev)
{
    for (int k = 0; k < h->nevents[i]; k++)
        if (strcmp(h->events[i][k], ev) == 0)
            return 1;
    return 0;
}

/*
 * Write-lock hooks (a module config's wlock/wunlock, with lock_ctx an
 * h_lock_t) that check every change is made between them and that they
 * are not reentered; count says how many times the lock was taken.
 */
typedef struct h_lock {
    int depth;
    int count;
} h_lock_t;

static inline void h_wlock(void *ctx)
{
    h_lock_t *l = ctx;

    cr_assert_eq(l->depth, 0, "not reentered");
    l->depth++;
    l->count++;
}

static inline void h_wunlock(void *ctx)
{
    h_lock_t *l = ctx;

    cr_assert_eq(l->depth, 1);
    l->depth--;
}

#endif /* TETHER_TEST_HARNESS_H */
