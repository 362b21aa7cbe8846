/*
 * fuzz_election.c: libFuzzer target for the election module
 * (core/election.c) behind the engine.
 *
 * Per input, two engines a@fuzz and b@fuzz (fixed seeds and cookie, an
 * election module each) join over a perfect in-memory link; both are
 * candidates for the atom `svc` (default mode) and for `q` (quorum mode,
 * both nodes voters), and the pair runs until a leads both. The input
 * is then records [len, len bytes]..., each an ETF payload that b sends
 * a as an election message (tether_engine_send, TETHER_MSG_ELECTION), so
 * a's envelope opens it and the module decodes it ({el_rec, ...},
 * {el_sync, ...}, {el_ask, ...}, {el_grant, ...}, ...: forged records,
 * fences, terms, leases), pumped in turn with a tick between records.
 *
 * Checked, any violation aborts: never both nodes leading one name at one
 * instant, through the records and a few more rounds of genuine traffic
 * after them (b's real state is its own: what it sends may lie, being an
 * authenticated member, but must not make a lead beside it). Liveness is
 * not checked: a member that lies about its own records may stall a name.
 * Then the link drops and everything is freed (leaks show up under ASan).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ei.h>

#include "core/election.h"
#include "core/engine.h"
#include "core/ring.h"
#include "fuzz_common.h"

#define SEED_BASE 0x60
#define SEQ_MAX   64
#define LEASE_MS  400
#define NAMES     2

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct el_pair {
    fz_pair_t p;
    tether_election_t *m[FZ_ENGINES];
    fz_key_t names[NAMES]; /* svc (plain), q (quorum) */
} el_pair_t;

static int attach(void *ctx, int i, tether_engine_t *e)
{
    el_pair_t *x = ctx;
    tether_election_config_t cfg = {.lease_ms = LEASE_MS,
                                    .round_ms = FZ_HEARTBEAT_MS};

    return tether_election_new(&cfg, e, &x->m[i]);
}

/* Makes node i a candidate for n. */
static void lead(el_pair_t *x, int i, const fz_key_t *n, int quorum)
{
    static const char *const voters[] = {"a@fuzz", "b@fuzz"};
    tether_election_opts_t o = {.quorum = quorum,
                                .voters = quorum ? voters : NULL,
                                .nvoters = quorum ? 2 : 0};
    uint8_t pid[] = {131, 97, 0};
    int outcome;
    uint64_t fence;

    pid[2] = (uint8_t)i;
    if (tether_election_lead(x->m[i], n->b, n->len, pid, sizeof pid, &o,
                             &outcome, &fence) != 0)
        abort();
}

static int leads(el_pair_t *x, int i, const fz_key_t *n)
{
    return tether_election_fence(x->m[i], n->b, n->len, x->p.now, NULL) ==
           TETHER_ELECTION_LEADER;
}

/* Never two leaders of one name at one instant (the link is perfect and
 * both nodes are live members of each other). */
static void check(void *ctx)
{
    el_pair_t *x = ctx;

    for (int j = 0; j < NAMES; j++)
        if (leads(x, 0, &x->names[j]) && leads(x, 1, &x->names[j]))
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    el_pair_t x;

    memset(&x, 0, sizeof x);
    x.names[0] = fz_atom_key("svc");
    x.names[1] = fz_atom_key("q");
    if (fz_pair_new(&x.p, SEED_BASE, attach, &x) != 0)
        abort();
    fz_run(&x.p, LEASE_MS); /* voters grant nothing for a lease at start */
    for (int i = 0; i < FZ_ENGINES; i++) {
        lead(&x, i, &x.names[0], 0);
        lead(&x, i, &x.names[1], 1);
    }
    fz_run(&x.p, 3 * LEASE_MS);
    if (!leads(&x, 0, &x.names[0]) || !leads(&x, 0, &x.names[1]))
        abort(); /* the deterministic set-up must always work */
    fz_feed(&x.p, TETHER_MSG_ELECTION, data, size, SEQ_MAX, check, &x);
    for (int t = 0; t < 2 * LEASE_MS; t += FZ_TICK_MS) {
        fz_run(&x.p, FZ_TICK_MS);
        check(&x);
    }
    fz_pair_cut(&x.p);
    fz_pair_free(&x.p); /* the modules go with their engines */
    return 0;
}
