/*
 * tl_rng.c -- xoshiro256** seeded through splitmix64.
 */
#include <math.h>

#include "tl_rng.h"

static inline uint64_t
tl_rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

void
tl_rng_seed(tl_rng *rng, uint64_t seed)
{
	uint64_t	x = seed;

	/* splitmix64 expands one word into a state that is never all zero */
	for (int i = 0; i < 4; i++)
	{
		rng->s[i] = tl_mix64(x);
		x += 0x9E3779B97F4A7C15ULL;
	}
	rng->has_spare = 0;
	rng->spare = 0.0f;
}

uint64_t
tl_rng_next(tl_rng *rng)
{
	uint64_t   *s = rng->s;
	uint64_t	result = tl_rotl(s[1] * 5, 7) * 9;
	uint64_t	t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = tl_rotl(s[3], 45);
	return result;
}

float
tl_rng_uniform(tl_rng *rng)
{
	return (float) (tl_rng_next(rng) >> 40) * (1.0f / 16777216.0f);
}

float
tl_rng_normal(tl_rng *rng)
{
	double		u1,
				u2,
				r;

	if (rng->has_spare)
	{
		rng->has_spare = 0;
		return rng->spare;
	}
	/* u1 in (0, 1] so log() is finite */
	u1 = ((double) (tl_rng_next(rng) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
	u2 = (double) (tl_rng_next(rng) >> 11) * (1.0 / 9007199254740992.0);
	r = sqrt(-2.0 * log(u1));
	rng->spare = (float) (r * sin(2.0 * M_PI * u2));
	rng->has_spare = 1;
	return (float) (r * cos(2.0 * M_PI * u2));
}

/* Lemire's multiply-shift with rejection: no modulo bias. */
uint64_t
tl_rng_below(tl_rng *rng, uint64_t bound)
{
	unsigned __int128 m;
	uint64_t	low;

	if (bound == 0)
		return 0;
	m = (unsigned __int128) tl_rng_next(rng) * bound;
	low = (uint64_t) m;
	if (low < bound)
	{
		uint64_t	threshold = -bound % bound;

		while (low < threshold)
		{
			m = (unsigned __int128) tl_rng_next(rng) * bound;
			low = (uint64_t) m;
		}
	}
	return (uint64_t) (m >> 64);
}
