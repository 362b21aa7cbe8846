/*
 * test/sim_check.h: the simulator check the module suites share (header
 * only, static): a short run must hold every invariant, and the same run
 * with the module's checker broken on purpose must fail (a checker that
 * cannot fail proves nothing).
 */
#ifndef TETHER_TEST_SIM_CHECK_H
#define TETHER_TEST_SIM_CHECK_H

#include <criterion/criterion.h>
#include <stddef.h>
#include <string.h>

#include "sim/sim.h"

/* The offset of a checker's break flag in tether_sim_config_t, for
 * sim_holds_and_breaks(): SIM_BREAK(break_reg_check). */
#define SIM_BREAK(flag) offsetof(tether_sim_config_t, flag)

/*
 * Runs the simulator from seed with 5 nodes for 1500 steps: it must hold
 * every invariant. Then runs it again with the break flag at offset brk
 * (SIM_BREAK()) set: it must fail, saying `why` in its reason (unless
 * why is NULL). Returns the result of the first, passing run, for the
 * caller's checks of what happened in it.
 */
static inline tether_sim_result_t
sim_holds_and_breaks(uint64_t seed, size_t brk, const char *why)
{
    tether_sim_config_t cfg;
    tether_sim_result_t passed, broken;

    tether_sim_config_default(&cfg, seed);
    cfg.nodes = 5;
    cfg.steps = 1500;
    cr_assert_eq(tether_sim_run(&cfg, &passed), 0, "%s", passed.reason);
    *(int *)((char *)&cfg + brk) = 1;
    cr_assert_eq(tether_sim_run(&cfg, &broken), 1);
    if (why != NULL)
        cr_assert_not_null(strstr(broken.reason, why), "%s", broken.reason);
    return passed;
}

#endif /* TETHER_TEST_SIM_CHECK_H */
