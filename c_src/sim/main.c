/*
 * sim/main.c: tether_sim, the simulator's command line.
 *
 *   tether_sim --seeds N [--start S]   run seeds S .. S+N-1 (S defaults to 1)
 *   tether_sim --seed S                replay one seed
 *   --nodes N   cluster size (default: 3..10, chosen by the seed)
 *   --steps K   chaos-phase steps (default 3000)
 *   --op-pm P   per-mille chance of a chaos operation a step (default 15)
 *   --rm-pm P   per-mille chance of a reminder write a step (default 40;
 *               0 turns reminders and their invariants off)
 *   --touched-only  check only the node each event touched (faster; the
 *               default checks every node after every operation and event)
 *   -v          print chaos operations of a single seed
 *
 * A failing seed prints one line that replays it exactly; the exit status
 * is 1 if any seed failed. The summary ends with sim_steps_per_s.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sim/sim.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: tether_sim [--seeds N [--start S] | --seed S] [--nodes N]\n"
            "                  [--steps K] [--op-pm P] [--touched-only] [-v]\n"
            "  --seeds N   run N seeds (S .. S+N-1; --start S, default 1)\n"
            "  --seed S    run (replay) exactly one seed\n"
            "  --nodes N   cluster size, 3..64 (default: 3..10 per seed)\n"
            "  --steps K   chaos-phase steps per seed (default 3000)\n"
            "  --op-pm P   per-mille chance of a chaos operation (default 15)\n"
            "  --rm-pm P   per-mille chance of a reminder write (default 40)\n"
            "  --touched-only  check only the node an event touched (faster)\n"
            "  -v          trace chaos operations to stderr\n"
            "A failing seed prints one line that replays it.\n");
}

static int parse_u64(const char *s, unsigned long long *out)
{
    char *end;

    if (s == NULL || *s == '\0')
        return -1;
    *out = strtoull(s, &end, 10);
    return *end == '\0' ? 0 : -1;
}

static double seconds(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Prints a passing seed's line: "ok seed=S nodes=N" and the run's
 * counters as name=value (user= and relayed= as delivered/sent). */
static void print_ok(unsigned long long seed, const tether_sim_config_t *cfg,
                     const tether_sim_result_t *res)
{
    const struct {
        const char *name;
        uint64_t v;
    } counts[] = {
        {"steps", res->steps},
        {"virtual_ms", res->virtual_ms},
        {"envelopes", res->envelopes_opened},
        {"sent", res->messages_sent},
        {"lost", res->messages_lost},
        {"dup", res->messages_duplicated},
        {"crashes", res->crashes},
        {"restarts", res->restarts},
        {"leaves", res->leaves},
        {"partitions", res->partitions},
        {"heals", res->heals},
        {"cuts", res->cuts},
        {NULL, 0}, /* user=delivered/sent relayed=delivered/sent */
        {"reg_ops", res->reg_ops},
        {"reg_conflicts", res->reg_conflicts},
        {"reg_resolves", res->reg_resolves},
        {"reg_names", res->reg_names},
        {"map_ops", res->map_ops},
        {"map_keys", res->map_keys},
    };

    printf("ok seed=%llu nodes=%d", seed, cfg->nodes);
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        if (counts[i].name == NULL)
            printf(" user=%llu/%llu relayed=%llu/%llu",
                   (unsigned long long)res->user_delivered,
                   (unsigned long long)res->user_sent,
                   (unsigned long long)res->relay_delivered,
                   (unsigned long long)res->relay_sent);
        else
            printf(" %s=%llu", counts[i].name, (unsigned long long)counts[i].v);
    }
    printf("\n");
}

int main(int argc, char **argv)
{
    unsigned long long seeds = 1, start = 1, nodes = 0, steps = 0, v;
    unsigned long long op_pm = 0, rm_pm = 0;
    bool rm_given = false;
    int single = 0, verbose = 0, failed = 0, touched_only = 0;
    double t0, dt;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "-v") == 0) {
            verbose = 1;
            continue;
        } else if (strcmp(a, "-vv") == 0) {
            verbose = 2;
            continue;
        } else if (strcmp(a, "--touched-only") == 0) {
            touched_only = 1;
            continue;
        }
        if (parse_u64(val, &v) < 0) {
            usage(stderr);
            return 2;
        }
        i++;
        if (strcmp(a, "--seeds") == 0)
            seeds = v;
        else if (strcmp(a, "--start") == 0)
            start = v;
        else if (strcmp(a, "--seed") == 0) {
            start = v;
            seeds = 1;
            single = 1;
        } else if (strcmp(a, "--nodes") == 0)
            nodes = v;
        else if (strcmp(a, "--steps") == 0)
            steps = v;
        else if (strcmp(a, "--op-pm") == 0)
            op_pm = v;
        else if (strcmp(a, "--rm-pm") == 0) {
            rm_pm = v;
            rm_given = true;
        }
        else {
            usage(stderr);
            return 2;
        }
    }
    if (nodes != 0 && (nodes < 3 || nodes > TETHER_SIM_NODES_MAX)) {
        fprintf(stderr, "tether_sim: --nodes must be 3..%d\n",
                TETHER_SIM_NODES_MAX);
        return 2;
    }
    t0 = seconds();
    for (unsigned long long k = 0; k < seeds; k++) {
        tether_sim_config_t cfg;
        tether_sim_result_t res;
        char line[256];
        int rc;

        tether_sim_config_default(&cfg, start + k);
        if (nodes)
            cfg.nodes = (int)nodes;
        if (steps)
            cfg.steps = steps;
        if (op_pm)
            cfg.op_pm = (uint32_t)op_pm;
        if (rm_given)
            cfg.rm_pm = (uint32_t)rm_pm;
        if (touched_only)
            cfg.check_all = 0;
        cfg.verbose = (single || seeds == 1) ? verbose : 0;
        rc = tether_sim_run(&cfg, &res);
        tether_sim_replay_line(&cfg, line, sizeof line);
        if (rc < 0) {
            printf("ERROR seed=%llu setup failed (%d); replay: %s\n", start + k,
                   rc, line);
            failed++;
        } else if (rc > 0) {
            printf("FAIL seed=%llu %s; replay: %s\n", start + k, res.reason,
                   line);
            failed++;
        } else if (single) {
            print_ok(start + k, &cfg, &res);
        }
        fflush(stdout);
    }
    dt = seconds() - t0;
    printf("seeds: %llu failed: %d steps: %llu time_s: %.2f\n", seeds, failed,
           (unsigned long long)tether_sim_steps_total(), dt);
    printf("sim_steps_per_s: %.0f\n",
           dt > 0 ? (double)tether_sim_steps_total() / dt : 0.0);
    return failed ? 1 : 0;
}
