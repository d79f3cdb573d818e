/*
 * tl_vmath.h -- the exponential and the activations of the language
 * model, computed the way llama.cpp's CPU backend computes them.
 *
 * Greedy text is only the same as another runtime's when the logits are,
 * bit for bit, near ties included.  llama.cpp's CPU softmax and SiLU do
 * not call libm: they evaluate exp eight lanes at a time as
 * 2^n * (1 + p(b)), n = round(x / ln 2), b = x - n ln 2 (ln 2 in two
 * parts), p a degree-5 polynomial, with fused multiply-adds in a fixed
 * order.  tl_vexpf is that evaluation (within 2 ulp of exp), one lane at a
 * time with fmaf; the AVX2 versions below give the same bits eight at a
 * time.  The tests hold the two paths to bit identity and to libm's exp.
 */
#ifndef TL_VMATH_H
#define TL_VMATH_H

#include <stdint.h>

/* exp(x) by the polynomial above; 0 for -inf, inf past about 88.7. */
float		tl_vexpf(float x);

/*
 * y[i] = exp(x[i] - sub) for i < n, returning their sum in double: the
 * values are summed eight at a time in float (pairs (0,4), (2,6), (1,5),
 * (3,7), then those two by two), each group of eight added in double.
 * This is the softmax's denominator as llama.cpp forms it; positions past
 * n in the last group count as zero.  y may be x.
 */
double		tl_vmath_exp_sum(float *y, const float *x, int64_t n, float sub);

/*
 * gate[i] = silu(gate[i]) * up[i] for a row of n: silu(x) = x / (1 +
 * exp(-x)) with tl_vexpf over whole groups of eight and libm's expf for
 * the last n % 8, as llama.cpp's fused SwiGLU does per row.
 */
void		tl_vmath_swiglu(float *gate, const float *up, int64_t n);

#endif							/* TL_VMATH_H */
