/*
 * tl_rng.h -- deterministic random numbers.
 *
 * tl_rng is a sequential generator (xoshiro256**, seeded through
 * splitmix64) for weight init and shuffling.  tl_hash_uniform is a
 * counter-based generator: the value for (seed, counter) depends on
 * nothing else, so dropout masks are identical across thread counts,
 * across runs, and between the CPU and the CUDA kernels, which use the
 * same mixing function.
 */
#ifndef TL_RNG_H
#define TL_RNG_H

#include <stdint.h>

typedef struct tl_rng
{
	uint64_t	s[4];
	int			has_spare;		/* Box-Muller keeps its second sample */
	float		spare;
} tl_rng;

void		tl_rng_seed(tl_rng *rng, uint64_t seed);
uint64_t	tl_rng_next(tl_rng *rng);
float		tl_rng_uniform(tl_rng *rng);	/* [0, 1) */
float		tl_rng_normal(tl_rng *rng);		/* mean 0, std 1 */
uint64_t	tl_rng_below(tl_rng *rng, uint64_t bound);	/* [0, bound) unbiased */

/* splitmix64 finaliser: the shared mixing function of CPU and CUDA. */
static inline uint64_t
tl_mix64(uint64_t x)
{
	x += 0x9E3779B97F4A7C15ULL;
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
	x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
	return x ^ (x >> 31);
}

/* Uniform in [0, 1) from (seed, counter), 24 bits of resolution. */
static inline float
tl_hash_uniform(uint64_t seed, uint64_t counter)
{
	uint64_t	h = tl_mix64(seed ^ tl_mix64(counter));

	return (float) (h >> 40) * (1.0f / 16777216.0f);
}

#endif							/* TL_RNG_H */
