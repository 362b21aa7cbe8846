/* Criterion suite for core/hlc.c: monotonic issue, merge, bounds. */
#include <criterion/criterion.h>

#include "core/hlc.h"

Test(hlc, pack_round_trips)
{
    uint64_t ts = tether__hlc_pack(123456789, 42);

    cr_assert_eq(tether__hlc_wall(ts), 123456789);
    cr_assert_eq(tether__hlc_logical(ts), 42);
    cr_assert_lt(tether__hlc_pack(5, 0xFFFF), tether__hlc_pack(6, 0));
}

Test(hlc, now_is_strictly_monotonic_even_if_the_clock_steps_back)
{
    tether_hlc_t c;
    uint64_t prev = 0, ts, top = 0;
    const uint64_t clock[] = {100, 100, 101, 90, 90, 50, 102, 102, 200};

    tether__hlc_init(&c, 0);
    for (size_t i = 0; i < sizeof clock / sizeof clock[0]; i++) {
        cr_assert_eq(tether__hlc_now(&c, clock[i], &ts), 0);
        cr_assert_gt(ts, prev, "step %zu", i);
        top = clock[i] > top ? clock[i] : top;
        cr_assert_eq(tether__hlc_wall(ts), top,
                     "wall part is the highest physical time seen");
        prev = ts;
    }
    cr_assert_eq(tether__hlc_wall(prev), 200);
    cr_assert_eq(tether__hlc_logical(prev), 0);
}

Test(hlc, update_orders_after_remote_and_local)
{
    tether_hlc_t a, b;
    uint64_t ta, tb, tr;

    tether__hlc_init(&a, 0);
    tether__hlc_init(&b, 0);
    cr_assert_eq(tether__hlc_now(&a, 1000, &ta), 0);
    /* b's physical clock lags: the receive still orders after the send. */
    cr_assert_eq(tether__hlc_update(&b, 900, ta, &tr), 0);
    cr_assert_gt(tr, ta);
    cr_assert_eq(tether__hlc_wall(tr), 1000);
    cr_assert_eq(tether__hlc_now(&b, 901, &tb), 0);
    cr_assert_gt(tb, tr);
    /* A stale remote stamp does not move the clock back. */
    cr_assert_eq(tether__hlc_update(&b, 902, tether__hlc_pack(10, 0), &tr), 0);
    cr_assert_gt(tr, tb);
    /* Physical time ahead of everything resets the counter. */
    cr_assert_eq(tether__hlc_update(&b, 5000, ta, &tr), 0);
    cr_assert_eq(tr, tether__hlc_pack(5000, 0));
}

Test(hlc, remote_stamp_too_far_ahead_is_refused)
{
    tether_hlc_t c;
    uint64_t ts, before;

    tether__hlc_init(&c, 1000);
    cr_assert_eq(tether__hlc_now(&c, 100, &ts), 0);
    before = c.last;
    cr_assert_eq(tether__hlc_update(&c, 100, tether__hlc_pack(5000, 0), &ts),
                 TETHER_EINVAL);
    cr_assert_eq(c.last, before, "the clock is unchanged");
    cr_assert_eq(tether__hlc_update(&c, 100, tether__hlc_pack(1100, 0), &ts),
                 0);
}

Test(hlc, logical_overflow_and_huge_time_are_errors)
{
    tether_hlc_t c;
    uint64_t ts;

    tether__hlc_init(&c, 0);
    cr_assert_eq(tether__hlc_now(&c, TETHER_HLC_WALL_MAX + 1, &ts),
                 TETHER_EINVAL);
    c.last = tether__hlc_pack(50, TETHER_HLC_LOGICAL_MAX);
    cr_assert_eq(tether__hlc_now(&c, 50, &ts), TETHER_ETOOBIG);
    cr_assert_eq(tether__hlc_now(&c, 51, &ts), 0);
}
