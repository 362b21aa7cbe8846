/*
 * fuzz_ring.c: libFuzzer target for the ring's key encoding (core/ring.h).
 *
 * The whole input is a candidate key in external format. It goes to
 * tether_ring_canon() (a large and a tiny output buffer) and
 * tether_ring_hash_term(). Checked properties, any violation aborts:
 *   - canon and hash accept exactly the same inputs;
 *   - the canonical form is canonical: canon of it gives the same bytes,
 *     and it hashes as the input does;
 *   - a tiny buffer is refused with TETHER_ETOOBIG, never overrun.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/ring.h"

#define OUT_BIG   (1u << 16)
#define OUT_SMALL 4

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t out[OUT_BIG], again[OUT_BIG];
    uint8_t small[OUT_SMALL + 1];
    size_t n = 0, m = 0, k = 0;
    uint64_t h1 = 0, h2 = 0;
    int rc, rh, rs;

    rc = tether_ring_canon(data, size, out, sizeof out, &n);
    rh = tether_ring_hash_term(data, size, &h1);
    if (rc == 0 && rh != 0)
        abort();
    if (rc == TETHER_EPROTO && rh != TETHER_EPROTO)
        abort();
    memset(small, 0xA5, sizeof small);
    rs = tether_ring_canon(data, size, small, OUT_SMALL, &k);
    if (small[OUT_SMALL] != 0xA5)
        abort(); /* written past cap */
    if (rc == 0 && n > OUT_SMALL && rs != TETHER_ETOOBIG)
        abort();
    if (rc != 0)
        return 0;
    if (tether_ring_canon(out, n, again, sizeof again, &m) != 0 || m != n ||
        memcmp(out, again, n) != 0)
        abort();
    if (tether_ring_hash_term(out, n, &h2) != 0 || h1 != h2)
        abort();
    return 0;
}
