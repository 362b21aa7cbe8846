/*
 * fuzz_common.h: the set-up the engine-pair fuzz targets share (header
 * only, static functions; fuzz/Makefile builds each fuzz_<name>.c alone).
 *
 * A pair is two engines a@fuzz and b@fuzz made from fixed seeds and a
 * fixed cookie, joined over a perfect in-memory link and pumped on a
 * virtual clock (no real time or randomness), so every input starts from
 * the same established pair: b's session with a is up and both are
 * members of each other. Each target attaches its own module (registry,
 * service table) to each engine through the attach callback, and frees
 * it after fz_pair_free().
 */
#ifndef TETHER_FUZZ_COMMON_H
#define TETHER_FUZZ_COMMON_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <ei.h>

#include "core/engine.h"
#include "core/ring.h"

#define FZ_ENGINES      2
#define FZ_TICK_MS      10
#define FZ_SETTLE_MS    1000
#define FZ_AFTER_MS     300
#define FZ_PUMP_ROUNDS  10000
#define FZ_QUEUE_MAX    1024
#define FZ_HEARTBEAT_MS 100
#define FZ_TTL_MS       400
#define FZ_DIGEST_MS    100

static const uint8_t FZ_COOKIE[] = "FUZZCOOKIE";
static const char *const FZ_NAMES[FZ_ENGINES] = {"a@fuzz", "b@fuzz"};

typedef struct fz_msg {
    int dst;
    uint8_t *data;
    size_t len;
} fz_msg_t;

/* The pair owns its engines and the bytes queued between them. */
typedef struct fz_pair {
    tether_engine_t *e[FZ_ENGINES];
    int conn; /* 1 while the link a <-> b is up */
    fz_msg_t q[FZ_QUEUE_MAX];
    size_t qh, qn;
    uint64_t now;
} fz_pair_t;

/* Called for engine i right after it is made, before its first tick, to
 * attach the target's module; returns 0 or a negative code. */
typedef int (*fz_attach_fn)(void *ctx, int i, tether_engine_t *e);

/* Returns the index of the pair's node called name, or -1. */
static inline int fz_index_of(const char *name)
{
    for (int i = 0; i < FZ_ENGINES; i++)
        if (strcmp(FZ_NAMES[i], name) == 0)
            return i;
    return -1;
}

/* Drains every engine's actions and delivers queued bytes until quiet. */
static inline void fz_pump(fz_pair_t *p)
{
    for (int rounds = 0; rounds < FZ_PUMP_ROUNDS; rounds++) {
        int any = 0;
        for (int i = 0; i < FZ_ENGINES; i++) {
            tether_action_t a;
            while (tether_engine_next_action(p->e[i], &a)) {
                int j = fz_index_of(a.peer);
                any = 1;
                if (a.kind == TETHER_ACT_SEND && j >= 0 && p->conn &&
                    p->qn < FZ_QUEUE_MAX) {
                    fz_msg_t *m = &p->q[(p->qh + p->qn++) % FZ_QUEUE_MAX];
                    m->dst = j;
                    m->len = a.u.send.bytes.len;
                    m->data = tether_engine_action_take(&a);
                } else if (a.kind == TETHER_ACT_CONNECT && j >= 0 && !p->conn) {
                    p->conn = 1;
                    (void)tether_engine_peer_up(p->e[0], FZ_NAMES[1]);
                    (void)tether_engine_peer_up(p->e[1], FZ_NAMES[0]);
                }
                tether_engine_action_release(&a);
            }
        }
        if (p->qn > 0) {
            fz_msg_t m = p->q[p->qh];
            p->qh = (p->qh + 1) % FZ_QUEUE_MAX;
            p->qn--;
            if (p->conn)
                (void)tether_engine_recv(p->e[m.dst], FZ_NAMES[1 - m.dst],
                                         m.data, m.len);
            free(m.data);
            any = 1;
        }
        if (!any)
            return;
    }
}

/* Advances the virtual clock by ms in FZ_TICK_MS steps, pumping after
 * each. */
static inline void fz_run(fz_pair_t *p, uint64_t ms)
{
    fz_pump(p);
    for (uint64_t t = 0; t < ms; t += FZ_TICK_MS) {
        p->now += FZ_TICK_MS;
        for (int i = 0; i < FZ_ENGINES; i++)
            (void)tether_engine_tick(p->e[i], p->now);
        fz_pump(p);
    }
}

/* A target's invariant, checked after each record fz_feed() delivers. */
typedef void (*fz_check_fn)(void *ctx);

/*
 * Delivers data to a as messages of the module type `type` from b: a
 * sequence of at most max records, each a length byte and then that many
 * bytes (the last one cut short where the input ends). One tick runs
 * after each record, then check(ctx).
 */
static inline void fz_feed(fz_pair_t *p, uint8_t type, const uint8_t *data,
                           size_t size, int max, fz_check_fn check, void *ctx)
{
    size_t off = 0;

    for (int records = 0; off < size && records < max; records++) {
        size_t len = data[off++];
        if (len > size - off)
            len = size - off;
        (void)tether_engine_send(p->e[1], FZ_NAMES[0], type, data + off, len,
                                 0);
        off += len;
        fz_run(p, FZ_TICK_MS);
        check(ctx);
    }
}

/* A key of at most 32 bytes: the canonical ETF of a term. */
typedef struct fz_key {
    uint8_t b[32];
    size_t len;
} fz_key_t;

/* The canonical ETF (tether_ring_canon()) of the atom `atom`. */
static inline fz_key_t fz_atom_key(const char *atom)
{
    ei_x_buff x;
    fz_key_t k = {{0}, 0};

    if (ei_x_new_with_version(&x) < 0)
        abort();
    if (ei_x_encode_atom(&x, atom) < 0 ||
        tether_ring_canon((const uint8_t *)x.buff, (size_t)x.index, k.b,
                          sizeof k.b, &k.len) != 0)
        abort();
    ei_x_free(&x);
    return k;
}

/* Frees the queued bytes and the engines (not the targets' modules). */
static inline void fz_pair_free(fz_pair_t *p)
{
    while (p->qn > 0) {
        free(p->q[p->qh].data);
        p->qh = (p->qh + 1) % FZ_QUEUE_MAX;
        p->qn--;
    }
    for (int i = 0; i < FZ_ENGINES; i++) {
        tether_engine_free(p->e[i]);
        p->e[i] = NULL;
    }
}

/* Makes the established pair, engine i seeded with seed + i and given its
 * module by attach(ctx, i, engine). Returns 0, or -1 with the engines
 * freed (the modules attached so far are the caller's to free). */
static inline int fz_pair_new(fz_pair_t *p, uint8_t seed, fz_attach_fn attach,
                              void *ctx)
{
    tether_engine_config_t cfg;

    memset(p, 0, sizeof *p);
    for (int i = 0; i < FZ_ENGINES; i++) {
        tether_engine_config_default(&cfg);
        cfg.name = FZ_NAMES[i];
        cfg.incarnation = 1;
        cfg.heartbeat_ms = FZ_HEARTBEAT_MS;
        cfg.ttl_ms = FZ_TTL_MS;
        cfg.cookie = FZ_COOKIE;
        cfg.cookie_len = sizeof FZ_COOKIE - 1;
        memset(cfg.seed, seed + i, sizeof cfg.seed);
        if (tether_engine_new(&cfg, &p->e[i]) != 0 ||
            attach(ctx, i, p->e[i]) != 0 ||
            tether_engine_tick(p->e[i], p->now) != 0)
            goto fail;
    }
    if (tether_engine_join(p->e[1], FZ_NAMES[0]) != 0)
        goto fail;
    fz_run(p, FZ_SETTLE_MS);
    if (!tether_engine_session_up(p->e[1], FZ_NAMES[0]) ||
        !tether_engine_session_up(p->e[0], FZ_NAMES[1]) ||
        !tether_engine_is_member(p->e[0], FZ_NAMES[1]) ||
        !tether_engine_is_member(p->e[1], FZ_NAMES[0]))
        abort(); /* the deterministic set-up must always work */
    return 0;
fail:
    fz_pair_free(p);
    return -1;
}

/* Drops the link a <-> b on both sides and runs one tick. */
static inline void fz_pair_cut(fz_pair_t *p)
{
    p->conn = 0;
    (void)tether_engine_peer_down(p->e[0], FZ_NAMES[1]);
    (void)tether_engine_peer_down(p->e[1], FZ_NAMES[0]);
    fz_run(p, FZ_TICK_MS);
}

#endif /* TETHER_FUZZ_COMMON_H */
