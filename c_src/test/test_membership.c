/* Criterion suite for core/membership.c: merge rule, tombstones, leases,
 * incarnations, digest and the wire form (round trip and bad input). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "core/codec.h"
#include "core/membership.h"

static tether_membership_t ms;

static void setup(void)
{
    cr_assert_eq(tether__membership_init(&ms, "me@h", 3), 0);
}

static void teardown(void)
{
    tether__membership_fini(&ms);
}

TestSuite(membership, .init = setup, .fini = teardown);

Test(membership, starts_with_self_alive)
{
    const tether_member_t *m = tether__membership_self(&ms);

    cr_assert_not_null(m);
    cr_assert(m->is_self);
    cr_assert_eq(m->incarnation, 3);
    cr_assert(tether__membership_lease_ok(m, 999999));
    cr_assert_eq(tether__membership_init(&(tether_membership_t){0}, "", 1),
                 TETHER_EINVAL);
}

Test(membership, entries_stay_sorted)
{
    const char *names[] = {"m@h", "a@h", "z@h", "b@h", "mm@h", "m@"};

    for (size_t i = 0; i < 6; i++)
        cr_assert_eq(
            tether__membership_merge(&ms, names[i], 1, TETHER_MEMBER_ALIVE), 1);
    for (size_t i = 1; i < ms.n; i++)
        cr_assert_lt(strcmp(ms.v[i - 1].name, ms.v[i].name), 0);
    cr_assert_eq(ms.n, 7);
}

Test(membership, higher_incarnation_wins)
{
    cr_assert_eq(tether__membership_merge(&ms, "x@h", 2, TETHER_MEMBER_ALIVE),
                 1);
    cr_assert_eq(tether__membership_merge(&ms, "x@h", 1, TETHER_MEMBER_LEFT), 0,
                 "an older leave changes nothing");
    cr_assert_eq(tether__membership_merge(&ms, "x@h", 2, TETHER_MEMBER_ALIVE),
                 0);
    cr_assert_eq(tether__membership_merge(&ms, "x@h", 5, TETHER_MEMBER_ALIVE),
                 1);
    cr_assert_eq(tether__membership_find(&ms, "x@h")->incarnation, 5);
}

Test(membership, leave_tombstone_is_never_undone_by_stale_gossip)
{
    cr_assert_eq(tether__membership_merge(&ms, "x@h", 4, TETHER_MEMBER_ALIVE),
                 1);
    cr_assert_eq(tether__membership_merge(&ms, "x@h", 4, TETHER_MEMBER_LEFT),
                 1);
    for (uint64_t inc = 0; inc <= 4; inc++)
        cr_assert_eq(
            tether__membership_merge(&ms, "x@h", inc, TETHER_MEMBER_ALIVE), 0);
    cr_assert_eq(tether__membership_find(&ms, "x@h")->status,
                 TETHER_MEMBER_LEFT);
    cr_assert_eq(tether__membership_heartbeat(&ms, "x@h", 4, 10, 100),
                 TETHER_EREPLAY, "a heartbeat of the left life is stale");
    cr_assert_eq(
        tether__membership_lease_ok(tether__membership_find(&ms, "x@h"), 10),
        0);
    /* Only a new life (restart with a higher incarnation) returns. */
    cr_assert_eq(tether__membership_heartbeat(&ms, "x@h", 5, 10, 100), 0);
    cr_assert(
        tether__membership_lease_ok(tether__membership_find(&ms, "x@h"), 10));
}

Test(membership, facts_about_ourselves_are_ignored)
{
    cr_assert_eq(tether__membership_merge(&ms, "me@h", 3, TETHER_MEMBER_LEFT),
                 0);
    cr_assert_eq(tether__membership_merge(&ms, "me@h", 9, TETHER_MEMBER_ALIVE),
                 0);
    cr_assert_eq(tether__membership_self(&ms)->incarnation, 3);
    cr_assert_eq(tether__membership_self(&ms)->status, TETHER_MEMBER_ALIVE);
    tether__membership_leave_self(&ms);
    cr_assert_eq(tether__membership_self(&ms)->status, TETHER_MEMBER_LEFT);
    cr_assert_eq(tether__membership_heartbeat(&ms, "me@h", 3, 0, 10),
                 TETHER_EREPLAY);
}

Test(membership, lease_expires_after_ttl)
{
    const tether_member_t *m;

    cr_assert_eq(tether__membership_heartbeat(&ms, "x@h", 1, 1000, 500), 0);
    m = tether__membership_find(&ms, "x@h");
    cr_assert(tether__membership_lease_ok(m, 1000));
    cr_assert(tether__membership_lease_ok(m, 1499));
    cr_assert_not(tether__membership_lease_ok(m, 1500));
    cr_assert_eq(tether__membership_heartbeat(&ms, "x@h", 1, 1400, 500), 0);
    cr_assert(tether__membership_lease_ok(m, 1800));
    tether__membership_expire(&ms, "x@h");
    cr_assert_not(tether__membership_lease_ok(m, 1401));
    /* Gossip alone never grants a lease. */
    cr_assert_eq(tether__membership_merge(&ms, "y@h", 1, TETHER_MEMBER_ALIVE),
                 1);
    cr_assert_not(
        tether__membership_lease_ok(tether__membership_find(&ms, "y@h"), 0));
}

Test(membership, new_incarnation_drops_the_old_lease)
{
    cr_assert_eq(tether__membership_heartbeat(&ms, "x@h", 1, 0, 500), 0);
    cr_assert_eq(tether__membership_merge(&ms, "x@h", 2, TETHER_MEMBER_ALIVE),
                 1);
    cr_assert_not(
        tether__membership_lease_ok(tether__membership_find(&ms, "x@h"), 10));
}

Test(membership, rejects_bad_names_and_status)
{
    char longname[TETHER_NODE_NAME_MAX + 2];

    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    cr_assert_eq(tether__membership_merge(&ms, "", 1, TETHER_MEMBER_ALIVE),
                 TETHER_EINVAL);
    cr_assert_eq(tether__membership_merge(&ms, NULL, 1, TETHER_MEMBER_ALIVE),
                 TETHER_EINVAL);
    cr_assert_eq(
        tether__membership_merge(&ms, longname, 1, TETHER_MEMBER_ALIVE),
        TETHER_EINVAL);
    cr_assert_eq(tether__membership_merge(&ms, "x@h", 1, 7), TETHER_EINVAL);
    cr_assert_null(tether__membership_find(&ms, longname));
}

Test(membership, table_is_bounded)
{
    char name[32];
    int rc = 0;

    for (int i = 0; i < TETHER_MEMBERS_MAX + 5 && rc >= 0; i++) {
        snprintf(name, sizeof name, "n%d@h", i);
        rc = tether__membership_merge(&ms, name, 1, TETHER_MEMBER_ALIVE);
    }
    cr_assert_eq(rc, TETHER_ETOOBIG);
    cr_assert_eq(ms.n, TETHER_MEMBERS_MAX);
}

/* Encodes a table into a fresh validated buffer. */
static ei_x_buff encode(const tether_membership_t *t)
{
    ei_x_buff x;

    ei_x_new_with_version(&x);
    cr_assert_eq(tether__membership_encode(t, &x), 0);
    cr_assert_eq(tether__etf_validate(x.buff, (size_t)x.index), 0);
    return x;
}

Test(membership, wire_round_trip_converges_and_reports_behind)
{
    tether_membership_t other;
    ei_x_buff x;
    int idx = 1, changed, behind;

    cr_assert_eq(tether__membership_merge(&ms, "x@h", 2, TETHER_MEMBER_LEFT),
                 1);
    cr_assert_eq(tether__membership_init(&other, "you@h", 1), 0);
    cr_assert_eq(
        tether__membership_merge(&other, "y@h", 7, TETHER_MEMBER_ALIVE), 1);

    x = encode(&ms);
    cr_assert_eq(tether__membership_decode_merge(&other, x.buff, &idx, &changed,
                                                 &behind),
                 0);
    cr_assert_eq(idx, x.index);
    cr_assert(changed);
    cr_assert(behind, "the sender lacks you@h and y@h");
    ei_x_free(&x);

    x = encode(&other);
    idx = 1;
    cr_assert_eq(
        tether__membership_decode_merge(&ms, x.buff, &idx, &changed, &behind),
        0);
    cr_assert(changed);
    cr_assert_not(behind, "now both hold the same facts");
    cr_assert_eq(tether__membership_digest(&ms),
                 tether__membership_digest(&other));
    ei_x_free(&x);
    tether__membership_fini(&other);
}

/* Decodes and merges the wire list in x into ms, then frees x. Returns
 * tether__membership_decode_merge()'s result. */
static int merge_freed(ei_x_buff *x)
{
    int idx = 1, changed, behind;
    int rc =
        tether__membership_decode_merge(&ms, x->buff, &idx, &changed, &behind);

    ei_x_free(x);
    return rc;
}

Test(membership, malformed_wire_lists_are_refused)
{
    ei_x_buff x;

    /* Wrong arity, wrong status atom, non-list, name too long. */
    ei_x_new_with_version(&x);
    ei_x_encode_list_header(&x, 1);
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_atom(&x, "a@h");
    ei_x_encode_long(&x, 1);
    ei_x_encode_empty_list(&x);
    cr_assert_eq(merge_freed(&x), TETHER_EPROTO);

    ei_x_new_with_version(&x);
    ei_x_encode_list_header(&x, 1);
    ei_x_encode_tuple_header(&x, 3);
    ei_x_encode_atom(&x, "a@h");
    ei_x_encode_long(&x, 1);
    ei_x_encode_atom(&x, "zombie");
    ei_x_encode_empty_list(&x);
    cr_assert_eq(merge_freed(&x), TETHER_EPROTO);

    ei_x_new_with_version(&x);
    ei_x_encode_long(&x, 42);
    cr_assert_eq(merge_freed(&x), TETHER_EPROTO);

    ei_x_new_with_version(&x);
    ei_x_encode_list_header(&x, 1);
    ei_x_encode_tuple_header(&x, 3);
    ei_x_encode_atom(&x, "a@h");
    ei_x_encode_long(&x, -1); /* negative incarnation */
    ei_x_encode_atom(&x, "alive");
    ei_x_encode_empty_list(&x);
    cr_assert_eq(merge_freed(&x), TETHER_EPROTO);
    cr_assert_eq(ms.n, 1, "nothing malformed was merged");
}
