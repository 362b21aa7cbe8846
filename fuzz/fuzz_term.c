/*
 * fuzz_term.c: libFuzzer target for cnode/term.c (tether/term.h).
 *
 * The whole input is a candidate term. It goes to tether_term_valid(),
 * tether_term_format() (a large and a tiny output buffer) and
 * tether_term_normalize(). Checked properties, any violation aborts:
 *   - normalize succeeds only on input tether_term_valid() accepts;
 *   - a failed normalize leaves out->index where it was;
 *   - normalize output is valid and formats;
 *   - normalize is idempotent: normalizing its output gives the same bytes;
 *   - format NUL-terminates within cap.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <ei.h>

#include "tether/term.h"

#define FORMAT_BIG   4096
#define FORMAT_SMALL 8

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_format(const char *buf, size_t len)
{
    char big[FORMAT_BIG];
    char small[FORMAT_SMALL];

    memset(big, 'x', sizeof big);
    memset(small, 'x', sizeof small);
    if (tether_term_format(buf, len, big, sizeof big) == 0 &&
        memchr(big, '\0', sizeof big) == NULL)
        abort();
    if (tether_term_format(buf, len, small, sizeof small) == 0 &&
        memchr(small, '\0', sizeof small) == NULL)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    ei_x_buff n1, n2;
    bool valid = tether_term_valid(buf, size);
    int rc;

    check_format(buf, size);
    if (ei_x_new(&n1) != 0)
        return 0;
    rc = tether_term_normalize(buf, size, &n1);
    if (rc != 0) {
        if (n1.index != 0)
            abort(); /* index must be restored on error */
        ei_x_free(&n1);
        return 0;
    }
    if (!valid)
        abort(); /* normalized something valid() refuses */
    if (n1.index <= 0 || !tether_term_valid(n1.buff, (size_t)n1.index))
        abort();
    check_format(n1.buff, (size_t)n1.index);
    if (ei_x_new(&n2) != 0) {
        ei_x_free(&n1);
        return 0;
    }
    rc = tether_term_normalize(n1.buff, (size_t)n1.index, &n2);
    if (rc == TETHER_ENOMEM) {
        ei_x_free(&n1);
        ei_x_free(&n2);
        return 0;
    }
    if (rc != 0 || n2.index != n1.index ||
        memcmp(n1.buff, n2.buff, (size_t)n1.index) != 0)
        abort(); /* not idempotent */
    ei_x_free(&n1);
    ei_x_free(&n2);
    return 0;
}
