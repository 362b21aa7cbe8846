/*
 * fuzz_engine.c: libFuzzer target for core/engine.c and the registry
 * module (core/registry.c) behind it.
 *
 * Per input, two engines a@fuzz and b@fuzz are made from fixed seeds and a
 * fixed cookie, each with a registry; b joins a over a perfect in-memory
 * link and the pair is pumped (virtual clock, no real time or randomness)
 * until b's session with a is up and both are members of each other. The
 * first input byte picks a mode (byte % 2); the rest is the mode's input:
 *
 *   0  raw: the bytes go to tether_engine_recv(b, "a@fuzz", ...), as if a
 *      sent them (hellos, forged or garbled envelopes).
 *   1  registry: the bytes are an ETF payload that a legitimately seals as
 *      a registry message (tether_engine_send, TETHER_MSG_REGISTRY), so b's
 *      envelope opens it and its registry decodes it ({reg_add, ...},
 *      {reg_sync, [...]}, {reg_digest, ...}, {reg_pull, ...}, ...).
 *
 * Afterwards the pair keeps running a few heartbeats (so replies, digests
 * and syncs triggered by the input are exchanged), then a's connection
 * drops, and everything is freed: leaks show up under ASan.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"
#include "core/registry.h"

#define N_ENGINES    2
#define TICK_MS      10
#define SETTLE_MS    1000
#define AFTER_MS     300
#define PUMP_ROUNDS  10000
#define QUEUE_MAX    1024
#define HEARTBEAT_MS 100
#define TTL_MS       400
#define DIGEST_MS    100
#define CONFLICT_SUB 9

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t COOKIE[] = "FUZZCOOKIE";
static const char *const NAMES[N_ENGINES] = {"a@fuzz", "b@fuzz"};

typedef struct msg {
    int dst;
    uint8_t *data;
    size_t len;
} msg_t;

typedef struct pair {
    tether_engine_t *e[N_ENGINES];
    tether_registry_t *r[N_ENGINES];
    int conn; /* 1 while the link a <-> b is up */
    msg_t q[QUEUE_MAX];
    size_t qh, qn;
    uint64_t now;
} pair_t;

static int index_of(const char *name)
{
    for (int i = 0; i < N_ENGINES; i++)
        if (strcmp(NAMES[i], name) == 0)
            return i;
    return -1;
}

/* Drains every engine's actions and delivers queued bytes until quiet. */
static void pump(pair_t *p)
{
    for (int rounds = 0; rounds < PUMP_ROUNDS; rounds++) {
        int any = 0;
        for (int i = 0; i < N_ENGINES; i++) {
            tether_engine_action_t a;
            while (tether_engine_next_action(p->e[i], &a)) {
                int j = a.kind == TETHER_ACTION_DELIVER ? -1 : index_of(a.peer);
                any = 1;
                if (a.kind == TETHER_ACTION_SEND && j >= 0 && p->conn &&
                    p->qn < QUEUE_MAX) {
                    msg_t *m = &p->q[(p->qh + p->qn++) % QUEUE_MAX];
                    m->dst = j;
                    m->data = a.data;
                    m->len = a.len;
                    a.data = NULL;
                } else if (a.kind == TETHER_ACTION_CONNECT && j >= 0 &&
                           !p->conn) {
                    p->conn = 1;
                    (void)tether_engine_peer_up(p->e[0], NAMES[1]);
                    (void)tether_engine_peer_up(p->e[1], NAMES[0]);
                }
                tether_engine_action_release(&a);
            }
        }
        if (p->qn > 0) {
            msg_t m = p->q[p->qh];
            p->qh = (p->qh + 1) % QUEUE_MAX;
            p->qn--;
            if (p->conn)
                (void)tether_engine_recv(p->e[m.dst], NAMES[1 - m.dst], m.data,
                                         m.len);
            free(m.data);
            any = 1;
        }
        if (!any)
            return;
    }
}

/* Advances the virtual clock by ms in TICK_MS steps, pumping after each. */
static void run(pair_t *p, uint64_t ms)
{
    pump(p);
    for (uint64_t t = 0; t < ms; t += TICK_MS) {
        p->now += TICK_MS;
        for (int i = 0; i < N_ENGINES; i++)
            (void)tether_engine_tick(p->e[i], p->now);
        pump(p);
    }
}

static void pair_free(pair_t *p)
{
    while (p->qn > 0) {
        free(p->q[p->qh].data);
        p->qh = (p->qh + 1) % QUEUE_MAX;
        p->qn--;
    }
    for (int i = 0; i < N_ENGINES; i++)
        tether_engine_free(p->e[i]);
    for (int i = 0; i < N_ENGINES; i++)
        tether_registry_free(p->r[i]);
}

/* Makes the established pair; returns 0 or -1 (then p is freed). */
static int pair_new(pair_t *p)
{
    tether_engine_config_t cfg;
    tether_registry_config_t rcfg;

    memset(p, 0, sizeof *p);
    tether_registry_config_default(&rcfg);
    rcfg.conflict_sub = CONFLICT_SUB;
    rcfg.digest_ms = DIGEST_MS;
    for (int i = 0; i < N_ENGINES; i++) {
        tether_engine_config_default(&cfg);
        cfg.name = NAMES[i];
        cfg.incarnation = 1;
        cfg.heartbeat_ms = HEARTBEAT_MS;
        cfg.ttl_ms = TTL_MS;
        cfg.cookie = COOKIE;
        cfg.cookie_len = sizeof COOKIE - 1;
        memset(cfg.seed, 0x40 + i, sizeof cfg.seed);
        if (tether_engine_new(&cfg, &p->e[i]) != 0 ||
            tether_registry_new(&rcfg, p->e[i], &p->r[i]) != 0 ||
            tether_engine_tick(p->e[i], p->now) != 0)
            goto fail;
    }
    if (tether_engine_join(p->e[1], NAMES[0]) != 0)
        goto fail;
    run(p, SETTLE_MS);
    if (!tether_engine_session_up(p->e[1], NAMES[0]) ||
        !tether_engine_session_up(p->e[0], NAMES[1]) ||
        !tether_engine_is_member(p->e[0], NAMES[1]) ||
        !tether_engine_is_member(p->e[1], NAMES[0]))
        abort(); /* the deterministic set-up must always work */
    return 0;
fail:
    pair_free(p);
    return -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static pair_t p; /* large (the queue): not on the stack */

    if (size < 1 || pair_new(&p) != 0)
        return 0;
    if (data[0] % 2 == 0) {
        (void)tether_engine_recv(p.e[1], NAMES[0], data + 1, size - 1);
    } else if (size > 1) {
        (void)tether_engine_send(p.e[0], NAMES[1], TETHER_MSG_REGISTRY,
                                 data + 1, size - 1, 0);
    }
    run(&p, AFTER_MS);
    p.conn = 0;
    (void)tether_engine_peer_down(p.e[0], NAMES[1]);
    (void)tether_engine_peer_down(p.e[1], NAMES[0]);
    run(&p, TICK_MS);
    pair_free(&p);
    return 0;
}
