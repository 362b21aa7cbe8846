/*
 * sim/rng.c: splitmix64 and xoshiro256** (Blackman and Vigna, public
 * domain algorithms), written out here.
 */
#include "sim/rng.h"

uint64_t tether_sim_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));

    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

void tether_sim_rng_seed(tether_sim_rng_t *r, uint64_t seed)
{
    uint64_t st = seed;

    for (int i = 0; i < 4; i++)
        r->s[i] = tether_sim_splitmix64(&st);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t tether_sim_rng_next(tether_sim_rng_t *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint64_t tether_sim_rng_below(tether_sim_rng_t *r, uint64_t n)
{
    uint64_t x, limit;

    if (n == 0)
        return 0;
    limit = UINT64_MAX - UINT64_MAX % n; /* reject the biased tail */
    do
        x = tether_sim_rng_next(r);
    while (x >= limit);
    return x % n;
}

int tether_sim_rng_chance(tether_sim_rng_t *r, uint32_t permille)
{
    return tether_sim_rng_below(r, 1000) < permille;
}
