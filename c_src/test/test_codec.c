/* Criterion suite for core/codec.c: the bounded ETF validator, the name
 * helpers that guard every ei decode of peer input, and the message
 * helpers modules share (tagged-tuple start and head, binaries in place). */
#include <criterion/criterion.h>
#include <string.h>

#include "core/codec.h"

static ei_x_buff sample(void)
{
    ei_x_buff x;

    ei_x_new_with_version(&x);
    ei_x_encode_tuple_header(&x, 4);
    ei_x_encode_atom(&x, "members");
    ei_x_encode_list_header(&x, 2);
    ei_x_encode_ulonglong(&x, 1ull << 40);
    ei_x_encode_binary(&x, "abc", 3);
    ei_x_encode_empty_list(&x);
    ei_x_encode_map_header(&x, 1);
    ei_x_encode_long(&x, -5);
    ei_x_encode_double(&x, 1.5);
    ei_x_encode_string(&x, "hi");
    return x;
}

Test(codec, accepts_well_formed_terms)
{
    ei_x_buff x = sample();

    cr_assert_eq(tether__etf_validate(x.buff, (size_t)x.index), 0);
    ei_x_free(&x);
}

Test(codec, rejects_every_truncation_and_trailing_bytes)
{
    ei_x_buff x = sample();
    char big[512];

    for (int len = 0; len < x.index; len++)
        cr_assert_eq(tether__etf_validate(x.buff, (size_t)len), TETHER_EPROTO,
                     "len %d", len);
    memcpy(big, x.buff, (size_t)x.index);
    big[x.index] = 'j';
    cr_assert_eq(tether__etf_validate(big, (size_t)x.index + 1), TETHER_EPROTO);
    cr_assert_eq(tether__etf_validate(NULL, 4), TETHER_EPROTO);
    ei_x_free(&x);
}

Test(codec, rejects_oversized_lengths_and_bad_tags)
{
    /* binary claiming 4 GiB, list claiming 2^32-1 elements, a fun. */
    const char bin[] = {(char)131,  109,        (char)0xff, (char)0xff,
                        (char)0xff, (char)0xff, 1};
    const char list[] = {(char)131,  108,        (char)0xff, (char)0xff,
                         (char)0xff, (char)0xff, 106};
    const char tuple[] = {(char)131,  105,        0x7f,
                          (char)0xff, (char)0xff, (char)0xff};
    const char fun[] = {(char)131, 112, 0, 0, 0, 5, 0};
    const char badver[] = {(char)130, 106};

    cr_assert_eq(tether__etf_validate(bin, sizeof bin), TETHER_EPROTO);
    cr_assert_eq(tether__etf_validate(list, sizeof list), TETHER_EPROTO);
    cr_assert_eq(tether__etf_validate(tuple, sizeof tuple), TETHER_EPROTO);
    cr_assert_eq(tether__etf_validate(fun, sizeof fun), TETHER_EPROTO);
    cr_assert_eq(tether__etf_validate(badver, sizeof badver), TETHER_EPROTO);
}

Test(codec, bounds_nesting_depth)
{
    char buf[256];
    size_t n = 0;

    buf[n++] = (char)131;
    for (int d = 0; d < TETHER_ETF_DEPTH_MAX + 5; d++) {
        buf[n++] = 104; /* {X} */
        buf[n++] = 1;
    }
    buf[n++] = 106;
    cr_assert_eq(tether__etf_validate(buf, n), TETHER_EPROTO);
    n = 1;
    for (int d = 0; d < 8; d++) {
        buf[n++] = 104;
        buf[n++] = 1;
    }
    buf[n++] = 106;
    cr_assert_eq(tether__etf_validate(buf, n), 0);
}

Test(codec, garbage_never_crashes)
{
    char buf[64];
    uint32_t x = 7;
    int ok = 0;

    for (int round = 0; round < 20000; round++) {
        size_t len = 1 + (size_t)(round % 63);
        for (size_t i = 0; i < len; i++) {
            x = x * 1664525u + 1013904223u;
            buf[i] = (char)(x >> 24);
        }
        buf[0] = (char)131;
        if (tether__etf_validate(buf, len) == 0)
            ok++;
    }
    cr_assert_lt(ok, 20000, "random bytes are mostly refused");
}

Test(codec, names_are_bounded)
{
    ei_x_buff x;
    char name[TETHER_NODE_NAME_MAX + 1], longname[300];
    int idx = 1;

    ei_x_new_with_version(&x);
    cr_assert_eq(tether__etf_encode_name(&x, "n1@host"), 0);
    cr_assert_eq(tether__etf_decode_name(x.buff, &idx, name), 0);
    cr_assert_str_eq(name, "n1@host");
    ei_x_free(&x);

    memset(longname, 'a', sizeof longname);
    ei_x_new_with_version(&x);
    ei_x_encode_atom_len(&x, longname, 255);
    idx = 1;
    cr_assert_eq(tether__etf_decode_name(x.buff, &idx, name), 0);
    ei_x_free(&x);

    ei_x_new_with_version(&x);
    ei_x_encode_long(&x, 5);
    idx = 1;
    cr_assert_eq(tether__etf_decode_name(x.buff, &idx, name), TETHER_EPROTO);
    ei_x_free(&x);
}

Test(codec, improper_lists_are_refused)
{
    ei_x_buff x;
    int idx = 1, n;

    ei_x_new_with_version(&x);
    ei_x_encode_list_header(&x, 1);
    ei_x_encode_long(&x, 1);
    ei_x_encode_long(&x, 2); /* tail is not [] */
    cr_assert_eq(tether__etf_validate(x.buff, (size_t)x.index), 0);
    cr_assert_eq(tether__etf_list(x.buff, &idx, &n), 0);
    cr_assert_eq(n, 1);
    ei_x_free(&x);
}

Test(codec, begin_starts_a_tagged_tuple_the_head_decoder_reads)
{
    ei_x_buff x;
    char tag[TETHER_ETF_TAG_MAX];
    int idx = 0, arity = 0;
    long v;

    cr_assert_eq(tether__etf_begin(&x, 2, "svc_digest"), 0);
    cr_assert_eq(ei_x_encode_long(&x, 42), 0);
    cr_assert_eq(tether__etf_validate(x.buff, (size_t)x.index), 0);
    cr_assert_eq(tether__etf_decode_head(x.buff, &idx, tag, &arity), 0);
    cr_assert_str_eq(tag, "svc_digest");
    cr_assert_eq(arity, 2);
    cr_assert_eq(ei_decode_long(x.buff, &idx, &v), 0);
    cr_assert_eq(v, 42);
    ei_x_free(&x);
}

/* Decodes the head of x's term, then frees x; returns the decoder's
 * result. */
static int head_of(ei_x_buff *x, char tag[TETHER_ETF_TAG_MAX], int *arity)
{
    int idx = 0, rc;

    cr_assert_eq(tether__etf_validate(x->buff, (size_t)x->index), 0);
    rc = tether__etf_decode_head(x->buff, &idx, tag, arity);
    ei_x_free(x);
    return rc;
}

Test(codec, head_rejects_garbage_and_oversized_tags)
{
    static const char fifteen[] = "abcdefghijklmno"; /* TAG_MAX - 1 bytes */
    static const char sixteen[] = "abcdefghijklmnop";
    ei_x_buff x;
    char tag[TETHER_ETF_TAG_MAX];
    int arity;

    ei_x_new_with_version(&x); /* not a tuple */
    ei_x_encode_atom(&x, "svc_pull");
    cr_assert_eq(head_of(&x, tag, &arity), TETHER_EPROTO);
    ei_x_new_with_version(&x); /* the empty tuple has no tag */
    ei_x_encode_tuple_header(&x, 0);
    cr_assert_eq(head_of(&x, tag, &arity), TETHER_EPROTO);
    ei_x_new_with_version(&x); /* a tag that is not an atom */
    ei_x_encode_tuple_header(&x, 1);
    ei_x_encode_binary(&x, "svc_pull", 8);
    cr_assert_eq(head_of(&x, tag, &arity), TETHER_EPROTO);
    /* The longest tag fits; one byte more does not. */
    cr_assert_eq(tether__etf_begin(&x, 1, fifteen), 0);
    cr_assert_eq(head_of(&x, tag, &arity), 0);
    cr_assert_str_eq(tag, fifteen);
    cr_assert_eq(arity, 1);
    cr_assert_eq(tether__etf_begin(&x, 1, sixteen), 0);
    /* A truncated head never reaches the decoder: validation refuses it. */
    for (int len = 0; len < x.index; len++)
        cr_assert_eq(tether__etf_validate(x.buff, (size_t)len), TETHER_EPROTO);
    cr_assert_eq(head_of(&x, tag, &arity), TETHER_EPROTO);
}

Test(codec, bin_ref_reads_binaries_in_place_and_only_binaries)
{
    ei_x_buff x;
    const uint8_t *p = NULL;
    size_t len = 99;
    int idx = 0, v;

    ei_x_new_with_version(&x);
    ei_x_encode_tuple_header(&x, 4);
    ei_x_encode_binary(&x, "abc", 3);
    ei_x_encode_binary(&x, "", 0);
    ei_x_encode_bitstring(&x, "\xff", 0, 7); /* 7 bits: not a binary */
    ei_x_encode_atom(&x, "abc");
    cr_assert_eq(tether__etf_validate(x.buff, (size_t)x.index), 0);
    cr_assert_eq(ei_decode_version(x.buff, &idx, &v), 0);
    cr_assert_eq(tether__etf_expect_tuple(x.buff, &idx, 4), 0);
    cr_assert_eq(tether__etf_decode_bin_ref(x.buff, &idx, &p, &len), 0);
    cr_assert_eq(len, 3);
    cr_assert_eq(memcmp(p, "abc", 3), 0);
    cr_assert(p > (const uint8_t *)x.buff &&
              p + len <= (const uint8_t *)x.buff + x.index);
    cr_assert_eq(tether__etf_decode_bin_ref(x.buff, &idx, &p, &len), 0);
    cr_assert_eq(len, 0);
    v = idx;
    cr_assert_eq(tether__etf_decode_bin_ref(x.buff, &idx, &p, &len),
                 TETHER_EPROTO);
    cr_assert_eq(ei_skip_term(x.buff, &idx), 0);
    cr_assert_gt(idx, v);
    cr_assert_eq(tether__etf_decode_bin_ref(x.buff, &idx, &p, &len),
                 TETHER_EPROTO);
    ei_x_free(&x);
}

Test(codec, names_must_be_utf8)
{
    /* 131, SMALL_ATOM_UTF8 (119), length, text. */
    const char ok[] = {(char)131, 119, 4, 'n', (char)0xC3, (char)0xA9, 'e'};
    const char bad_cont[] = {(char)131, 119, 2, (char)0xC3, 'x'};
    const char overlong[] = {(char)131, 119, 2, (char)0xC0, (char)0xAF};
    const char surrogate[] = {(char)131,  119,        3,
                              (char)0xED, (char)0xA0, (char)0x80};
    const char truncated[] = {(char)131, 119, 1, (char)0xE2};
    const char latin1[] = {(char)131, 115, 1, (char)0xE9}; /* SMALL_ATOM */
    /* ATOM_UTF8 (118) with a two-byte length, inside a tuple. */
    const char in_tuple[] = {(char)131, 104, 1, 118, 0, 1, (char)0xFF};

    cr_assert_eq(tether__etf_validate(ok, sizeof ok), 0);
    cr_assert_eq(tether__etf_validate(latin1, sizeof latin1), 0,
                 "Latin-1 atoms carry any byte");
    cr_assert_eq(tether__etf_validate(bad_cont, sizeof bad_cont),
                 TETHER_EPROTO);
    cr_assert_eq(tether__etf_validate(overlong, sizeof overlong),
                 TETHER_EPROTO);
    cr_assert_eq(tether__etf_validate(surrogate, sizeof surrogate),
                 TETHER_EPROTO);
    cr_assert_eq(tether__etf_validate(truncated, sizeof truncated),
                 TETHER_EPROTO);
    cr_assert_eq(tether__etf_validate(in_tuple, sizeof in_tuple),
                 TETHER_EPROTO);
}
