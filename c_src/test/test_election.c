/*
 * Criterion suite for core/election.c, through real engines in the
 * harness (test/harness.h: heartbeat 100 ms, TTL 400 ms, a 10 ms tick):
 * the default mode's winner and fences, handover on resign, a heal's
 * fresh fence above both sides', quorum leases that never overlap, bad
 * input, and the simulator's invariant (which must catch a broken
 * check).
 */
#include <criterion/criterion.h>
#include <string.h>

#include "core/election.h"
#include "core/ring.h"
#include "harness.h"
#include "sim/sim.h"
#include "test/sim_check.h"

#define LEASE_MS 400

typedef struct el_log {
    int elected, revoked;
    uint64_t fence; /* the last ELECTED fence */
} el_log_t;

typedef struct el_h {
    harness_t h;
    tether_election_t *m[H_MAX];
    el_log_t log[H_MAX];
} el_h_t;

/* The canonical name of the atom `a`. */
typedef struct el_name {
    uint8_t b[64];
    size_t len;
} el_name_t;

static el_name_t name_of(const char *a)
{
    ei_x_buff x;
    el_name_t n;

    cr_assert_eq(ei_x_new_with_version(&x), 0);
    cr_assert_eq(ei_x_encode_atom(&x, a), 0);
    cr_assert_eq(tether_ring_canon((const uint8_t *)x.buff, (size_t)x.index,
                                   n.b, sizeof n.b, &n.len),
                 0);
    ei_x_free(&x);
    return n;
}

static void on_leader(void *ctx, int i, const tether_action_t *a)
{
    el_h_t *x = ctx;

    if (a->kind != TETHER_ACT_LEADER)
        return;
    if (a->u.leader.elected) {
        cr_assert_gt(a->u.leader.fence, x->log[i].fence,
                     "node %d: each ELECTED fence exceeds the last", i);
        x->log[i].fence = a->u.leader.fence;
        x->log[i].elected++;
    } else {
        x->log[i].revoked++;
    }
}

static void start(el_h_t *x, int n)
{
    tether_election_config_t cfg = {.lease_ms = LEASE_MS, .round_ms = 100};

    memset(x, 0, sizeof *x);
    h_init(&x->h, n);
    x->h.on_action = on_leader;
    x->h.action_ctx = x;
    h_start_all(&x->h);
    for (int i = 0; i < n; i++)
        cr_assert_eq(tether_election_new(&cfg, x->h.e[i], &x->m[i]), 0);
    h_join_all(&x->h);
}

/* Makes node i a candidate for n; returns the outcome. */
static int lead(el_h_t *x, int i, const el_name_t *n,
                const tether_election_opts_t *o)
{
    tether_election_opts_t none = {0};
    char a[16];
    int outcome = -1;
    uint64_t fence = 0;
    ei_x_buff pid; /* any term stands for the shell's pid */

    snprintf(a, sizeof a, "pid-%d", i);
    cr_assert_eq(ei_x_new_with_version(&pid), 0);
    cr_assert_eq(ei_x_encode_atom(&pid, a), 0);
    cr_assert_eq(tether_election_lead(
                     x->m[i], n->b, n->len, (const uint8_t *)pid.buff,
                     (size_t)pid.index, o ? o : &none, &outcome, &fence),
                 0);
    ei_x_free(&pid);
    if (outcome == TETHER_ELECTION_LEADER)
        x->log[i].fence = fence;
    return outcome;
}

/* Node i's fence for n while it leads, else 0. */
static uint64_t fence_of(el_h_t *x, int i, const el_name_t *n)
{
    uint64_t f = 0;
    if (tether_election_fence(x->m[i], n->b, n->len, x->h.now, &f) !=
        TETHER_ELECTION_LEADER)
        return 0;
    return f;
}

/* The nodes among the first k that lead n, as a bit set. */
static unsigned leaders(el_h_t *x, int k, const el_name_t *n)
{
    unsigned set = 0;
    for (int i = 0; i < k; i++)
        if (x->h.e[i] != NULL && fence_of(x, i, n) != 0)
            set |= 1u << i;
    return set;
}

/* Every node names node `who` as the leader of n. */
static void assert_all_name(el_h_t *x, int k, const el_name_t *n, int who)
{
    for (int i = 0; i < k; i++) {
        char node[TETHER_NODE_NAME_MAX + 1];
        cr_assert_eq(tether_election_leader(x->m[i], n->b, n->len, x->h.now,
                                            node, NULL, 0, NULL, NULL),
                     0, "node %d knows a leader", i);
        cr_assert_str_eq(node, x->h.names[who], "node %d", i);
    }
}

/* Drop partition between {0..k-1} and the rest: no bytes flow across,
 * the sessions go down. */
static void split(el_h_t *x, int k)
{
    for (int i = 0; i < x->h.n; i++)
        for (int j = 0; j < x->h.n; j++)
            if ((i < k) != (j < k)) {
                x->h.link[i][j] = 0;
                h_cut(&x->h, i, j);
            }
}

static void heal(el_h_t *x)
{
    for (int i = 0; i < x->h.n; i++)
        for (int j = 0; j < x->h.n; j++)
            if (!x->h.link[i][j]) {
                h_cut(&x->h, i, j); /* the next CONNECT dials afresh */
                x->h.link[i][j] = 1;
            }
    for (int i = 0; i < x->h.n; i++)
        for (int j = i + 1; j < x->h.n; j++)
            h_peer_up(&x->h, i, j);
}

Test(election, the_lowest_node_wins_then_the_highest_priority)
{
    el_h_t x;
    el_name_t n = name_of("svc");
    tether_election_opts_t high = {.priority = 5};
    tether_election_candidate_t c[4];
    uint64_t f0, f1;

    start(&x, 3);
    for (int i = 2; i >= 0; i--)
        cr_assert_neq(lead(&x, i, &n, NULL), TETHER_ELECTION_NO_QUORUM);
    h_run(&x.h, 500);
    cr_assert_eq(leaders(&x, 3, &n), 1u, "a leads alone");
    assert_all_name(&x, 3, &n, 0);
    f0 = fence_of(&x, 0, &n);
    cr_assert_eq(x.log[0].fence, f0);
    cr_assert_eq(tether_election_candidates(x.m[1], n.b, n.len, c, 4), 3);
    cr_assert_str_eq(c[0].node, "a@test");
    cr_assert_str_eq(c[2].node, "c@test");
    /* c campaigns again at a higher priority: it takes over, a is told. */
    cr_assert_eq(tether_election_resign(x.m[2], n.b, n.len), 0);
    lead(&x, 2, &n, &high);
    h_run(&x.h, 500);
    cr_assert_eq(leaders(&x, 3, &n), 4u, "c leads alone");
    assert_all_name(&x, 3, &n, 2);
    f1 = fence_of(&x, 2, &n);
    cr_assert_gt(f1, f0, "the new term's fence exceeds the old");
    cr_assert_eq(x.log[0].revoked, 1);
    cr_assert_eq(tether_election_candidates(x.m[0], n.b, n.len, c, 4), 3);
    cr_assert_str_eq(c[0].node, "c@test");
    cr_assert_eq(c[0].priority, 5);
    h_free(&x.h);
}

Test(election, resign_hands_over_within_a_heartbeat)
{
    el_h_t x;
    el_name_t n = name_of("svc");
    uint64_t f0;

    start(&x, 3);
    for (int i = 0; i < 3; i++)
        lead(&x, i, &n, NULL);
    h_run(&x.h, 500);
    f0 = fence_of(&x, 0, &n);
    cr_assert_gt(f0, 0);
    cr_assert_eq(tether_election_resign(x.m[0], n.b, n.len), 0);
    cr_assert_eq(tether_election_resign(x.m[0], n.b, n.len), TETHER_ENOTFOUND);
    h_run(&x.h, 100);
    cr_assert_eq(leaders(&x, 3, &n), 2u, "b leads after one heartbeat");
    cr_assert_gt(fence_of(&x, 1, &n), f0);
    cr_assert_eq(x.log[0].revoked, 0, "no REVOKED for a resign");
    h_free(&x.h);
}

Test(election, a_heal_mints_a_fresh_fence_above_both_sides)
{
    el_h_t x;
    el_name_t n = name_of("svc");
    uint64_t fa, fc;
    int elected_a;

    start(&x, 4);
    for (int i = 0; i < 4; i++)
        lead(&x, i, &n, NULL);
    h_run(&x.h, 500);
    cr_assert_eq(leaders(&x, 4, &n), 1u);
    split(&x, 2);
    h_run(&x.h, 1500);
    cr_assert_eq(leaders(&x, 4, &n), 1u | 4u, "a and c lead their sides");
    fa = fence_of(&x, 0, &n);
    fc = fence_of(&x, 2, &n);
    elected_a = x.log[0].elected;
    heal(&x);
    h_run(&x.h, 1500);
    cr_assert_eq(leaders(&x, 4, &n), 1u, "a leads the healed cluster");
    assert_all_name(&x, 4, &n, 0);
    cr_assert_gt(x.log[0].elected, elected_a, "a is told ELECTED again");
    cr_assert_gt(fence_of(&x, 0, &n), fa > fc ? fa : fc);
    cr_assert_eq(x.log[2].revoked, 1, "c stepped down");
    h_free(&x.h);
}

Test(election, quorum_leases_never_overlap)
{
    el_h_t x;
    el_name_t n = name_of("q");
    el_name_t alone = name_of("q2");
    const char *voters[] = {"a@test", "b@test", "c@test"};
    tether_election_opts_t q = {.quorum = 1, .voters = voters, .nvoters = 3};
    uint64_t f0;

    start(&x, 3);
    h_run(&x.h, LEASE_MS); /* voters grant nothing for a lease at start */
    for (int i = 0; i < 3; i++)
        lead(&x, i, &n, &q);
    h_run(&x.h, 2 * LEASE_MS);
    cr_assert_eq(leaders(&x, 3, &n), 1u);
    f0 = fence_of(&x, 0, &n);
    /* a is cut off: it steps down; b leads later, never at once. */
    split(&x, 1);
    for (int t = 0; t < 3 * LEASE_MS; t += 10) {
        unsigned l;
        h_run(&x.h, 10);
        l = leaders(&x, 3, &n);
        cr_assert(l == 0 || l == 1u || l == 2u, "leaders %#x at %llu", l,
                  (unsigned long long)x.h.now);
    }
    cr_assert_eq(leaders(&x, 3, &n), 2u);
    cr_assert_gt(fence_of(&x, 1, &n), f0);
    cr_assert_eq(x.log[0].revoked, 1);
    cr_assert_eq(tether_election_fence(x.m[0], n.b, n.len, x.h.now, NULL),
                 TETHER_ELECTION_NO_QUORUM);
    cr_assert_eq(lead(&x, 0, &alone, &q), TETHER_ELECTION_NO_QUORUM);
    h_free(&x.h);
}

/* The clock of tether_election_name_fence in these tests. */
static uint64_t harness_clock(const void *ctx)
{
    return ((const el_h_t *)ctx)->h.now;
}

Test(election, a_found_name_reads_as_the_locked_path_without_a_lock)
{
    el_h_t x;
    el_name_t n = name_of("svc");
    const tether_election_name_t *h0, *h1;
    uint64_t f = 0, g = 0;

    start(&x, 2);
    cr_assert_null(tether_election_find(x.m[0], n.b, n.len));
    lead(&x, 0, &n, NULL);
    lead(&x, 1, &n, NULL);
    h0 = tether_election_find(x.m[0], n.b, n.len);
    h1 = tether_election_find(x.m[1], n.b, n.len);
    cr_assert_not_null(h0);
    cr_assert_not_null(h1);
    h_run(&x.h, 500);
    cr_assert_eq(tether_election_name_fence(h0, harness_clock, &x, &f),
                 TETHER_ELECTION_LEADER);
    cr_assert_eq(f, fence_of(&x, 0, &n));
    cr_assert_eq(tether_election_name_fence(h1, harness_clock, &x, NULL),
                 TETHER_ELECTION_FOLLOWER);
    /* The same names, found before, follow the handover. */
    cr_assert_eq(tether_election_resign(x.m[0], n.b, n.len), 0);
    h_run(&x.h, 500);
    cr_assert_eq(tether_election_find(x.m[0], n.b, n.len), h0);
    cr_assert_eq(tether_election_name_fence(h0, harness_clock, &x, NULL),
                 TETHER_ELECTION_FOLLOWER);
    cr_assert_eq(tether_election_name_fence(h1, harness_clock, &x, &g),
                 TETHER_ELECTION_LEADER);
    cr_assert_gt(g, f);
    h_free(&x.h);
}

Test(election, bad_input_is_refused)
{
    el_h_t x;
    el_name_t n = name_of("svc");
    const char *voters[] = {"a@test", "b@test"};
    const char *other[] = {"a@test", "c@test"};
    tether_election_opts_t q = {.quorum = 1, .voters = voters, .nvoters = 2};
    tether_election_opts_t q2 = {.quorum = 1, .voters = other, .nvoters = 2};
    tether_election_opts_t empty = {.quorum = 1};
    tether_election_opts_t many = {.quorum = 1,
                                   .voters = voters,
                                   .nvoters = TETHER_ELECTION_VOTERS_MAX + 1};
    static const uint8_t junk[] = {131, 100, 0, 200, 'a'};
    static const uint8_t p[] = {131, 97, 1}; /* the term 1 */
    static uint8_t big[TETHER_ELECTION_NAME_MAX + 8];
    uint64_t f;
    int out;
    ei_x_buff m;

    start(&x, 3);
    cr_assert_eq(
        tether_election_lead(x.m[0], NULL, 0, p, sizeof p, &q, &out, &f),
        TETHER_EINVAL);
    cr_assert_eq(tether_election_lead(x.m[0], junk, sizeof junk, p, sizeof p,
                                      &q, &out, &f),
                 TETHER_EINVAL);
    big[0] = 131;
    cr_assert_eq(tether_election_lead(x.m[0], big, sizeof big, p, sizeof p, &q,
                                      &out, &f),
                 TETHER_EINVAL);
    cr_assert_eq(
        tether_election_lead(x.m[0], n.b, n.len, NULL, 0, &q, &out, &f),
        TETHER_EINVAL);
    cr_assert_eq(
        tether_election_lead(x.m[0], n.b, n.len, p, sizeof p, &empty, &out, &f),
        TETHER_EINVAL);
    cr_assert_eq(
        tether_election_lead(x.m[0], n.b, n.len, p, sizeof p, &many, &out, &f),
        TETHER_EINVAL);
    cr_assert_eq(tether_election_resign(x.m[0], n.b, n.len), TETHER_ENOTFOUND);
    cr_assert_neq(lead(&x, 0, &n, &q), TETHER_ELECTION_VOTERS_MISMATCH);
    cr_assert_eq(
        tether_election_lead(x.m[0], n.b, n.len, p, sizeof p, &q, &out, &f),
        TETHER_EEXIST);
    h_run(&x.h, 300);
    cr_assert_eq(lead(&x, 1, &n, &q2), TETHER_ELECTION_VOTERS_MISMATCH);
    /* Garbage election messages from a member: counted, nothing else. */
    h_etf_begin(&m, 2, "el_rec");
    cr_assert_eq(ei_x_encode_atom(&m, "junk"), 0);
    h_send_etf(&x.h, 1, 0, TETHER_MSG_ELECTION, &m);
    h_etf_begin(&m, 10, "el_grant");
    for (int i = 0; i < 9; i++)
        cr_assert_eq(ei_x_encode_long(&m, -1), 0);
    h_send_etf(&x.h, 1, 0, TETHER_MSG_ELECTION, &m);
    h_etf_begin(&m, 1, "el_nonsense");
    h_send_etf(&x.h, 2, 0, TETHER_MSG_ELECTION, &m);
    cr_assert_geq(tether_election_stats(x.m[0])->bad_msgs, 2);
    h_run(&x.h, 300);
    cr_assert_eq(tether_election_candidates(x.m[2], n.b, n.len, NULL, 0), 1);
    h_free(&x.h);
}

Test(election, sim_invariant_holds_and_catches_a_broken_check)
{
    tether_sim_result_t res =
        sim_holds_and_breaks(11, SIM_BREAK(break_el_check), NULL);

    cr_assert_gt(res.el_elected, 0);
}
