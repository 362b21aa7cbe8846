/*
 * test/util.h: small byte helpers the Criterion suites share (header
 * only, static).
 */
#ifndef TETHER_TEST_UTIL_H
#define TETHER_TEST_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Fills p with a pattern that starts at `start`. */
static inline void fill(uint8_t *p, size_t n, uint8_t start)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(start + i * 7);
}

/* 1 if the n bytes at p are all zero (wiped). */
static inline int all_zero(const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != 0)
            return 0;
    return 1;
}

#endif /* TETHER_TEST_UTIL_H */
