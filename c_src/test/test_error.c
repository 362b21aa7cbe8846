/* Criterion suite for core/error.c: error strings and the version. */
#include <criterion/criterion.h>
#include <string.h>

#include "tether/tether.h"

Test(error, every_code_has_its_own_sentence)
{
    for (int a = TETHER_EUNSUPP; a <= TETHER_OK; a++) {
        const char *sa = tether_strerror(a);
        cr_assert_neq(strcmp(sa, "unknown error"), 0, "code %d unnamed", a);
        for (int b = a + 1; b <= TETHER_OK; b++)
            cr_assert_neq(strcmp(sa, tether_strerror(b)), 0,
                          "codes %d and %d share a sentence", a, b);
    }
}

Test(error, unknown_codes_are_named_unknown)
{
    cr_assert_str_eq(tether_strerror(1), "unknown error");
    cr_assert_str_eq(tether_strerror(-9999), "unknown error");
}

Test(error, version_matches_header)
{
    cr_assert_str_eq(tether_version(), TETHER_VERSION_STRING);
}
