/*
 * test_attention.c -- causal multi-head attention against a naive
 * reference written from the definition, and its backward pass against
 * finite differences, with key padding.
 */
#include <stdbool.h>

#include "unit.h"

enum
{
	B = 2, T = 5, H = 2, HD = 3, D = H * HD
};

/* Naive reference: loops straight from softmax(QK^T/sqrt(hd) + mask) V. */
static void
reference_attention(float *out, const float *q, const float *k, const float *v,
					const uint8_t *valid, bool alibi)
{
	for (int b = 0; b < B; b++)
		for (int h = 0; h < H; h++)
			for (int i = 0; i < T; i++)
			{
				double		s[T],
							max = -INFINITY,
							sum = 0;
				int			any = 0;

				for (int j = 0; j < T; j++)
				{
					s[j] = -INFINITY;
					if (j > i || (valid && !valid[b * T + j]))
						continue;
					s[j] = 0;
					for (int d = 0; d < HD; d++)
						s[j] += (double) q[(b * T + i) * D + h * HD + d] * k[(b * T + j) * D + h * HD + d];
					s[j] /= sqrt((double) HD);
					if (alibi)	/* slope 2^(-8(h+1)/H) times the distance */
						s[j] -= pow(2.0, -8.0 * (h + 1) / H) * (i - j);
					if (s[j] > max)
						max = s[j];
					any = 1;
				}
				for (int j = 0; j < T; j++)
				{
					s[j] = any && s[j] != -INFINITY ? exp(s[j] - max) : 0.0;
					sum += s[j];
				}
				for (int d = 0; d < HD; d++)
				{
					double		acc = 0;

					for (int j = 0; j < T; j++)
						acc += sum > 0 ? s[j] / sum * v[(b * T + j) * D + h * HD + d] : 0.0;
					out[(b * T + i) * D + h * HD + d] = (float) acc;
				}
			}
}

typedef struct
{
	tl_tensor	q,
				k,
				v,
				out,
				probs,
				r;
	const uint8_t *valid;
	bool		alibi;
} attn_ctx;

static double
attn_loss(void *arg)
{
	attn_ctx   *c = arg;

	if (tl_attention_fwd(&c->out, &c->probs, &c->q, &c->k, &c->v, c->valid,
						 (tl_attn_dims) {B, T, H, HD, c->alibi}) != TL_OK)
		fail_msg("%s", tl_last_error());
	return weighted_sum(&c->out, &c->r);
}

static void
make_ctx(attn_ctx *c, uint64_t seed, const uint8_t *valid)
{
	tl_rng		rng;

	tl_rng_seed(&rng, seed);
	c->q = RAND(&rng, 1.0f, B, T, D);
	c->k = RAND(&rng, 1.0f, B, T, D);
	c->v = RAND(&rng, 1.0f, B, T, D);
	c->out = ZEROS(B, T, D);
	c->probs = ZEROS(B, H, T, T);
	c->r = RAND(&rng, 1.0f, B, T, D);
	c->valid = valid;
	c->alibi = false;
}

static void
free_ctx(attn_ctx *c)
{
	tl_tensor_free(&c->q);
	tl_tensor_free(&c->k);
	tl_tensor_free(&c->v);
	tl_tensor_free(&c->out);
	tl_tensor_free(&c->probs);
	tl_tensor_free(&c->r);
}

/* Sequence 0 fully valid; sequence 1 has padding at positions 0 and 3. */
static const uint8_t padded[B * T] = {1, 1, 1, 1, 1, 0, 1, 1, 0, 1};

static void
test_forward_matches_reference(void **state)
{
	const uint8_t *masks[2] = {NULL, padded};

	for (int m = 0; m < 4; m++)
	{
		attn_ctx	c;
		float		ref[B * T * D];

		make_ctx(&c, 11 + m, masks[m % 2]);
		c.alibi = m >= 2;
		attn_loss(&c);
		reference_attention(ref, c.q.data, c.k.data, c.v.data, masks[m % 2], c.alibi);
		for (int i = 0; i < B * T * D; i++)
			assert_float_equal(c.out.data[i], ref[i], 1e-5);
		/* probabilities are causal: nothing above the diagonal */
		for (int bh = 0; bh < B * H; bh++)
			for (int i = 0; i < T; i++)
				for (int j = i + 1; j < T; j++)
					assert_float_equal(c.probs.data[(bh * T + i) * T + j], 0.0f, 0);
		free_ctx(&c);
	}
}

static void
test_fully_masked_query(void **state)
{
	attn_ctx	c;

	/* sequence 1, query 0 sees only key 0, which is padding: zero output */
	make_ctx(&c, 13, padded);
	attn_loss(&c);
	for (int d = 0; d < D; d++)
		assert_float_equal(c.out.data[(1 * T + 0) * D + d], 0.0f, 0);
	free_ctx(&c);
}

static void
test_backward_matches_finite_differences(void **state)
{
	const uint8_t *masks[2] = {NULL, padded};

	static const char *const names[3][3] = {
		{"attention dq", "attention dk", "attention dv"},
		{"attention dq (padded)", "attention dk (padded)", "attention dv (padded)"},
		{"attention dq (padded, alibi)", "attention dk (padded, alibi)", "attention dv (padded, alibi)"},
	};

	for (int m = 0; m < 3; m++)
	{
		attn_ctx	c;
		tl_tensor	dq = ZEROS(B, T, D),
					dk = ZEROS(B, T, D),
					dv = ZEROS(B, T, D);

		make_ctx(&c, 21 + m, masks[m > 0]);
		c.alibi = m == 2;
		attn_loss(&c);
		ASSERT_OK(tl_attention_bwd(&dq, &dk, &dv, &c.r, &c.probs, &c.q, &c.k, &c.v,
								   (tl_attn_dims) {B, T, H, HD, c.alibi}));
		check_gradient(names[m][0], c.q.data, c.q.numel, dq.data, attn_loss, &c, 1e-3, 2e-3, 2e-2);
		check_gradient(names[m][1], c.k.data, c.k.numel, dk.data, attn_loss, &c, 1e-3, 2e-3, 2e-2);
		check_gradient(names[m][2], c.v.data, c.v.numel, dv.data, attn_loss, &c, 1e-3, 2e-3, 2e-2);
		tl_tensor_free(&dq);
		tl_tensor_free(&dk);
		tl_tensor_free(&dv);
		free_ctx(&c);
	}
}

/* Queries placed at the last position see what row T-1 of the full pass sees. */
static void
test_query_attention_matches_last_row(void **state)
{
	for (int m = 0; m < 2; m++)
	{
		attn_ctx	c;
		tl_tensor	q1,
					k1,
					v1,
					out1 = ZEROS(1, D);

		make_ctx(&c, 41 + m, padded);
		c.alibi = m == 1;
		attn_loss(&c);
		/* sequence 1 of the batch, its last query row */
		ASSERT_OK(tl_tensor_view(&q1, c.q.data + (1 * T + T - 1) * D, 2, TL_SHAPE(1, D)));
		ASSERT_OK(tl_tensor_view(&k1, c.k.data + 1 * T * D, 2, TL_SHAPE(T, D)));
		ASSERT_OK(tl_tensor_view(&v1, c.v.data + 1 * T * D, 2, TL_SHAPE(T, D)));
		ASSERT_OK(tl_attention_query_fwd(&out1, &q1, &k1, &v1, padded + T, T - 1, H, c.alibi));
		for (int d = 0; d < D; d++)
			assert_float_equal(out1.data[d], c.out.data[(1 * T + T - 1) * D + d], 1e-5);
		ASSERT_FAILS(TL_ERR_ARG, tl_attention_query_fwd(&out1, &q1, &k1, &v1, NULL, T, H, false));
		ASSERT_FAILS(TL_ERR_ARG, tl_attention_query_fwd(&out1, &q1, &k1, &v1, NULL, 0, 4, false));
		tl_tensor_free(&out1);
		free_ctx(&c);
	}
}

static void
test_bad_dimensions(void **state)
{
	attn_ctx	c;

	make_ctx(&c, 31, NULL);
	/* heads * head_dim must equal the model width of q */
	ASSERT_FAILS(TL_ERR_SHAPE, tl_attention_fwd(&c.out, &c.probs, &c.q, &c.k, &c.v, NULL,
												(tl_attn_dims) {B, T, 3, HD, false}));
	ASSERT_FAILS(TL_ERR_ARG, tl_attention_fwd(&c.out, &c.probs, &c.q, &c.k, &c.v, NULL,
											  (tl_attn_dims) {B, T, 0, HD, false}));
	ASSERT_FAILS(TL_ERR_SHAPE, tl_attention_fwd(&c.out, &c.probs, &c.q, &c.k, &c.v, NULL,
												(tl_attn_dims) {B, T + 1, H, HD, false}));
	free_ctx(&c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_forward_matches_reference),
		cmocka_unit_test(test_fully_masked_query),
		cmocka_unit_test(test_backward_matches_finite_differences),
		cmocka_unit_test(test_query_attention_matches_last_row),
		cmocka_unit_test(test_bad_dimensions),
	};

	return cmocka_run_group_tests_name("attention", tests, NULL, NULL);
}
