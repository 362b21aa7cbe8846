/*
 * sim/rng.h: the simulator's seeded PRNG: splitmix64 to expand a seed,
 * xoshiro256** to draw. Same seed, same sequence, on every machine.
 */
#ifndef TETHER_SIM_RNG_H
#define TETHER_SIM_RNG_H

#include <stdint.h>

typedef struct tether_sim_rng {
    uint64_t s[4];
} tether_sim_rng_t;

/* One splitmix64 step over *state (also a good 64-bit mixer). */
uint64_t tether_sim_splitmix64(uint64_t *state);

/* Seeds the generator from one 64-bit seed. */
void tether_sim_rng_seed(tether_sim_rng_t *r, uint64_t seed);

/* The next 64 random bits. */
uint64_t tether_sim_rng_next(tether_sim_rng_t *r);

/* A uniform integer in [0, n); n == 0 gives 0. */
uint64_t tether_sim_rng_below(tether_sim_rng_t *r, uint64_t n);

/* 1 with probability permille / 1000. */
int tether_sim_rng_chance(tether_sim_rng_t *r, uint32_t permille);

#endif /* TETHER_SIM_RNG_H */
