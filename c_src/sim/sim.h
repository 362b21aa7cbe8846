/*
 * sim/sim.h: the deterministic cluster simulator.
 *
 * Runs 3..TETHER_SIM_NODES_MAX engines (core/engine.h) in one process over a
 * seeded network with a virtual clock: per-message delay (so reordering),
 * loss and duplication, partitions in both modes, connection cuts, crashes
 * and restarts with a new incarnation, leaves, and module traffic. One
 * step is one event (a message delivered or a node ticked at its
 * deadline), preceded at random by one chaos operation.
 *
 * A run has two phases. Chaos: `steps` steps with faults (the operator
 * re-joins a node whose join contact crashed or left before answering).
 * Quiet: faults stop, every partition is healed (twice, a network delay
 * apart, so no partition gossip still in flight can re-open one), every
 * member re-joins through one anchor as a seed list would (when every
 * node that knew of a joiner crashed or left, that knowledge is lost, which
 * no gossip can undo), and the cluster runs for the agreement bound
 * (default TTL + 20 heartbeats) plus a margin of virtual time.
 *
 * Invariants, checked on every node after every chaos operation and every
 * step (check_all, the default; a local API call such as heal() must leave
 * its own node's view right before the next input arrives), or only on
 * the node a step touched (check_all = 0, faster):
 *   - no envelope is accepted twice (receiver, session id, sequence
 *     number), via the engine's open hook;
 *   - a node that left is never re-added: once a node has seen the leave
 *     tombstone of (name, inc), it never again holds that incarnation alive
 *     nor lists it as a member;
 *   - members() is sorted;
 *   - across a drop partition no node lists the other side as a member;
 *   - across a defer partition a live member stays live while its
 *     connection holds (calls hang rather than fail with nodedown);
 *   - module messages are delivered at most once;
 *   - from `agree_bound_ms` after the quiet phase's last heal on, every
 *     running member that has not left lists exactly the running members
 *     that have not left;
 *   - registry (core/registry.h; every node runs one, and chaos registers
 *     and unregisters names from a small pool, so partitions make
 *     conflicts): at the end of the quiet phase every running member that
 *     has not left holds the identical table, and every entry is held by
 *     its owner itself (so no entry survives its unregistration, a lost
 *     conflict, or its owner's crash, restart or leave), and every
 *     conflict is settled (one entry per name). A third of the names are
 *     registered with a resolver; the shell answers each resolve request
 *     with a verdict drawn from the seed (earlier, later or neither). Half
 *     of the registrations take the direct path (the shell sends the
 *     sealed broadcast itself, tether_registry_register_sealed).
 *   - election (core/election.h; chaos makes nodes lead and resign three
 *     names with random priorities: two in the default mode, one in
 *     quorum mode over the first three or five nodes; every node's wall
 *     clock is off by up to SIM_EL_SKEW ms): in the default mode, every
 *     new leader's fence exceeds every fence established before by
 *     itself or by a leader whose view listed it live then (it
 *     acknowledged that fence), and a node leads exactly when its
 *     actions say so; in quorum mode, never two leaders at one instant
 *     and never two leaderships whose leases overlap in virtual time,
 *     and every new leader's fence exceeds every earlier one cluster-
 *     wide. At the end of the quiet phase, per name, exactly the best
 *     candidate (priority, then name) of the running members leads, all
 *     of them name it, and in the default mode its fence exceeds every
 *     fence any running member established.
 * Everything derives from the seed, so a failing seed replays exactly.
 */
#ifndef TETHER_SIM_SIM_H
#define TETHER_SIM_SIM_H

#include <stddef.h>
#include <stdint.h>

#define TETHER_SIM_NODES_MAX  64
#define TETHER_SIM_REASON_MAX 512

typedef struct tether_sim_config {
    uint64_t seed;
    int nodes;             /* 3..TETHER_SIM_NODES_MAX */
    uint64_t steps;        /* chaos-phase steps */
    uint32_t heartbeat_ms; /* engine heartbeat */
    uint32_t ttl_ms;       /* engine lease */
    uint32_t delay_min_ms; /* network delay range */
    uint32_t delay_max_ms;
    uint32_t loss_pm; /* per-mille message loss (chaos only) */
    uint32_t dup_pm;  /* per-mille duplication (chaos only) */
    uint32_t op_pm;   /* per-mille chance of a chaos op a step */
    uint32_t user_pm; /* per-mille chance of a module message */
    uint32_t reg_pm;  /* per-mille chance of a registry operation */
    uint32_t el_pm;   /* per-mille chance of an election operation */
    uint32_t rm_pm;   /* per-mille chance of a reminder write (default 40;
                         0: off); the reminders invariants: one fence per
                         write, no duplicate or fire after a cancel without
                         churn, no loss with fewer crashes or leaves than
                         the write's replicas */
    uint32_t map_pm;  /* per-mille chance of a map write */
    uint64_t agree_bound_ms;  /* 0: derived from heartbeat and TTL */
    uint64_t max_total_steps; /* safety cap on all steps */
    /* Test hooks that break a checker on purpose (must make a run fail). */
    int break_members_check; /* expect a member that does not exist */
    int break_dup_check;     /* record the first accepted envelope twice */
    int break_reg_check;     /* expect an extra registry entry */
    int break_ring_check;    /* compare each shard with the next one */
    int break_el_check;      /* count every node as one that acknowledged an
                                impossibly high fence */
    int check_all;           /* 1 (default): check every node after every chaos
                                operation and event; 0: only the node an event
                                touched */
    int verbose;             /* print chaos operations to stderr */
} tether_sim_config_t;

typedef struct tether_sim_result {
    int failed;
    char reason[TETHER_SIM_REASON_MAX];
    uint64_t steps;      /* events processed (both phases) */
    uint64_t fail_step;  /* step of the first violation */
    uint64_t virtual_ms; /* virtual time at the end */
    uint64_t envelopes_opened;
    uint64_t messages_sent, messages_lost, messages_duplicated;
    uint64_t crashes, restarts, leaves, partitions, heals, cuts;
    uint64_t user_sent, user_delivered;
    uint64_t relay_sent, relay_delivered; /* of user_*: round a cut path */
    uint64_t reg_ops, reg_conflicts, reg_names; /* names left at the end */
    uint64_t reg_resolves; /* resolver verdicts given by the shells */
    uint64_t el_ops, el_elected, el_revoked; /* election */
    uint64_t map_ops, map_keys; /* map writes; live keys at the end */
} tether_sim_result_t;

/* Fills a config with the defaults for one seed (node count from seed). */
void tether_sim_config_default(tether_sim_config_t *cfg, uint64_t seed);

/*
 * Runs one simulation. Returns 0 if every invariant held, 1 if one failed
 * (res->reason says which, at res->fail_step), or a negative TETHER_E*
 * code if the run could not be set up.
 */
int tether_sim_run(const tether_sim_config_t *cfg, tether_sim_result_t *res);

/* Writes the one command line that replays cfg into buf. */
void tether_sim_replay_line(const tether_sim_config_t *cfg, char *buf,
                            size_t cap);

/* Steps run by every simulation in this process so far (benchmarks). */
uint64_t tether_sim_steps_total(void);

#endif /* TETHER_SIM_SIM_H */
