/*
 * fuzz_reminders.c: libFuzzer target for the reminders module
 * (core/reminders.c) behind the engine.
 *
 * Per input, two engines a@fuzz and b@fuzz (fixed seeds and cookie, a
 * cluster ring and a reminders module each, R = 2) join over a perfect
 * in-memory link; a sets a few genuine reminders (one past due, one far
 * ahead, one cancelled). The input is then records [len, len bytes]...,
 * each an ETF payload that b sends a as a reminders message
 * (tether_engine_send, TETHER_MSG_REMINDERS), so a's envelope opens it
 * and the module decodes it ({rm_put, ...}, {rm_sync, ...}, {rm_ack,
 * ...}, {rm_release, ...}, {rm_digest, ...}, {rm_offer, ...}, {rm_want,
 * ...}, {rm_get, ...}, {rm_got, ...}: forged records, stamps, shards,
 * fingerprints, op ids), pumped in turn with a
 * tick between records.
 *
 * Checked, any violation aborts: a's counters stay consistent (no more
 * armed than pending records; every undecodable message counted), and
 * after a few more rounds of genuine traffic a still answers reads and
 * takes writes. Then the link drops and everything is freed (leaks show
 * up under ASan).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ei.h>

#include "core/engine.h"
#include "core/reminders.h"
#include "core/ring.h"
#include "fuzz_common.h"

#define SEED_BASE 0x70
#define SEQ_MAX   64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct rm_pair {
    fz_pair_t p;
    tether_ring_module_t *ring[FZ_ENGINES];
    tether_reminders_t *m[FZ_ENGINES];
} rm_pair_t;

static int attach(void *ctx, int i, tether_engine_t *e)
{
    rm_pair_t *x = ctx;
    tether_ring_config_t rc = {0};
    tether_reminders_config_t cfg = {.replicas = 2,
                                     .round_ms = FZ_HEARTBEAT_MS};
    int r = tether_ring_module_new(&rc, e, &x->ring[i]);

    if (r != 0)
        return r;
    cfg.ring = x->ring[i];
    r = tether_reminders_new(&cfg, e, &x->m[i]);
    if (r == 0)
        tether_reminders_subscribers(x->m[i], 1);
    return r;
}

static void set(rm_pair_t *x, const char *atom, int64_t at)
{
    fz_key_t k = fz_atom_key(atom);

    if (tether_reminders_set(x->m[0], k.b, k.len, at, (const uint8_t *)"p", 1,
                             0, 1) != 0)
        abort();
}

static void check(void *ctx)
{
    rm_pair_t *x = ctx;
    const tether_reminders_stats_t *st = tether_reminders_stats(x->m[0]);

    if (st->armed > st->pending)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rm_pair_t x;
    fz_key_t gone = fz_atom_key("gone");
    int64_t at;
    const uint8_t *p;
    size_t pl;

    memset(&x, 0, sizeof x);
    if (fz_pair_new(&x.p, SEED_BASE, attach, &x) != 0)
        abort();
    fz_run(&x.p, 5 * FZ_HEARTBEAT_MS);
    set(&x, "past", 0);
    set(&x, "ahead", INT64_MAX);
    set(&x, "gone", 1000000);
    if (tether_reminders_cancel(x.m[0], gone.b, gone.len, 2) != 0)
        abort();
    fz_run(&x.p, FZ_TICK_MS);
    fz_feed(&x.p, TETHER_MSG_REMINDERS, data, size, SEQ_MAX, check, &x);
    fz_run(&x.p, 3 * FZ_HEARTBEAT_MS);
    check(&x);
    set(&x, "after", INT64_MAX);
    if (tether_reminders_get(x.m[0], fz_atom_key("after").b,
                             fz_atom_key("after").len, 3, &at, &p, &pl) < 0)
        abort();
    fz_pair_cut(&x.p);
    fz_pair_free(&x.p); /* the modules go with their engines */
    return 0;
}
