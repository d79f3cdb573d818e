/*
 * test_vmath.c -- the exponential and activations of tl_vmath: accuracy
 * against libm's exp in double, the special values, and the AVX2
 * versions against the scalar ones bit for bit (the property that makes
 * a machine's tokens independent of its instruction set).
 */
#include "unit.h"
#include "tl_quant.h"
#include "tl_vmath.h"

static uint32_t
bits_of(float f)
{
	uint32_t	u;

	memcpy(&u, &f, 4);
	return u;
}

/* Within 2 units in the last place of exp(x) over the normal range. */
static void
test_vexpf_accuracy(void **state)
{
	double		worst = 0.0;
	int			n = 0;

	for (float x = -87.0f; x <= 88.5f; x += 0.0137f, n++)
	{
		double		want = exp((double) x);
		double		ulp = ldexp(1.0, ilogb(want) - 23);
		double		err = fabs((double) tl_vexpf(x) - want) / ulp;

		if (err > 2.0)
			fail_msg("exp(%.9g): %.9g, expected %.9g (%.2f ulp)", x, tl_vexpf(x), want, err);
		worst = fmax(worst, err);
	}
	/* near zero, where the polynomial does all the work */
	for (float x = -0.5f; x <= 0.5f; x += 1.0f / 4096)
	{
		double		want = exp((double) x);
		double		ulp = ldexp(1.0, ilogb(want) - 23);

		if (fabs((double) tl_vexpf(x) - want) / ulp > 2.0)
			fail_msg("exp(%.9g): %.9g, expected %.9g", x, tl_vexpf(x), want);
	}
	print_message("  %d points in [-87, 88.5]: worst %.2f ulp\n", n, worst);
}

static void
test_vexpf_specials(void **state)
{
	assert_true(tl_vexpf(0.0f) == 1.0f);
	assert_true(tl_vexpf(-0.0f) == 1.0f);
	assert_true(tl_vexpf(-INFINITY) == 0.0f);
	assert_true(tl_vexpf(-200.0f) == 0.0f);
	assert_true(isinf(tl_vexpf(INFINITY)) && tl_vexpf(INFINITY) > 0);
	assert_true(isinf(tl_vexpf(100.0f)));
	assert_true(isnan(tl_vexpf(NAN)));
	/* past 126 halvings: the split scale path, still within 2 ulp */
	for (float x = 87.5f; x < 88.7f; x += 0.1f)
		assert_true(fabs(tl_vexpf(x) / exp((double) x) - 1.0) < 3e-7);
	/* subnormal results keep their magnitude */
	assert_true(tl_vexpf(-95.0f) > 0.0f && fabs(tl_vexpf(-95.0f) / exp(-95.0) - 1.0) < 1e-3);
}

/* Inputs spanning the ranges softmax and SiLU meet, with specials. */
static float *
probe_row(tl_rng *rng, int n)
{
	float	   *x = malloc(sizeof(float) * (size_t) n);

	for (int i = 0; i < n; i++)
		x[i] = tl_rng_normal(rng) * (i % 3 == 0 ? 30.0f : 4.0f);
	if (n > 20)
	{
		x[3] = -INFINITY;
		x[7] = 0.0f;
		x[11] = -0.0f;
		x[13] = 95.0f;
		x[17] = -120.0f;
	}
	return x;
}

/* exp_sum and swiglu on the AVX2 path and the scalar path: the same bits. */
static void
test_simd_equals_scalar(void **state)
{
	static const int sizes[] = {1, 7, 8, 9, 64, 67, 1536};
	tl_rng		rng;

	if (!tl_quant_simd_active())
		skip();
	tl_rng_seed(&rng, 5);
	for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++)
	{
		int			n = sizes[si];
		float	   *x = probe_row(&rng, n),
				   *up = probe_row(&rng, n),
				   *y1 = malloc(sizeof(float) * (size_t) n),
				   *y2 = malloc(sizeof(float) * (size_t) n),
				   *g1 = malloc(sizeof(float) * (size_t) n),
				   *g2 = malloc(sizeof(float) * (size_t) n);
		float		mx = -INFINITY;
		double		s1,
					s2;

		for (int i = 0; i < n; i++)
			mx = fmaxf(mx, x[i]);
		memcpy(g1, x, sizeof(float) * (size_t) n);
		memcpy(g2, x, sizeof(float) * (size_t) n);
		s1 = tl_vmath_exp_sum(y1, x, n, mx);
		tl_vmath_swiglu(g1, up, n);
		tl_quant_force_scalar(true);
		s2 = tl_vmath_exp_sum(y2, x, n, mx);
		tl_vmath_swiglu(g2, up, n);
		tl_quant_force_scalar(false);
		assert_true(s1 == s2);
		for (int i = 0; i < n; i++)
		{
			if (bits_of(y1[i]) != bits_of(y2[i]))
				fail_msg("n %d: exp at %d: %.9g (AVX2) != %.9g", n, i, y1[i], y2[i]);
			if (bits_of(g1[i]) != bits_of(g2[i]) && !(isnan(g1[i]) && isnan(g2[i])))
				fail_msg("n %d: swiglu at %d: %.9g (AVX2) != %.9g", n, i, g1[i], g2[i]);
		}
		free(x);
		free(up);
		free(y1);
		free(y2);
		free(g1);
		free(g2);
	}
}

/*
 * What the two functions compute: exp_sum's values are tl_vexpf's and its
 * sum is theirs within rounding; swiglu is x / (1 + exp(-x)) * up, with
 * tl_vexpf over whole groups of eight and libm's expf for the rest.
 */
static void
test_exp_sum_and_swiglu_values(void **state)
{
	tl_rng		rng;
	int			n = 67;
	float	   *x,
			   *up,
				y[67],
				g[67];
	double		sum,
				want = 0.0;
	float		mx = -INFINITY;

	tl_rng_seed(&rng, 9);
	x = probe_row(&rng, n);
	up = probe_row(&rng, n);
	for (int i = 0; i < n; i++)
		mx = fmaxf(mx, x[i]);
	sum = tl_vmath_exp_sum(y, x, n, mx);
	for (int i = 0; i < n; i++)
	{
		assert_true(bits_of(y[i]) == bits_of(tl_vexpf(x[i] - mx)));
		want += y[i];
	}
	assert_true(want >= 1.0 && fabs(sum - want) <= 1e-6 * want);
	/* in place, as the attention uses it */
	memcpy(g, x, sizeof(g));
	assert_true(tl_vmath_exp_sum(g, g, n, mx) == sum);
	assert_memory_equal(g, y, sizeof(g));

	memcpy(g, x, sizeof(g));
	tl_vmath_swiglu(g, up, n);
	for (int i = 0; i < n; i++)
	{
		float		e = i < 64 ? tl_vexpf(0.0f - x[i]) : expf(-x[i]);
		float		w = x[i] / (1.0f + e) * up[i];

		if (bits_of(g[i]) != bits_of(w) && !(isnan(g[i]) && isnan(w)))
			fail_msg("swiglu at %d: %.9g, expected %.9g", i, g[i], w);
	}
	free(x);
	free(up);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vexpf_accuracy),
		cmocka_unit_test(test_vexpf_specials),
		cmocka_unit_test(test_simd_equals_scalar),
		cmocka_unit_test(test_exp_sum_and_swiglu_values),
	};

	return cmocka_run_group_tests_name("vector math", tests, NULL, NULL);
}
