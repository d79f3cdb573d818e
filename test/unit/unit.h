/*
 * unit.h -- shared helpers for the core's cmocka tests: random tensors
 * and a central finite-difference gradient check.
 */
#ifndef TL_UNIT_H
#define TL_UNIT_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "tl_alloc.h"
#include "tl_ops.h"
#include "tl_rng.h"
#include "tl_tensor.h"

/* Assert a core call succeeded, printing its message if not. */
#define ASSERT_OK(expr) \
	do { tl_status rc_ = (expr); \
		if (rc_ != TL_OK) fail_msg("%s -> %s: %s", #expr, tl_status_name(rc_), tl_last_error()); \
	} while (0)

/* Assert a core call failed with a given code. */
#define ASSERT_FAILS(code, expr) \
	do { tl_status rc_ = (expr); \
		if (rc_ != (code)) fail_msg("%s -> %s, expected %s", #expr, tl_status_name(rc_), tl_status_name(code)); \
	} while (0)

/* A heap copy of exactly len bytes (at least one allocated byte): ASan sees reads past len. */
static inline uint8_t *
copy_exact(const uint8_t *src, size_t len)
{
	uint8_t    *dst = malloc(len ? len : 1);

	assert_non_null(dst);
	if (len)
		memcpy(dst, src, len);
	return dst;
}

/* Little-endian stores, for building and damaging file images in tests. */
static inline void
put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t) (v >> (8 * i));
}

static inline void
put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t) (v >> (8 * i));
}

/* An owned tensor filled from N(0, scale). */
static inline tl_tensor
rand_tensor(tl_rng *rng, float scale, int ndim, const int64_t *shape)
{
	tl_tensor	t;

	if (tl_tensor_alloc(&t, ndim, shape) != TL_OK)
		fail_msg("alloc: %s", tl_last_error());
	for (int64_t i = 0; i < t.numel; i++)
		t.data[i] = scale * tl_rng_normal(rng);
	return t;
}

static inline tl_tensor
zeros_tensor(int ndim, const int64_t *shape)
{
	tl_tensor	t;

	if (tl_tensor_alloc(&t, ndim, shape) != TL_OK)
		fail_msg("alloc: %s", tl_last_error());
	return t;
}

#define RAND(rng, scale, ...) rand_tensor((rng), (scale), TL_NDIM(__VA_ARGS__), TL_SHAPE(__VA_ARGS__))
#define ZEROS(...) zeros_tensor(TL_NDIM(__VA_ARGS__), TL_SHAPE(__VA_ARGS__))

/* sum(out * weights) in double: the scalar loss the gradient checks use. */
static inline double
weighted_sum(const tl_tensor *out, const tl_tensor *weights)
{
	double		s = 0.0;

	for (int64_t i = 0; i < out->numel; i++)
		s += (double) out->data[i] * weights->data[i];
	return s;
}

/* A forward pass that returns the scalar loss for the current inputs. */
typedef double (*loss_fn) (void *ctx);

/*
 * Compare analytic gradients of `x` (n floats) with central differences
 * of loss(ctx).  Checks every element when n <= max_checks, else a
 * strided sample.  Tolerance: |a - num| <= atol + rtol * max(|a|, |num|).
 */
static inline void
check_gradient(const char *what, float *x, int64_t n, const float *analytic,
			   loss_fn loss, void *ctx, double eps, double atol, double rtol)
{
	int64_t		stride = n > 64 ? n / 64 : 1;
	double		worst = 0.0;

	for (int64_t i = 0; i < n; i += stride)
	{
		float		saved = x[i];
		double		plus,
					minus,
					numeric,
					err,
					bound;

		x[i] = (float) (saved + eps);
		plus = loss(ctx);
		x[i] = (float) (saved - eps);
		minus = loss(ctx);
		x[i] = saved;
		numeric = (plus - minus) / (2.0 * eps);
		err = fabs(numeric - analytic[i]);
		bound = atol + rtol * fmax(fabs(numeric), fabs(analytic[i]));
		if (err > worst)
			worst = err;
		if (err > bound)
			fail_msg("%s[%lld]: analytic %.6g vs numeric %.6g (err %.3g > %.3g)",
					 what, (long long) i, (double) analytic[i], numeric, err, bound);
	}
	print_message("  %-28s max |analytic - numeric| = %.2e\n", what, worst);
}

#endif							/* TL_UNIT_H */
