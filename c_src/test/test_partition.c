/* Criterion suite for core/partition.c: the partition table (modes,
 * direction, heal, tombstones, bounds, wire form) and the defer queue
 * (order, bound, overflow counting). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/codec.h"
#include "core/partition.h"

static tether_partition_table_t t;
static const char *const A[] = {"a@h", "b@h"};
static const char *const B[] = {"c@h"};
static const char *const C[] = {"d@h"};

static void setup(void)
{
    tether__partition_table_init(&t);
}

static void teardown(void)
{
    tether__partition_table_fini(&t);
}

TestSuite(partition, .init = setup, .fini = teardown);

Test(partition, separates_both_directions_only_across_groups)
{
    cr_assert_eq(
        tether__partition_add(&t, 1, TETHER_PARTITION_DROP, 0, A, 2, B, 1), 1);
    cr_assert_eq(tether__partition_between(&t, "a@h", "c@h"),
                 TETHER_PARTITION_DROP);
    cr_assert_eq(tether__partition_between(&t, "c@h", "b@h"),
                 TETHER_PARTITION_DROP);
    cr_assert_eq(tether__partition_between(&t, "a@h", "b@h"),
                 TETHER_PARTITION_NONE, "same group");
    cr_assert_eq(tether__partition_between(&t, "a@h", "d@h"),
                 TETHER_PARTITION_NONE, "not in any group");
}

Test(partition, drop_wins_over_defer)
{
    cr_assert_eq(
        tether__partition_add(&t, 1, TETHER_PARTITION_DEFER, 0, A, 2, B, 1), 1);
    cr_assert_eq(tether__partition_between(&t, "a@h", "c@h"),
                 TETHER_PARTITION_DEFER);
    cr_assert_eq(
        tether__partition_add(&t, 2, TETHER_PARTITION_DROP, 0, B, 1, A, 1), 1);
    cr_assert_eq(tether__partition_between(&t, "a@h", "c@h"),
                 TETHER_PARTITION_DROP);
    cr_assert_eq(tether__partition_between(&t, "b@h", "c@h"),
                 TETHER_PARTITION_DEFER);
}

Test(partition, heal_is_final)
{
    cr_assert_eq(
        tether__partition_add(&t, 9, TETHER_PARTITION_DROP, 0, A, 2, B, 1), 1);
    cr_assert_eq(tether__partition_heal(&t, 9), 1);
    cr_assert_eq(tether__partition_heal(&t, 9), 0);
    cr_assert_eq(tether__partition_heal(&t, 10), TETHER_ENOTFOUND);
    cr_assert_eq(tether__partition_between(&t, "a@h", "c@h"),
                 TETHER_PARTITION_NONE);
    /* Stale gossip of the active entry does not reopen it. */
    cr_assert_eq(
        tether__partition_add(&t, 9, TETHER_PARTITION_DROP, 0, A, 2, B, 1), 0);
    cr_assert_eq(t.active, 0);
    cr_assert(tether__partition_find(&t, 9)->healed);
}

Test(partition, heal_all)
{
    cr_assert_eq(
        tether__partition_add(&t, 1, TETHER_PARTITION_DROP, 0, A, 2, B, 1), 1);
    cr_assert_eq(
        tether__partition_add(&t, 2, TETHER_PARTITION_DEFER, 0, A, 2, C, 1), 1);
    cr_assert_eq(tether__partition_heal_all(&t), 2);
    cr_assert_eq(tether__partition_heal_all(&t), 0);
    cr_assert_eq(t.active, 0);
    cr_assert_eq(t.n, 2, "tombstones are kept");
}

Test(partition, rejects_bad_groups)
{
    const char *const overlap[] = {"c@h", "a@h"};
    const char *const empty_name[] = {""};

    cr_assert_eq(tether__partition_add(&t, 1, TETHER_PARTITION_DROP, 0, A, 2,
                                       overlap, 2),
                 TETHER_EINVAL);
    cr_assert_eq(
        tether__partition_add(&t, 1, TETHER_PARTITION_DROP, 0, A, 0, B, 1),
        TETHER_EINVAL);
    cr_assert_eq(tether__partition_add(&t, 1, TETHER_PARTITION_DROP, 0, A, 2,
                                       empty_name, 1),
                 TETHER_EINVAL);
    cr_assert_eq(tether__partition_add(&t, 1, 0, 0, A, 2, B, 1), TETHER_EINVAL);
    cr_assert_eq(t.n, 0);
}

Test(partition, full_table_evicts_oldest_tombstone_never_an_active_entry)
{
    for (uint64_t r = 1; r <= TETHER_PARTITIONS_MAX; r++)
        cr_assert_eq(tether__partition_add(&t, r * 10, TETHER_PARTITION_DROP, 0,
                                           A, 2, B, 1),
                     1);
    cr_assert_eq(
        tether__partition_add(&t, 5, TETHER_PARTITION_DROP, 0, A, 2, B, 1),
        TETHER_ETOOBIG);
    cr_assert_eq(tether__partition_heal(&t, 300), 1);
    cr_assert_eq(tether__partition_heal(&t, 200), 1);
    cr_assert_eq(
        tether__partition_add(&t, 5, TETHER_PARTITION_DROP, 0, A, 2, B, 1), 1);
    cr_assert_null(tether__partition_find(&t, 200), "oldest tombstone went");
    cr_assert_not_null(tether__partition_find(&t, 300));
    for (size_t i = 1; i < t.n; i++)
        cr_assert_lt(t.v[i - 1].ref, t.v[i].ref, "sorted by ref");
}

Test(partition, wire_round_trip)
{
    tether_partition_table_t u;
    ei_x_buff x;
    int idx = 1, changed, behind;

    tether__partition_table_init(&u);
    cr_assert_eq(
        tether__partition_add(&t, 77, TETHER_PARTITION_DEFER, 0, A, 2, B, 1),
        1);
    cr_assert_eq(
        tether__partition_add(&t, 78, TETHER_PARTITION_DROP, 1, A, 1, C, 1), 1);
    ei_x_new_with_version(&x);
    cr_assert_eq(tether__partition_encode(&t, &x), 0);
    cr_assert_eq(tether__etf_validate(x.buff, (size_t)x.index), 0);
    cr_assert_eq(
        tether__partition_decode_merge(&u, x.buff, &idx, &changed, &behind), 0);
    cr_assert(changed);
    cr_assert_not(behind);
    cr_assert_eq(tether__partition_digest(&u), tether__partition_digest(&t));
    cr_assert_eq(tether__partition_between(&u, "b@h", "c@h"),
                 TETHER_PARTITION_DEFER);
    cr_assert(tether__partition_find(&u, 78)->healed);
    ei_x_free(&x);

    /* An empty table is a valid (empty) list. */
    tether__partition_table_fini(&u);
    tether__partition_table_init(&u);
    ei_x_new_with_version(&x);
    cr_assert_eq(tether__partition_encode(&u, &x), 0);
    cr_assert_eq(tether__etf_validate(x.buff, (size_t)x.index), 0);
    idx = 1;
    cr_assert_eq(
        tether__partition_decode_merge(&t, x.buff, &idx, &changed, &behind), 0);
    cr_assert(behind, "the empty sender lacks our entries");
    ei_x_free(&x);
    tether__partition_table_fini(&u);
}

Test(partition, malformed_wire_entries_are_refused)
{
    ei_x_buff x;
    int idx = 1, changed, behind;

    ei_x_new_with_version(&x);
    ei_x_encode_list_header(&x, 1);
    ei_x_encode_tuple_header(&x, 5);
    ei_x_encode_ulonglong(&x, 1);
    ei_x_encode_atom(&x, "explode");
    ei_x_encode_atom(&x, "active");
    ei_x_encode_empty_list(&x);
    ei_x_encode_empty_list(&x);
    ei_x_encode_empty_list(&x);
    cr_assert_eq(
        tether__partition_decode_merge(&t, x.buff, &idx, &changed, &behind),
        TETHER_EPROTO);
    ei_x_free(&x);

    /* Empty groups and a name in both groups. */
    ei_x_new_with_version(&x);
    ei_x_encode_list_header(&x, 1);
    ei_x_encode_tuple_header(&x, 5);
    ei_x_encode_ulonglong(&x, 1);
    ei_x_encode_atom(&x, "drop");
    ei_x_encode_atom(&x, "active");
    ei_x_encode_list_header(&x, 1);
    ei_x_encode_atom(&x, "a@h");
    ei_x_encode_empty_list(&x);
    ei_x_encode_list_header(&x, 1);
    ei_x_encode_atom(&x, "a@h");
    ei_x_encode_empty_list(&x);
    ei_x_encode_empty_list(&x);
    idx = 1;
    cr_assert_eq(tether__etf_validate(x.buff, (size_t)x.index), 0);
    cr_assert_eq(
        tether__partition_decode_merge(&t, x.buff, &idx, &changed, &behind),
        TETHER_EPROTO);
    ei_x_free(&x);
    cr_assert_eq(t.n, 0);
}

Test(partition, defer_queue_keeps_order_and_counts_overflow)
{
    tether_defer_queue_t q;
    tether_defer_item_t it;
    char msg[16];

    tether__defer_init(&q, 20, 0);
    for (int i = 0; i < 25; i++) {
        snprintf(msg, sizeof msg, "m%d", i);
        int rc = tether__defer_push(&q, (uint8_t)(0x20 + i),
                                    (const uint8_t *)msg, strlen(msg) + 1);
        cr_assert_eq(rc, i < 20 ? 0 : TETHER_ETOOBIG);
    }
    cr_assert_eq(q.overflow, 5);
    cr_assert_eq(q.pushed, 20);
    /* Interleave pops and pushes across the ring's wrap point. */
    for (int i = 0; i < 10; i++) {
        cr_assert_eq(tether__defer_pop(&q, &it), 1);
        snprintf(msg, sizeof msg, "m%d", i);
        cr_assert_str_eq((const char *)it.data, msg);
        cr_assert_eq(it.type, 0x20 + i);
        free(it.data);
    }
    for (int i = 25; i < 30; i++) {
        snprintf(msg, sizeof msg, "m%d", i);
        cr_assert_eq(
            tether__defer_push(&q, 0x20, (const uint8_t *)msg, strlen(msg) + 1),
            0);
    }
    for (int i = 10; i < 20; i++) {
        cr_assert_eq(tether__defer_pop(&q, &it), 1);
        snprintf(msg, sizeof msg, "m%d", i);
        cr_assert_str_eq((const char *)it.data, msg, "in order");
        free(it.data);
    }
    cr_assert_eq(tether__defer_pop(&q, &it), 1);
    cr_assert_str_eq((const char *)it.data, "m25");
    free(it.data);
    cr_assert_eq(tether__defer_clear(&q), 4);
    cr_assert_eq(tether__defer_pop(&q, &it), 0);
    tether__defer_fini(&q);
}
