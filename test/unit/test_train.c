/*
 * test_train.c -- whole-model checks: the Transformer block and the
 * small LM against finite differences, then real training on the
 * reverse task with a loss bound, and bitwise determinism for a seed.
 */
#include "unit.h"
#include "tl_block.h"
#include "tl_device.h"
#include "tl_seqlm.h"

/* ---- block gradients ----------------------------------------------------- */

typedef struct
{
	tl_block	block;
	tl_params	ps;
	tl_block_cache cache;
	tl_tensor	x,
				y,
				r;
	const uint8_t *valid;
	bool		training;
} block_ctx;

static double
block_loss(void *arg)
{
	block_ctx  *c = arg;

	if (tl_block_forward(&c->block, &c->ps, &c->cache, &c->x, &c->y, c->valid, c->training, 77) != TL_OK)
		fail_msg("%s", tl_last_error());
	return weighted_sum(&c->y, &c->r);
}

static void
run_block_gradient_check(float dropout)
{
	static const uint8_t valid[2 * 4] = {1, 1, 1, 1, 1, 0, 1, 1};
	tl_block_config cfg = {.d_model = 8, .heads = 2, .d_ff = 16, .dropout = dropout, .ln_eps = 1e-5f, .alibi = dropout > 0};
	block_ctx	c = {.valid = valid, .training = dropout > 0};
	tl_rng		rng;
	tl_tensor	dx = ZEROS(2, 4, 8);
	float	   *analytic;

	ASSERT_OK(tl_block_declare(&c.block, &cfg, &c.ps, "blk"));
	tl_rng_seed(&rng, 5);
	ASSERT_OK(tl_params_alloc(&c.ps, &rng));
	/* larger weights than the 0.02 init so every path carries signal */
	for (int64_t i = 0; i < c.ps.total; i++)
		c.ps.value[i] += 0.3f * tl_rng_normal(&rng);
	ASSERT_OK(tl_block_cache_alloc(&c.cache, &cfg, 2 * 4, 4));
	c.x = RAND(&rng, 1.0f, 2, 4, 8);
	c.y = ZEROS(2, 4, 8);
	c.r = RAND(&rng, 1.0f, 2, 4, 8);

	block_loss(&c);
	tl_params_zero_grad(&c.ps);
	ASSERT_OK(tl_block_backward(&c.block, &c.ps, &c.cache, &c.r, &dx));
	analytic = malloc(sizeof(float) * c.ps.total);
	memcpy(analytic, c.ps.grad, sizeof(float) * c.ps.total);

	check_gradient(dropout > 0 ? "block dx (dropout)" : "block dx", c.x.data, c.x.numel, dx.data,
				   block_loss, &c, 1e-3, 3e-3, 3e-2);
	for (int i = 0; i < c.ps.count; i++)
	{
		const tl_param *p = &c.ps.items[i];

		check_gradient(p->name, c.ps.value + p->offset, p->numel, analytic + p->offset,
					   block_loss, &c, 1e-3, 3e-3, 3e-2);
	}
	free(analytic);
	tl_block_cache_free(&c.cache);
	tl_params_free(&c.ps);
	tl_tensor_free(&c.x);
	tl_tensor_free(&c.y);
	tl_tensor_free(&c.r);
	tl_tensor_free(&dx);
}

static void
test_block_gradients(void **state)
{
	run_block_gradient_check(0.0f);
}

/* With a fixed seed the dropout mask is a fixed function: FD still applies. */
static void
test_block_gradients_with_dropout(void **state)
{
	run_block_gradient_check(0.2f);	/* with ALiBi too */
}

/* ---- the LM end to end ----------------------------------------------------- */

static tl_seqlm_config
small_config(int64_t layers, int64_t batch)
{
	return (tl_seqlm_config) {
		.vocab = TL_REVERSE_VOCAB, .max_seq = 13, .d_model = 32, .heads = 4, .d_ff = 64,
			.layers = layers, .dropout = 0.0f, .max_batch = batch,
			.lr = 3e-3f, .weight_decay = 0.01f, .clip_norm = 1.0f,
	};
}

typedef struct
{
	tl_seqlm	model;
	int32_t		tokens[2 * 13],
				targets[2 * 13];
} lm_ctx;

static double
lm_loss(void *arg)
{
	lm_ctx	   *c = arg;
	float		loss;

	if (tl_seqlm_forward(&c->model, c->tokens, c->targets, 2, 13, false, 0, &loss) != TL_OK)
		fail_msg("%s", tl_last_error());
	return loss;
}

static void
test_lm_gradients(void **state)
{
	lm_ctx		c;
	tl_seqlm_config cfg = small_config(2, 2);
	tl_rng		rng;
	float	   *analytic;

	cfg.d_model = 8;
	cfg.heads = 2;
	cfg.d_ff = 16;
	ASSERT_OK(tl_seqlm_create(&c.model, &cfg, 3));
	tl_rng_seed(&rng, 4);
	for (int64_t i = 0; i < c.model.params.total; i++)
		c.model.params.value[i] += 0.2f * tl_rng_normal(&rng);
	tl_reverse_task_batch(&rng, 2, 6, c.tokens, c.targets);
	c.tokens[13 + 12] = TL_PAD_INDEX;	/* a padded position in row 1 */

	lm_loss(&c);
	tl_params_zero_grad(&c.model.params);
	ASSERT_OK(tl_seqlm_backward(&c.model));
	analytic = malloc(sizeof(float) * c.model.params.total);
	memcpy(analytic, c.model.params.grad, sizeof(float) * c.model.params.total);
	for (int i = 0; i < c.model.params.count; i++)
	{
		const tl_param *p = &c.model.params.items[i];

		check_gradient(p->name, c.model.params.value + p->offset, p->numel, analytic + p->offset,
					   lm_loss, &c, 1e-3, 2e-3, 3e-2);
	}
	free(analytic);
	tl_seqlm_free(&c.model);
}

/* Mean loss of the model on fresh batches, without dropout. */
static float
eval_reverse(tl_seqlm *m, tl_rng *rng, int64_t batch)
{
	int32_t    *tok = malloc(sizeof(int32_t) * batch * 13);
	int32_t    *tgt = malloc(sizeof(int32_t) * batch * 13);
	float		loss;

	tl_reverse_task_batch(rng, batch, 6, tok, tgt);
	ASSERT_OK(tl_seqlm_forward(m, tok, tgt, batch, 13, false, 0, &loss));
	free(tok);
	free(tgt);
	return loss;
}

/* Train on the reverse task; returns the final held-out loss. */
static float
train_reverse(uint64_t seed, int steps, float *first_loss, float *trace, int trace_len)
{
	tl_seqlm	m;
	tl_seqlm_config cfg = small_config(2, 32);
	tl_rng		data_rng,
				eval_rng;
	int32_t		tok[32 * 13],
				tgt[32 * 13];
	float		loss = 0;

	ASSERT_OK(tl_seqlm_create(&m, &cfg, seed));
	tl_rng_seed(&data_rng, seed + 1);
	tl_rng_seed(&eval_rng, 999);
	for (int s = 0; s < steps; s++)
	{
		tl_reverse_task_batch(&data_rng, 32, 6, tok, tgt);
		ASSERT_OK(tl_seqlm_train_step(&m, tok, tgt, 32, 13, seed + (uint64_t) s, &loss));
		if (s == 0 && first_loss)
			*first_loss = loss;
		if (s < trace_len)
			trace[s] = loss;
	}
	loss = eval_reverse(&m, &eval_rng, 32);
	tl_seqlm_free(&m);
	return loss;
}

static void
test_training_reduces_loss(void **state)
{
	float		first = 0,
				final = train_reverse(7, 1500, &first, NULL, 0);

	print_message("  reverse task: first batch loss %.3f, held-out loss after 1500 steps %.4f\n",
				  first, final);
	/* chance is ln(10) = 2.30 per digit; reversing needs attention over positions */
	assert_true(first > 2.0f);
	assert_true(final < 0.10f);
}

static void
test_training_is_deterministic(void **state)
{
	float		a[20],
				b[20];

	/* on two pool threads too: chunks never share outputs, so results do not depend on timing */
	tl_set_num_threads(2);
	train_reverse(11, 20, NULL, a, 20);
	train_reverse(11, 20, NULL, b, 20);
	tl_set_num_threads(1);
	assert_memory_equal(a, b, sizeof(a));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_block_gradients),
		cmocka_unit_test(test_block_gradients_with_dropout),
		cmocka_unit_test(test_lm_gradients),
		cmocka_unit_test(test_training_is_deterministic),
		cmocka_unit_test(test_training_reduces_loss),
	};

	return cmocka_run_group_tests_name("model training", tests, NULL, NULL);
}
