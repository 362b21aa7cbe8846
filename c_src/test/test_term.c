/*
 * Criterion suite for cnode/term.c: tether_term_valid, the canonical form
 * (tether_term_normalize: equal terms from different encoders give equal
 * bytes) on hand-made encodings, and rejection of truncated, oversized and
 * garbage input.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "tether/term.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
/* Nonzero if LeakSanitizer finds leaked blocks now (ASan builds). */
#define LEAKS_NOW() __lsan_do_recoverable_leak_check()
#else
#define LEAKS_NOW() 0
#endif

/* Normalises buf[0..len) into a fresh buffer; returns the rc. */
static int norm(const void *buf, size_t len, ei_x_buff *x)
{
    cr_assert_eq(ei_x_new(x), 0);
    return tether_term_normalize(buf, len, x);
}

static void assert_same(const void *a, size_t alen, const void *b, size_t blen)
{
    ei_x_buff x, y;
    cr_assert_eq(norm(a, alen, &x), 0);
    cr_assert_eq(norm(b, blen, &y), 0);
    cr_assert_eq(x.index, y.index);
    cr_assert_eq(memcmp(x.buff, y.buff, (size_t)x.index), 0);
    ei_x_free(&x);
    ei_x_free(&y);
}

Test(term, valid_accepts_one_term_only)
{
    static const char ok[] = {(char)131, 'a', 7};
    static const char extra[] = {(char)131, 'a', 7, 'a'};
    static const char nover[] = {'a', 7};
    cr_assert(tether_term_valid(ok, sizeof ok));
    cr_assert_not(tether_term_valid(extra, sizeof extra));
    cr_assert_not(tether_term_valid(nover, sizeof nover));
    cr_assert_not(tether_term_valid(ok, 2)); /* truncated */
    cr_assert_not(tether_term_valid(NULL, 0));
}

Test(term, latin1_and_utf8_atoms_are_equal)
{
    static const char latin1[] = {(char)131, 'd', 0, 3, 'k', 'e', 'y'};
    static const char small[] = {(char)131, 's', 3, 'k', 'e', 'y'};
    static const char utf8[] = {(char)131, 'w', 3, 'k', 'e', 'y'};
    static const char big_utf8[] = {(char)131, 'v', 0, 3, 'k', 'e', 'y'};
    assert_same(latin1, sizeof latin1, utf8, sizeof utf8);
    assert_same(small, sizeof small, utf8, sizeof utf8);
    assert_same(big_utf8, sizeof big_utf8, utf8, sizeof utf8);
}

Test(term, latin1_high_chars_match_utf8)
{
    /* 'é' as latin1 (0xe9) and as UTF-8 (0xc3 0xa9). */
    static const char latin1[] = {(char)131, 'd', 0, 1, (char)0xe9};
    static const char utf8[] = {(char)131, 'w', 2, (char)0xc3, (char)0xa9};
    assert_same(latin1, sizeof latin1, utf8, sizeof utf8);
}

Test(term, integers_take_their_smallest_form)
{
    static const char small[] = {(char)131, 'a', 5};
    static const char as_int[] = {(char)131, 'b', 0, 0, 0, 5};
    static const char as_big[] = {(char)131, 'n', 2, 0, 5, 0};
    static const char as_large[] = {(char)131, 'o', 0, 0, 0, 1, 0, 5};
    assert_same(small, sizeof small, as_int, sizeof as_int);
    assert_same(small, sizeof small, as_big, sizeof as_big);
    assert_same(small, sizeof small, as_large, sizeof as_large);
    /* -5 as INTEGER_EXT and as SMALL_BIG with a sign. */
    static const char neg[] = {(char)131,  'b',        (char)0xff,
                               (char)0xff, (char)0xff, (char)0xfb};
    static const char neg_big[] = {(char)131, 'n', 1, 1, 5};
    assert_same(neg, sizeof neg, neg_big, sizeof neg_big);
    /* 2^64 with and without padding digits stays a bignum. */
    static const char b1[] = {(char)131, 'n', 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    static const char b2[] = {(char)131, 'n', 10, 0, 0, 0, 0,
                              0,         0,   0,  0, 0, 1, 0};
    assert_same(b1, sizeof b1, b2, sizeof b2);
    ei_x_buff x;
    cr_assert_eq(norm(b2, sizeof b2, &x), 0);
    cr_assert_eq(x.index, (int)sizeof b1);
    cr_assert_eq(memcmp(x.buff, b1, sizeof b1), 0);
    ei_x_free(&x);
}

Test(term, byte_lists_become_strings)
{
    static const char str[] = {(char)131, 'k', 0, 2, 1, 2};
    static const char list[] = {(char)131, 'l', 0,   0, 0,  2,
                                'a',       1,   'a', 2, 'j'};
    /* [1 | [2]] split into two LIST_EXT segments. */
    static const char split[] = {(char)131, 'l', 0, 0, 0, 1,   'a', 1,
                                 'l',       0,   0, 0, 1, 'a', 2,   'j'};
    assert_same(str, sizeof str, list, sizeof list);
    assert_same(str, sizeof str, split, sizeof split);
}

Test(term, maps_ignore_pair_order)
{
    static const char m1[] = {(char)131, 't', 0, 0,   0, 2,   'a',
                              1,         'a', 2, 'a', 3, 'a', 4};
    static const char m2[] = {(char)131, 't', 0, 0,   0, 2,   'a',
                              3,         'a', 4, 'a', 1, 'a', 2};
    assert_same(m1, sizeof m1, m2, sizeof m2);
}

Test(term, floats_use_new_float)
{
    ei_x_buff a;
    cr_assert_eq(ei_x_new_with_version(&a), 0);
    cr_assert_eq(ei_x_encode_double(&a, 1.5), 0);
    char old[1 + 1 + 31] = {(char)131, 'c'};
    snprintf(old + 2, 31, "%.20e", 1.5);
    assert_same(a.buff, (size_t)a.index, old, sizeof old);
    ei_x_free(&a);
}

Test(term, different_terms_stay_different)
{
    static const char one[] = {(char)131, 'a', 1};
    static const char onef[] = {(char)131, 'F', 0x3f, (char)0xf0, 0,
                                0,         0,   0,    0,          0};
    ei_x_buff x, y;
    cr_assert_eq(norm(one, sizeof one, &x), 0);
    cr_assert_eq(norm(onef, sizeof onef, &y), 0);
    cr_assert(x.index != y.index || memcmp(x.buff, y.buff, (size_t)x.index));
    ei_x_free(&x);
    ei_x_free(&y);
}

Test(term, rejects_truncated_and_garbage)
{
    static const char trunc[] = {(char)131, 'l', 0, 0, 0, 2, 'a', 1};
    static const char garbage[] = {(char)131, 0x7f, 1, 2, 3};
    static const char huge_len[] = {(char)131,  'm',        0x7f, (char)0xff,
                                    (char)0xff, (char)0xff, 1};
    ei_x_buff x;
    cr_assert_eq(norm(trunc, sizeof trunc, &x), TETHER_EINVAL);
    cr_assert_eq(x.index, 0);
    ei_x_free(&x);
    cr_assert_eq(norm(garbage, sizeof garbage, &x), TETHER_EINVAL);
    ei_x_free(&x);
    cr_assert_eq(norm(huge_len, sizeof huge_len, &x), TETHER_EINVAL);
    ei_x_free(&x);
}

Test(term, rejects_too_deep)
{
    /* {{{...{}...}}} nested deeper than the cap. */
    size_t depth = TETHER_TERM_DEPTH_MAX + 8;
    char *b = malloc(1 + depth * 2 + 2);
    cr_assert_not_null(b);
    b[0] = (char)131;
    for (size_t i = 0; i < depth; i++) {
        b[1 + 2 * i] = 'h';
        b[2 + 2 * i] = 1;
    }
    b[1 + 2 * depth] = 'h';
    b[2 + 2 * depth] = 0;
    ei_x_buff x;
    cr_assert_eq(norm(b, 1 + depth * 2 + 2, &x), TETHER_ETOOBIG);
    ei_x_free(&x);
    free(b);
}

Test(term, format_prints)
{
    static const char t[] = {(char)131, 'h', 2, 'w', 2, 'o', 'k', 'a', 7};
    char out[64];
    cr_assert_eq(tether_term_format(t, sizeof t, out, sizeof out), 0);
    cr_assert_str_eq(out, "{ok, 7}");
    cr_assert_eq(tether_term_format(t, 3, out, sizeof out), TETHER_EINVAL);
}

Test(term, negative_zero_is_zero)
{
    ei_x_buff p, n;
    cr_assert_eq(ei_x_new_with_version(&p), 0);
    cr_assert_eq(ei_x_encode_double(&p, 0.0), 0);
    cr_assert_eq(ei_x_new_with_version(&n), 0);
    cr_assert_eq(ei_x_encode_double(&n, -0.0), 0);
    cr_assert_neq(memcmp(p.buff, n.buff, (size_t)p.index), 0);
    assert_same(p.buff, (size_t)p.index, n.buff, (size_t)n.index);
    ei_x_free(&p);
    ei_x_free(&n);
}

Test(term, empty_list_segment_is_its_tail)
{
    /* LIST_EXT with 0 elements is no cons: the term is its tail (found by
     * fuzz/fuzz_term.c). Normalising used to write NIL and then the tail:
     * two terms, which tether_term_valid() refused. */
    static const char seg_atom[] = {(char)131, 'l', 0, 0, 0, 0, 'a', 7};
    static const char atom[] = {(char)131, 'a', 7};
    static const char seg_nil[] = {(char)131, 'l', 0, 0, 0, 0, 'j'};
    static const char seg_seg[] = {(char)131, 'l', 0, 0, 0, 0,
                                   'l',       0,   0, 0, 0, 'j'};
    static const char nil[] = {(char)131, 'j'};
    ei_x_buff x;
    cr_assert_eq(norm(seg_atom, sizeof seg_atom, &x), 0);
    cr_assert(tether_term_valid(x.buff, (size_t)x.index));
    ei_x_free(&x);
    assert_same(seg_atom, sizeof seg_atom, atom, sizeof atom);
    assert_same(seg_nil, sizeof seg_nil, nil, sizeof nil);
    assert_same(seg_seg, sizeof seg_seg, nil, sizeof nil);
}

Test(term, empty_string_is_nil)
{
    /* STRING_EXT "" is [] (term_to_binary("") is NIL_EXT). */
    static const char empty[] = {(char)131, 'k', 0, 0};
    static const char seg_empty[] = {(char)131, 'l', 0, 0, 0, 0, 'k', 0, 0};
    static const char nil[] = {(char)131, 'j'};
    assert_same(empty, sizeof empty, nil, sizeof nil);
    assert_same(seg_empty, sizeof seg_empty, nil, sizeof nil);
}

/* A NEW_FUN_EXT closure of module m with one free variable (the atom v)
 * when env is set, none otherwise. */
static size_t closure(char *b, bool env)
{
    static const char head[] = {(char)131, 'p', 0, 0, 0, 0, 0};
    static const char rest[] = {
        0,   0,   0,   1,              /* index */
        0,   0,   0,   0,              /* num free (patched) */
        'w', 1,   'm', 'a', 0, 'a', 0, /* module, old index/uniq */
        'X', 'w', 1,   'n', 0, 0,   0, 1, 0, 0, 0, 0, 0, 0, 0, 1, /* pid */
    };
    size_t n = 0;
    memcpy(b, head, sizeof head);
    n = sizeof head;
    memset(b + n, 0x11, 16); /* uniq (md5) */
    n += 16;
    memcpy(b + n, rest, sizeof rest);
    n += sizeof rest;
    if (env) {
        b[n - sizeof rest + 7] = 1;
        b[n++] = 'w';
        b[n++] = 1;
        b[n++] = 'v';
    }
    b[5] = (char)(n - 2); /* size: from the size field to the end */
    return n;
}

Test(term, format_of_closure_with_env_does_not_leak)
{
    /* libei's ei_s_print_term() leaks a closure's copied free variables
     * (found by fuzz/fuzz_term.c; LeakSanitizer fails this test then). */
    char with[64], without[64], a[256], b[256];
    size_t wl = closure(with, true), nl = closure(without, false);
    cr_assert(tether_term_valid(with, wl));
    cr_assert(tether_term_valid(without, nl));
    cr_assert_eq(tether_term_format(with, wl, a, sizeof a), 0);
    cr_assert_eq(tether_term_format(without, nl, b, sizeof b), 0);
    cr_assert_str_eq(a, b); /* the environment is not printed anyway */
    cr_assert_eq(LEAKS_NOW(), 0, "tether_term_format leaked");
}

Test(term, byte_lists_with_odd_integer_encodings_become_strings)
{
    /* [0] with its element written as an empty segment whose tail is 0,
     * and [5] with 5 as a SMALL_BIG: both are the string [0] / [5] (found
     * by fuzz/fuzz_term.c: normalising was not idempotent). */
    static const char seg_elem[] = {(char)131, 'l', 0, 0, 0,   1, 'l',
                                    0,         0,   0, 0, 'a', 0, 'j'};
    static const char str0[] = {(char)131, 'k', 0, 1, 0};
    static const char big_elem[] = {(char)131, 'l', 0, 0, 0,  1,
                                    'n',       1,   0, 5, 'j'};
    static const char str5[] = {(char)131, 'k', 0, 1, 5};
    assert_same(seg_elem, sizeof seg_elem, str0, sizeof str0);
    assert_same(big_elem, sizeof big_elem, str5, sizeof str5);
}
