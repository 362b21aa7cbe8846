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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct el_pair {
    fz_pair_t p;
    tether_election_t *m[FZ_ENGINES];
} el_pair_t;

typedef struct name {
    uint8_t b[32];
    size_t len;
} name_t;

static int attach(void *ctx, int i, tether_engine_t *e)
{
    el_pair_t *x = ctx;
    tether_election_config_t cfg = {.lease_ms = LEASE_MS,
                                    .round_ms = FZ_HEARTBEAT_MS};

    return tether_election_new(&cfg, e, &x->m[i]);
}

static name_t name_of(const char *atom)
{
    ei_x_buff x;
    name_t n = {{0}, 0};

    if (ei_x_new_with_version(&x) < 0)
        abort();
    if (ei_x_encode_atom(&x, atom) < 0 ||
        tether_ring_canon((const uint8_t *)x.buff, (size_t)x.index, n.b,
                          sizeof n.b, &n.len) != 0)
        abort();
    ei_x_free(&x);
    return n;
}

/* Makes node i a candidate for n. */
static void lead(el_pair_t *x, int i, const name_t *n, int quorum)
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

static int leads(el_pair_t *x, int i, const name_t *n)
{
    return tether_election_fence(x->m[i], n->b, n->len, x->p.now, NULL) ==
           TETHER_ELECTION_LEADER;
}

/* Never two leaders of one name at one instant (the link is perfect and
 * both nodes are live members of each other). */
static void check(el_pair_t *x, const name_t *names, int k)
{
    for (int j = 0; j < k; j++)
        if (leads(x, 0, &names[j]) && leads(x, 1, &names[j]))
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    el_pair_t x;
    name_t names[2] = {name_of("svc"), name_of("q")};
    size_t off = 0;
    int records = 0;

    memset(&x, 0, sizeof x);
    if (fz_pair_new(&x.p, SEED_BASE, attach, &x) != 0)
        abort();
    fz_run(&x.p, LEASE_MS); /* voters grant nothing for a lease at start */
    for (int i = 0; i < FZ_ENGINES; i++) {
        lead(&x, i, &names[0], 0);
        lead(&x, i, &names[1], 1);
    }
    fz_run(&x.p, 3 * LEASE_MS);
    if (!leads(&x, 0, &names[0]) || !leads(&x, 0, &names[1]))
        abort(); /* the deterministic set-up must always work */
    while (off < size && records < SEQ_MAX) {
        size_t len = data[off++];
        if (len > size - off)
            len = size - off;
        (void)tether_engine_send(x.p.e[1], FZ_NAMES[0], TETHER_MSG_ELECTION,
                                 data + off, len, 0);
        off += len;
        records++;
        fz_run(&x.p, FZ_TICK_MS);
        check(&x, names, 2);
    }
    for (int t = 0; t < 2 * LEASE_MS; t += FZ_TICK_MS) {
        fz_run(&x.p, FZ_TICK_MS);
        check(&x, names, 2);
    }
    fz_pair_cut(&x.p);
    fz_pair_free(&x.p); /* the modules go with their engines */
    return 0;
}
