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
#include "fuzz_common.h"

#define SEED_BASE 0x40

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The established pair and a registry on each engine. */
typedef struct target {
    fz_pair_t p;
    tether_registry_t *r[FZ_ENGINES];
} target_t;

/* fz_attach_fn: a registry on engine i. */
static int attach_registry(void *ctx, int i, tether_engine_t *e)
{
    target_t *t = ctx;
    tether_registry_config_t rcfg;

    tether_registry_config_default(&rcfg);
    rcfg.digest_ms = FZ_DIGEST_MS;
    return tether_registry_new(&rcfg, e, &t->r[i]);
}

static void target_free(target_t *t)
{
    fz_pair_free(&t->p); /* the registries go with their engines */
    for (int i = 0; i < FZ_ENGINES; i++)
        t->r[i] = NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static target_t t; /* large (the queue): not on the stack */

    if (size < 1)
        return 0;
    if (fz_pair_new(&t.p, SEED_BASE, attach_registry, &t) != 0) {
        target_free(&t);
        return 0;
    }
    if (data[0] % 2 == 0) {
        (void)tether_engine_recv(t.p.e[1], FZ_NAMES[0], data + 1, size - 1);
    } else if (size > 1) {
        (void)tether_engine_send(t.p.e[0], FZ_NAMES[1], TETHER_MSG_REGISTRY,
                                 data + 1, size - 1, 0);
    }
    fz_run(&t.p, FZ_AFTER_MS);
    fz_pair_cut(&t.p);
    target_free(&t);
    return 0;
}
