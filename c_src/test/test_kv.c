/*
 * Criterion suite for the kv example's store (examples/kv/kv_store.c,
 * compiled in here): equal keys from different encoders hit one entry,
 * values come back byte for byte, delete, keys, growth, bad input.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "../../examples/kv/kv_store.c"

static void atom(ei_x_buff *x, const char *a)
{
    cr_assert_eq(ei_x_new_with_version(x), 0);
    cr_assert_eq(ei_x_encode_atom(x, a), 0);
}

Test(kv, equal_keys_share_an_entry)
{
    kv_store_t *kv = kv_store_new();
    cr_assert_not_null(kv);
    static const char latin1[] = {(char)131, 'd', 0, 1, 'k'};
    static const char utf8[] = {(char)131, 'w', 1, 'k'};
    static const char int_small[] = {(char)131, 'a', 9};
    static const char int_big[] = {(char)131, 'n', 1, 0, 9};
    ei_x_buff v1, v2;
    atom(&v1, "one");
    atom(&v2, "two");
    cr_assert_eq(
        kv_store_put(kv, latin1, sizeof latin1, v1.buff, (size_t)v1.index), 0);
    cr_assert_eq(
        kv_store_put(kv, int_big, sizeof int_big, v2.buff, (size_t)v2.index),
        0);
    const char *v;
    size_t vl;
    cr_assert_eq(kv_store_get(kv, utf8, sizeof utf8, &v, &vl), 0);
    cr_assert_eq(vl, (size_t)v1.index);
    cr_assert_eq(memcmp(v, v1.buff, vl), 0);
    cr_assert_eq(kv_store_get(kv, int_small, sizeof int_small, &v, &vl), 0);
    cr_assert_eq(memcmp(v, v2.buff, vl), 0);
    /* Overwrite through the other encoding. */
    cr_assert_eq(kv_store_put(kv, utf8, sizeof utf8, v2.buff, (size_t)v2.index),
                 0);
    cr_assert_eq(kv_store_count(kv), 2u);
    cr_assert_eq(kv_store_delete(kv, latin1, sizeof latin1), 0);
    cr_assert_eq(kv_store_get(kv, utf8, sizeof utf8, &v, &vl),
                 TETHER_ENOTFOUND);
    cr_assert_eq(kv_store_delete(kv, latin1, sizeof latin1), TETHER_ENOTFOUND);
    ei_x_free(&v1);
    ei_x_free(&v2);
    kv_store_free(kv);
}

Test(kv, values_are_exact_and_large)
{
    kv_store_t *kv = kv_store_new();
    size_t n = (size_t)6 << 20;
    char *bin = malloc(n);
    cr_assert_not_null(bin);
    for (size_t i = 0; i < n; i++)
        bin[i] = (char)(i * 7);
    ei_x_buff k, v;
    atom(&k, "big");
    cr_assert_eq(ei_x_new_with_version(&v), 0);
    cr_assert_eq(ei_x_encode_binary(&v, bin, (int)n), 0);
    cr_assert_eq(
        kv_store_put(kv, k.buff, (size_t)k.index, v.buff, (size_t)v.index), 0);
    const char *got;
    size_t gl;
    cr_assert_eq(kv_store_get(kv, k.buff, (size_t)k.index, &got, &gl), 0);
    cr_assert_eq(gl, (size_t)v.index);
    cr_assert_eq(memcmp(got, v.buff, gl), 0);
    ei_x_free(&k);
    ei_x_free(&v);
    free(bin);
    kv_store_free(kv);
}

Test(kv, keys_lists_every_key_and_grows)
{
    kv_store_t *kv = kv_store_new();
    ei_x_buff v;
    atom(&v, "v");
    for (long i = 0; i < 1000; i++) {
        ei_x_buff k;
        cr_assert_eq(ei_x_new_with_version(&k), 0);
        cr_assert_eq(ei_x_encode_long(&k, i), 0);
        cr_assert_eq(
            kv_store_put(kv, k.buff, (size_t)k.index, v.buff, (size_t)v.index),
            0);
        ei_x_free(&k);
    }
    cr_assert_eq(kv_store_count(kv), 1000u);
    ei_x_buff ks;
    cr_assert_eq(ei_x_new_with_version(&ks), 0);
    cr_assert_eq(kv_store_keys(kv, &ks), 0);
    int idx = 1, n;
    cr_assert_eq(ei_decode_list_header(ks.buff, &idx, &n), 0);
    cr_assert_eq(n, 1000);
    static char seen[1000];
    for (int i = 0; i < n; i++) {
        long key;
        cr_assert_eq(ei_decode_long(ks.buff, &idx, &key), 0);
        cr_assert(key >= 0 && key < 1000 && !seen[key]);
        seen[key] = 1;
    }
    ei_x_free(&ks);
    ei_x_free(&v);
    kv_store_free(kv);
    /* Empty store: []. */
    kv = kv_store_new();
    cr_assert_eq(ei_x_new_with_version(&ks), 0);
    cr_assert_eq(kv_store_keys(kv, &ks), 0);
    idx = 1;
    cr_assert_eq(ei_decode_list_header(ks.buff, &idx, &n), 0);
    cr_assert_eq(n, 0);
    ei_x_free(&ks);
    kv_store_free(kv);
}

Test(kv, rejects_bad_terms)
{
    kv_store_t *kv = kv_store_new();
    static const char bad[] = {(char)131, 'l', 0, 0, 0, 5, 'a'};
    ei_x_buff v;
    atom(&v, "v");
    cr_assert_eq(kv_store_put(kv, bad, sizeof bad, v.buff, (size_t)v.index),
                 TETHER_EINVAL);
    cr_assert_eq(kv_store_put(kv, v.buff, (size_t)v.index, bad, sizeof bad),
                 TETHER_EINVAL);
    const char *g;
    size_t gl;
    cr_assert_eq(kv_store_get(kv, bad, 3, &g, &gl), TETHER_EINVAL);
    cr_assert_eq(kv_store_count(kv), 0u);
    ei_x_free(&v);
    kv_store_free(kv);
}
