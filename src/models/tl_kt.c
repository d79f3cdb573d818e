/*
 * tl_kt.c -- the knowledge-tracing Transformer: forward, backward and
 * next-answer inference.  See tl_kt.h for the model.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tl_alloc.h"
#include "tl_kt.h"
#include "tl_math.h"
#include "tl_pool.h"

/*
 * Shape letters: S = skills, I = items, D = d_model, 1 = one.  Matrices
 * start at N(0, 0.02) with weight decay; item offsets start at zero and
 * are decayed too, which shrinks rarely seen items towards their skill.
 */
static const struct
{
	const char *name;
	const char *shape;
	tl_init		init;
	bool		decay;
}			tl_kt_layout[TL_KT_NPARAMS] = {
	[TL_KT_ANS_CORRECT] = {"ans.correct", "SD", TL_INIT_NORMAL, true},
	[TL_KT_ANS_WRONG] = {"ans.wrong", "SD", TL_INIT_NORMAL, true},
	[TL_KT_ANS_VAR] = {"ans.var", "SD", TL_INIT_NORMAL, true},
	[TL_KT_ITEM_MU_A] = {"item.mu_a", "I", TL_INIT_ZEROS, true},
	[TL_KT_BOS] = {"bos", "D", TL_INIT_NORMAL, false},
	[TL_KT_Q_SKILL] = {"q.skill", "SD", TL_INIT_NORMAL, true},
	[TL_KT_Q_VAR] = {"q.var", "SD", TL_INIT_NORMAL, true},
	[TL_KT_ITEM_MU_Q] = {"item.mu_q", "I", TL_INIT_ZEROS, true},
	[TL_KT_ENC_LN_G] = {"enc.ln.g", "D", TL_INIT_ONES, false},
	[TL_KT_ENC_LN_B] = {"enc.ln.b", "D", TL_INIT_ZEROS, false},
	[TL_KT_DEC_WQ] = {"dec.wq", "DD", TL_INIT_NORMAL, true},
	[TL_KT_DEC_BQ] = {"dec.bq", "D", TL_INIT_ZEROS, false},
	[TL_KT_DEC_WK] = {"dec.wk", "DD", TL_INIT_NORMAL, true},
	[TL_KT_DEC_BK] = {"dec.bk", "D", TL_INIT_ZEROS, false},
	[TL_KT_DEC_WV] = {"dec.wv", "DD", TL_INIT_NORMAL, true},
	[TL_KT_DEC_BV] = {"dec.bv", "D", TL_INIT_ZEROS, false},
	[TL_KT_DEC_WO] = {"dec.wo", "DD", TL_INIT_NORMAL, true},
	[TL_KT_DEC_BO] = {"dec.bo", "D", TL_INIT_ZEROS, false},
	[TL_KT_DEC_LN_G] = {"dec.ln.g", "D", TL_INIT_ONES, false},
	[TL_KT_DEC_LN_B] = {"dec.ln.b", "D", TL_INIT_ZEROS, false},
	[TL_KT_HEAD_W1] = {"head.w1", "DD", TL_INIT_NORMAL, true},
	[TL_KT_HEAD_B1] = {"head.b1", "D", TL_INIT_ZEROS, false},
	[TL_KT_HEAD_W2] = {"head.w2", "1D", TL_INIT_NORMAL, true},
	[TL_KT_HEAD_B2] = {"head.b2", "1", TL_INIT_ZEROS, false},
	[TL_KT_ITEM_BIAS] = {"item.bias", "I", TL_INIT_ZEROS, true},
	[TL_KT_SKILL_BIAS] = {"skill.bias", "S", TL_INIT_ZEROS, false},
	[TL_KT_REPEAT_CORRECT] = {"repeat.correct", "D", TL_INIT_ZEROS, false},
	[TL_KT_REPEAT_WRONG] = {"repeat.wrong", "D", TL_INIT_ZEROS, false},
};

#define TL_KT_LN_EPS 1e-5f
#define TL_KT_SITE_DEC 0x6b74646563ULL	/* dropout seed salt of the decoder branch */

/* The value (or gradient) of parameter p as a tensor. */
static inline tl_tensor
kt_value(const tl_kt *m, tl_kt_param p)
{
	return tl_params_value(&m->params, m->param[p]);
}

static inline tl_tensor
kt_grad(const tl_kt *m, tl_kt_param p)
{
	return tl_params_grad(&m->params, m->param[p]);
}

static tl_status
kt_check_config(const tl_kt_config *c)
{
	if (c->n_items < 1 || c->n_skills < 1)
		return tl_fail(TL_ERR_ARG, "a knowledge-tracing model needs at least one item and one skill index");
	if (c->d_model < 4 || c->d_model > 4096 || c->heads < 1 || c->d_model % c->heads != 0)
		return tl_fail(TL_ERR_ARG, "d_model %lld must be in 4..4096 and a multiple of heads %lld",
					   (long long) c->d_model, (long long) c->heads);
	if (c->layers < 1 || c->layers > 16)
		return tl_fail(TL_ERR_ARG, "layers %lld is outside 1..16", (long long) c->layers);
	if (c->d_ff < 1 || c->d_ff > 65536)
		return tl_fail(TL_ERR_ARG, "d_ff %lld is outside 1..65536", (long long) c->d_ff);
	if (c->window < 2 || c->window > 4096)
		return tl_fail(TL_ERR_ARG, "window %lld is outside 2..4096", (long long) c->window);
	if (c->max_tokens < c->window || c->max_tokens > (1LL << 26))
		return tl_fail(TL_ERR_ARG, "max_tokens %lld must be at least the window %lld and at most 2^26",
					   (long long) c->max_tokens, (long long) c->window);
	if (!(c->dropout >= 0.0f && c->dropout < 1.0f))
		return tl_fail(TL_ERR_ARG, "dropout %g is outside [0, 1)", (double) c->dropout);
	return TL_OK;
}

/* The activation buffers, listed once for allocation and release. */
#define TL_KT_BUFFERS 32

static void
kt_buffers(tl_kt *m, tl_buffer *b)
{
	const tl_kt_config *cfg = &m->cfg;
	int64_t		N = cfg->max_tokens,
				D = cfg->d_model;
	int			n = 0;

	b[n++] = TL_BUFFER(m->enc, (cfg->layers + 1) * N * D);
	b[n++] = TL_BUFFER(m->hs, N * D);
	b[n++] = TL_BUFFER(m->hs_mean, N);
	b[n++] = TL_BUFFER(m->hs_rstd, N);
	b[n++] = TL_BUFFER(m->u, N * D);
	b[n++] = TL_BUFFER(m->dq, N * D);
	b[n++] = TL_BUFFER(m->dk, N * D);
	b[n++] = TL_BUFFER(m->dv, N * D);
	b[n++] = TL_BUFFER(m->dprobs, N * cfg->heads * cfg->window);
	b[n++] = TL_BUFFER(m->dattn, N * D);
	b[n++] = TL_BUFFER(m->zpre, N * D);
	b[n++] = TL_BUFFER(m->z, N * D);
	b[n++] = TL_BUFFER(m->z_mean, N);
	b[n++] = TL_BUFFER(m->z_rstd, N);
	b[n++] = TL_BUFFER(m->h1, N * D);
	b[n++] = TL_BUFFER(m->hid, N * D);
	b[n++] = TL_BUFFER(m->logits, N);
	b[n++] = TL_BUFFER(m->g1, N * D);
	b[n++] = TL_BUFFER(m->g2, N * D);
	b[n++] = TL_BUFFER(m->g3, N * D);
	b[n++] = TL_BUFFER(m->g4, N * D);
	b[n++] = TL_BUFFER(m->g5, N * D);
	b[n++] = TL_BUFFER(m->gq, N * D);
	b[n++] = TL_BUFFER(m->gk, N * D);
	b[n++] = TL_BUFFER(m->gv, N * D);
	b[n++] = TL_BUFFER(m->dlogits, N);
	b[n++] = TL_BUFFER(m->weights, N);
	b[n++] = TL_BUFFER(m->targets, N);
	b[n++] = TL_BUFFER(m->items, N);
	b[n++] = TL_BUFFER(m->skills, N);
	b[n++] = TL_BUFFER(m->answers, N);
	b[n++] = TL_BUFFER(m->valid, N);
}

tl_status
tl_kt_create(tl_kt *m, const tl_kt_config *cfg, uint64_t seed)
{
	int64_t		N = cfg->max_tokens,
				D = cfg->d_model;
	tl_block_config bcfg;
	tl_buffer	bufs[TL_KT_BUFFERS];
	tl_rng		rng;
	tl_status	rc;

	memset(m, 0, sizeof(*m));
	TL_TRY(kt_check_config(cfg));
	m->cfg = *cfg;
	bcfg = (tl_block_config) {D, cfg->heads, cfg->d_ff, cfg->dropout, TL_KT_LN_EPS, true};

#define TRY(expr) do { if ((rc = (expr)) != TL_OK) goto fail; } while (0)
	for (int p = 0; p < TL_KT_NPARAMS; p++)
	{
		const char *letters = tl_kt_layout[p].shape;
		int			ndim = (int) strlen(letters);
		int64_t		shape[2];

		for (int d = 0; d < ndim; d++)
			shape[d] = letters[d] == 'S' ? cfg->n_skills : letters[d] == 'I' ? cfg->n_items :
				letters[d] == 'D' ? D : 1;
		TRY(tl_params_declare(&m->params, tl_kt_layout[p].name, ndim, shape, tl_kt_layout[p].init,
							  0.02f, tl_kt_layout[p].decay, &m->param[p]));
		if (letters[0] == 'I')
			m->params.items[m->param[p]].lr_scale = cfg->item_lr_scale > 0.0f ? cfg->item_lr_scale : 1.0f;
	}
	TRY(tl_stack_declare(&m->encoder, &bcfg, cfg->layers, &m->params, "enc"));
	tl_rng_seed(&rng, seed);
	TRY(tl_params_alloc(&m->params, &rng));
	if (cfg->lr > 0.0f)			/* lr 0: an inference-only model, no optimiser state */
		TRY(tl_adamw_init(&m->opt, &m->params, cfg->lr, cfg->weight_decay));
	TRY(tl_stack_cache_alloc(&m->encoder, N, cfg->window));
	kt_buffers(m, bufs);
	TRY(tl_alloc_buffers(bufs, TL_KT_BUFFERS, "knowledge-tracing activations"));
#undef TRY
	return TL_OK;

fail:
	tl_kt_free(m);
	return rc;
}

void
tl_kt_free(tl_kt *m)
{
	tl_buffer	bufs[TL_KT_BUFFERS];

	tl_stack_free(&m->encoder);
	tl_params_free(&m->params);
	tl_adamw_free(&m->opt);
	kt_buffers(m, bufs);
	tl_free_buffers(bufs, TL_KT_BUFFERS);
	memset(m, 0, sizeof(*m));
}

/* ---- embeddings -------------------------------------------------------- */

/*
 * Encoder input (B, T, D) from the copied batch: position 0 of each row
 * is BOS, position p the interaction embedding of answer p-1; invalid
 * positions are zero.
 */
static void
kt_embed_inputs(tl_kt *m, float *x)
{
	const int64_t B = m->batch,
				T = m->seq,
				D = m->cfg.d_model;
	const float *C = kt_value(m, TL_KT_ANS_CORRECT).data,
			   *W = kt_value(m, TL_KT_ANS_WRONG).data,
			   *V = kt_value(m, TL_KT_ANS_VAR).data,
			   *mu = kt_value(m, TL_KT_ITEM_MU_A).data,
			   *bos = kt_value(m, TL_KT_BOS).data;

	for (int64_t b = 0; b < B; b++)
		for (int64_t p = 0; p < T; p++)
		{
			int64_t		idx = b * T + p;
			float	   *row = x + idx * D;

			if (!m->valid[idx])
				memset(row, 0, sizeof(float) * D);
			else if (p == 0)
				memcpy(row, bos, sizeof(float) * D);
			else
			{
				float		a = m->answers[idx - 1],
							mi = mu[m->items[idx - 1]];
				int64_t		s = m->skills[idx - 1];

#pragma omp simd
				for (int64_t d = 0; d < D; d++)
					row[d] = a * C[s * D + d] + (1.0f - a) * W[s * D + d] + mi * V[s * D + d];
			}
		}
}

/* Backward of kt_embed_inputs: dx (B, T, D) into the embedding gradients. */
static void
kt_embed_inputs_bwd(tl_kt *m, const float *dx)
{
	const int64_t B = m->batch,
				T = m->seq,
				D = m->cfg.d_model;
	const float *V = kt_value(m, TL_KT_ANS_VAR).data,
			   *mu = kt_value(m, TL_KT_ITEM_MU_A).data;
	float	   *gC = kt_grad(m, TL_KT_ANS_CORRECT).data,
			   *gW = kt_grad(m, TL_KT_ANS_WRONG).data,
			   *gV = kt_grad(m, TL_KT_ANS_VAR).data,
			   *gmu = kt_grad(m, TL_KT_ITEM_MU_A).data,
			   *gbos = kt_grad(m, TL_KT_BOS).data;

	for (int64_t b = 0; b < B; b++)
		for (int64_t p = 0; p < T; p++)
		{
			int64_t		idx = b * T + p;
			const float *g = dx + idx * D;

			if (!m->valid[idx])
				continue;
			if (p == 0)
			{
				for (int64_t d = 0; d < D; d++)
					gbos[d] += g[d];
				continue;
			}
			{
				float		a = m->answers[idx - 1];
				int32_t		i = m->items[idx - 1];
				int64_t		s = m->skills[idx - 1];
				float		mi = mu[i],
							dot = 0.0f;

#pragma omp simd reduction(+:dot)
				for (int64_t d = 0; d < D; d++)
				{
					gC[s * D + d] += a * g[d];
					gW[s * D + d] += (1.0f - a) * g[d];
					gV[s * D + d] += mi * g[d];
					dot += V[s * D + d] * g[d];
				}
				gmu[i] += dot;
			}
		}
}

/* u_p = Qs[s] + mu * Qv[s] for one question; mu is the item's offset. */
static inline void
kt_question(const tl_kt *m, float *row, int64_t s, float mu)
{
	const int64_t D = m->cfg.d_model;
	const float *Qs = kt_value(m, TL_KT_Q_SKILL).data + s * D,
			   *Qv = kt_value(m, TL_KT_Q_VAR).data + s * D;

#pragma omp simd
	for (int64_t d = 0; d < D; d++)
		row[d] = Qs[d] + mu * Qv[d];
}

/* u += a*Rc + (1-a)*Rw: the question repeats the item of the answer a just before it. */
static inline void
kt_repeat(const tl_kt *m, float *row, float a)
{
	const int64_t D = m->cfg.d_model;
	const float *Rc = kt_value(m, TL_KT_REPEAT_CORRECT).data,
			   *Rw = kt_value(m, TL_KT_REPEAT_WRONG).data;

#pragma omp simd
	for (int64_t d = 0; d < D; d++)
		row[d] += a * Rc[d] + (1.0f - a) * Rw[d];
}

/* Does position idx (not the first of its row) ask the item answered just before? */
static inline bool
kt_is_repeat(const tl_kt *m, int64_t idx)
{
	return idx % m->seq > 0 && m->items[idx] > 0 && m->items[idx] == m->items[idx - 1];
}

static void
kt_embed_questions(tl_kt *m)
{
	const int64_t N = m->batch * m->seq,
				D = m->cfg.d_model;
	const float *mu = kt_value(m, TL_KT_ITEM_MU_Q).data;

	for (int64_t idx = 0; idx < N; idx++)
		if (m->valid[idx])
		{
			kt_question(m, m->u + idx * D, m->skills[idx], mu[m->items[idx]]);
			if (kt_is_repeat(m, idx))
				kt_repeat(m, m->u + idx * D, m->answers[idx - 1]);
		}
		else
			memset(m->u + idx * D, 0, sizeof(float) * D);
}

static void
kt_embed_questions_bwd(tl_kt *m, const float *du)
{
	const int64_t N = m->batch * m->seq,
				D = m->cfg.d_model;
	const float *Qv = kt_value(m, TL_KT_Q_VAR).data,
			   *mu = kt_value(m, TL_KT_ITEM_MU_Q).data;
	float	   *gQs = kt_grad(m, TL_KT_Q_SKILL).data,
			   *gQv = kt_grad(m, TL_KT_Q_VAR).data,
			   *gmu = kt_grad(m, TL_KT_ITEM_MU_Q).data,
			   *gRc = kt_grad(m, TL_KT_REPEAT_CORRECT).data,
			   *gRw = kt_grad(m, TL_KT_REPEAT_WRONG).data;

	for (int64_t idx = 0; idx < N; idx++)
	{
		const float *g = du + idx * D;
		int64_t		s = m->skills[idx];
		int32_t		i = m->items[idx];
		float		dot = 0.0f;

		if (!m->valid[idx])
			continue;
#pragma omp simd reduction(+:dot)
		for (int64_t d = 0; d < D; d++)
		{
			gQs[s * D + d] += g[d];
			gQv[s * D + d] += mu[i] * g[d];
			dot += Qv[s * D + d] * g[d];
		}
		gmu[i] += dot;
		if (kt_is_repeat(m, idx))
		{
			float		a = m->answers[idx - 1];

			for (int64_t d = 0; d < D; d++)
			{
				gRc[d] += a * g[d];
				gRw[d] += (1.0f - a) * g[d];
			}
		}
	}
}

/* ---- forward and backward ---------------------------------------------- */

/* The decoder's parameters as tensors. */
typedef struct kt_decoder
{
	tl_tensor	wq,
				bq,
				wk,
				bk,
				wv,
				bv,
				wo,
				bo,
				ln_g,
				ln_b;
} kt_decoder;

static kt_decoder
kt_decoder_params(const tl_kt *m)
{
	return (kt_decoder) {
		kt_value(m, TL_KT_DEC_WQ), kt_value(m, TL_KT_DEC_BQ),
			kt_value(m, TL_KT_DEC_WK), kt_value(m, TL_KT_DEC_BK),
			kt_value(m, TL_KT_DEC_WV), kt_value(m, TL_KT_DEC_BV),
			kt_value(m, TL_KT_DEC_WO), kt_value(m, TL_KT_DEC_BO),
			kt_value(m, TL_KT_DEC_LN_G), kt_value(m, TL_KT_DEC_LN_B),
	};
}

/* Copy and validate a batch into the model's buffers. */
static tl_status
kt_load_batch(tl_kt *m, const tl_kt_batch *bt)
{
	int64_t		B = bt->batch,
				T = bt->seq,
				N;

	if (B <= 0 || T <= 0 || T > m->cfg.window || B > m->cfg.max_tokens / T)
		return tl_fail(TL_ERR_ARG, "batch of %lld x %lld answers does not fit windows of %lld and %lld tokens",
					   (long long) B, (long long) T, (long long) m->cfg.window, (long long) m->cfg.max_tokens);
	if (!bt->items || !bt->skills || !bt->correct || !bt->valid)
		return tl_fail(TL_ERR_ARG, "knowledge-tracing batch arrays are missing");
	N = B * T;
	for (int64_t idx = 0; idx < N; idx++)
	{
		bool		valid = bt->valid[idx] != 0;
		float		w = bt->weight ? bt->weight[idx] : 1.0f;

		if (valid && (bt->items[idx] < 0 || bt->items[idx] >= m->cfg.n_items ||
					  bt->skills[idx] < 0 || bt->skills[idx] >= m->cfg.n_skills))
			return tl_fail(TL_ERR_ARG, "item %d or skill %d at position %lld is outside the vocabulary",
						   bt->items[idx], bt->skills[idx], (long long) idx);
		if (valid && !(bt->correct[idx] >= 0.0f && bt->correct[idx] <= 1.0f))
			return tl_fail(TL_ERR_ARG, "correctness %g at position %lld is outside [0, 1]",
						   (double) bt->correct[idx], (long long) idx);
		if (!(w >= 0.0f) || isinf(w))
			return tl_fail(TL_ERR_ARG, "loss weight %g at position %lld is not finite and non-negative",
						   (double) w, (long long) idx);
		if (valid && idx % T > 0 && !bt->valid[idx - 1])
			return tl_fail(TL_ERR_ARG, "valid answers must be a prefix of each row (position %lld)",
						   (long long) idx);
		m->valid[idx] = valid;
		m->items[idx] = valid ? bt->items[idx] : 0;
		m->skills[idx] = valid ? bt->skills[idx] : 0;
		m->answers[idx] = valid ? bt->correct[idx] : 0.0f;
		m->targets[idx] = m->answers[idx];
		m->weights[idx] = valid ? w : 0.0f;
	}
	m->batch = B;
	m->seq = T;
	return TL_OK;
}

/* Encoder from the embedded inputs in enc[0] to hs = LN(output). */
static tl_status
kt_encode(tl_kt *m, bool training, uint64_t seed)
{
	const int64_t B = m->batch,
				T = m->seq,
				N = B * T,
				D = m->cfg.d_model;
	tl_tensor	last,
				hs = TL_VIEW(m->hs, B, T, D),
				mean = TL_VIEW(m->hs_mean, N),
				rstd = TL_VIEW(m->hs_rstd, N),
				g = kt_value(m, TL_KT_ENC_LN_G),
				b = kt_value(m, TL_KT_ENC_LN_B);

	TL_TRY(tl_stack_forward(&m->encoder, &m->params, m->enc, B, T, m->valid, training, seed));
	last = TL_VIEW(m->enc + m->cfg.layers * N * D, B, T, D);
	return tl_layernorm_fwd(&hs, &mean, &rstd, &last, &g, &b, TL_KT_LN_EPS);
}

/*
 * logits (N) from z (N, D): the MLP head plus the item and skill biases.
 * item_bias holds the per-row item term (already looked up).
 */
static tl_status
kt_head(const tl_kt *m, int64_t rows, const float *z, float *h1, float *hid, float *logits,
		const float *item_term, const int32_t *skills)
{
	const int64_t D = m->cfg.d_model;
	tl_tensor	tz = TL_VIEW((float *) z, rows, D),
				th1 = TL_VIEW(h1, rows, D),
				thid = TL_VIEW(hid, rows, D),
				tlog = TL_VIEW(logits, rows, 1),
				w1 = kt_value(m, TL_KT_HEAD_W1),
				b1 = kt_value(m, TL_KT_HEAD_B1),
				w2 = kt_value(m, TL_KT_HEAD_W2),
				b2 = kt_value(m, TL_KT_HEAD_B2);
	const float *skill_bias = kt_value(m, TL_KT_SKILL_BIAS).data;

	TL_TRY(tl_linear_fwd(&th1, &tz, &w1, &b1));
	TL_TRY(tl_gelu_fwd(&thid, &th1));
	TL_TRY(tl_linear_fwd(&tlog, &thid, &w2, &b2));
	for (int64_t r = 0; r < rows; r++)
		logits[r] += item_term[r] + skill_bias[skills[r]];
	return TL_OK;
}

tl_status
tl_kt_forward(tl_kt *m, const tl_kt_batch *batch, bool training, uint64_t seed, float *loss)
{
	int64_t		B,
				T,
				N,
				D = m->cfg.d_model,
				H = m->cfg.heads;
	float		p = training ? m->cfg.dropout : 0.0f;
	const float *item_bias;
	tl_tensor	u,
				hs,
				q,
				k,
				v,
				probs,
				attn,
				od,
				zpre,
				z,
				mean,
				rstd,
				logits,
				targets,
				weights;
	kt_decoder	dec = kt_decoder_params(m);

	if (!loss)
		return tl_fail(TL_ERR_ARG, "knowledge-tracing forward needs a loss output");
	TL_TRY(kt_load_batch(m, batch));
	B = m->batch;
	T = m->seq;
	N = B * T;
	m->training = training;
	m->seed = seed;

	kt_embed_inputs(m, m->enc);
	TL_TRY(kt_encode(m, training, seed));
	kt_embed_questions(m);

	u = TL_VIEW(m->u, B, T, D);
	hs = TL_VIEW(m->hs, B, T, D);
	q = TL_VIEW(m->dq, B, T, D);
	k = TL_VIEW(m->dk, B, T, D);
	v = TL_VIEW(m->dv, B, T, D);
	probs = TL_VIEW(m->dprobs, B, H, T, T);
	attn = TL_VIEW(m->dattn, B, T, D);
	od = TL_VIEW(m->g1, B, T, D);
	zpre = TL_VIEW(m->zpre, B, T, D);
	z = TL_VIEW(m->z, B, T, D);
	mean = TL_VIEW(m->z_mean, N);
	rstd = TL_VIEW(m->z_rstd, N);
	TL_TRY(tl_linear_fwd(&q, &u, &dec.wq, &dec.bq));
	TL_TRY(tl_linear_fwd(&k, &hs, &dec.wk, &dec.bk));
	TL_TRY(tl_linear_fwd(&v, &hs, &dec.wv, &dec.bv));
	TL_TRY(tl_attention_fwd(&attn, &probs, &q, &k, &v, m->valid, (tl_attn_dims) {B, T, H, D / H, true}));
	TL_TRY(tl_linear_fwd(&od, &attn, &dec.wo, &dec.bo));
	TL_TRY(tl_dropout_fwd(&od, &od, p, tl_mix64(seed ^ TL_KT_SITE_DEC), 0));
	TL_TRY(tl_add(&zpre, &u, &od));
	TL_TRY(tl_layernorm_fwd(&z, &mean, &rstd, &zpre, &dec.ln_g, &dec.ln_b, TL_KT_LN_EPS));

	/* per-row item term into g2 (free until the backward pass) */
	item_bias = kt_value(m, TL_KT_ITEM_BIAS).data;
	for (int64_t idx = 0; idx < N; idx++)
		m->g2[idx] = item_bias[m->items[idx]];
	TL_TRY(kt_head(m, N, m->z, m->h1, m->hid, m->logits, m->g2, m->skills));

	logits = TL_VIEW(m->logits, N);
	targets = TL_VIEW(m->targets, N);
	weights = TL_VIEW(m->weights, N);
	return tl_bce_logits_fwd(loss, &logits, &targets, &weights);
}

tl_status
tl_kt_backward(tl_kt *m)
{
	const int64_t B = m->batch,
				T = m->seq,
				N = B * T,
				D = m->cfg.d_model,
				H = m->cfg.heads;
	float		p = m->training ? m->cfg.dropout : 0.0f;
	tl_tensor	logits = TL_VIEW(m->logits, N),
				dlogits = TL_VIEW(m->dlogits, N),
				dlog2 = TL_VIEW(m->dlogits, N, 1),
				targets = TL_VIEW(m->targets, N),
				weights = TL_VIEW(m->weights, N),
				g1 = TL_VIEW(m->g1, B, T, D),
				g2 = TL_VIEW(m->g2, B, T, D),
				g3 = TL_VIEW(m->g3, B, T, D),
				g4 = TL_VIEW(m->g4, B, T, D),
				g5 = TL_VIEW(m->g5, B, T, D),
				gq = TL_VIEW(m->gq, B, T, D),
				gk = TL_VIEW(m->gk, B, T, D),
				gv = TL_VIEW(m->gv, B, T, D),
				h1 = TL_VIEW(m->h1, B, T, D),
				hid = TL_VIEW(m->hid, B, T, D),
				z = TL_VIEW(m->z, B, T, D),
				zpre = TL_VIEW(m->zpre, B, T, D),
				zmean = TL_VIEW(m->z_mean, N),
				zrstd = TL_VIEW(m->z_rstd, N),
				u = TL_VIEW(m->u, B, T, D),
				hs = TL_VIEW(m->hs, B, T, D),
				hmean = TL_VIEW(m->hs_mean, N),
				hrstd = TL_VIEW(m->hs_rstd, N),
				q = TL_VIEW(m->dq, B, T, D),
				k = TL_VIEW(m->dk, B, T, D),
				v = TL_VIEW(m->dv, B, T, D),
				probs = TL_VIEW(m->dprobs, B, H, T, T),
				attn = TL_VIEW(m->dattn, B, T, D),
				last = TL_VIEW(m->enc + m->cfg.layers * N * D, B, T, D);
	tl_tensor	w1 = kt_value(m, TL_KT_HEAD_W1),
				w2 = kt_value(m, TL_KT_HEAD_W2),
				wq = kt_value(m, TL_KT_DEC_WQ),
				wk = kt_value(m, TL_KT_DEC_WK),
				wv = kt_value(m, TL_KT_DEC_WV),
				wo = kt_value(m, TL_KT_DEC_WO),
				lg = kt_value(m, TL_KT_DEC_LN_G),
				eg = kt_value(m, TL_KT_ENC_LN_G);
	tl_tensor	gw1 = kt_grad(m, TL_KT_HEAD_W1),
				gb1 = kt_grad(m, TL_KT_HEAD_B1),
				gw2 = kt_grad(m, TL_KT_HEAD_W2),
				gb2 = kt_grad(m, TL_KT_HEAD_B2),
				gwq = kt_grad(m, TL_KT_DEC_WQ),
				gbq = kt_grad(m, TL_KT_DEC_BQ),
				gwk = kt_grad(m, TL_KT_DEC_WK),
				gbk = kt_grad(m, TL_KT_DEC_BK),
				gwv = kt_grad(m, TL_KT_DEC_WV),
				gbv = kt_grad(m, TL_KT_DEC_BV),
				gwo = kt_grad(m, TL_KT_DEC_WO),
				gbo = kt_grad(m, TL_KT_DEC_BO),
				glg = kt_grad(m, TL_KT_DEC_LN_G),
				glb = kt_grad(m, TL_KT_DEC_LN_B),
				geg = kt_grad(m, TL_KT_ENC_LN_G),
				geb = kt_grad(m, TL_KT_ENC_LN_B);
	float	   *gitem = kt_grad(m, TL_KT_ITEM_BIAS).data,
			   *gskill = kt_grad(m, TL_KT_SKILL_BIAS).data;

	if (B <= 0)
		return tl_fail(TL_ERR_ARG, "knowledge-tracing backward called before a forward pass");

	/* head */
	TL_TRY(tl_bce_logits_bwd(&dlogits, &logits, &targets, &weights, 1.0f));
	for (int64_t idx = 0; idx < N; idx++)
	{
		gitem[m->items[idx]] += m->dlogits[idx];
		gskill[m->skills[idx]] += m->dlogits[idx];
	}
	TL_TRY(tl_linear_bwd(&g1, &gw2, &gb2, &dlog2, &hid, &w2));
	TL_TRY(tl_gelu_bwd(&g1, &g1, &h1));
	TL_TRY(tl_linear_bwd(&g2, &gw1, &gb1, &g1, &z, &w1));
	/* decoder: z = LN(u + drop(Wo attn(Wq u, Wk hs, Wv hs))) */
	TL_TRY(tl_layernorm_bwd(&g3, &glg, &glb, &g2, &zpre, &zmean, &zrstd, &lg));
	memcpy(m->g4, m->g3, sizeof(float) * N * D);	/* du, residual part */
	TL_TRY(tl_dropout_bwd(&g1, &g3, p, tl_mix64(m->seed ^ TL_KT_SITE_DEC), 0));
	TL_TRY(tl_linear_bwd(&g2, &gwo, &gbo, &g1, &attn, &wo));
	TL_TRY(tl_attention_bwd(&gq, &gk, &gv, &g2, &probs, &q, &k, &v, (tl_attn_dims) {B, T, H, D / H, true}));
	TL_TRY(tl_linear_bwd(&g1, &gwq, &gbq, &gq, &u, &wq));
	TL_TRY(tl_add(&g4, &g4, &g1));
	TL_TRY(tl_linear_bwd(&g2, &gwk, &gbk, &gk, &hs, &wk));
	TL_TRY(tl_linear_bwd(&g1, &gwv, &gbv, &gv, &hs, &wv));
	TL_TRY(tl_add(&g2, &g2, &g1));
	/* encoder */
	TL_TRY(tl_layernorm_bwd(&g5, &geg, &geb, &g2, &last, &hmean, &hrstd, &eg));
	TL_TRY(tl_stack_backward(&m->encoder, &m->params, m->g5, m->g1, B, T));
	kt_embed_inputs_bwd(m, m->g5);
	kt_embed_questions_bwd(m, m->g4);
	/* the unknown item keeps no offset and no bias */
	kt_grad(m, TL_KT_ITEM_MU_A).data[0] = 0.0f;
	kt_grad(m, TL_KT_ITEM_MU_Q).data[0] = 0.0f;
	gitem[0] = 0.0f;
	return TL_OK;
}

tl_status
tl_kt_train_step(tl_kt *m, const tl_kt_batch *batch, uint64_t seed, float *loss)
{
	tl_params_zero_grad(&m->params);
	TL_TRY(tl_kt_forward(m, batch, true, seed, loss));
	if (!isfinite(*loss))
		return tl_fail(TL_ERR_NUMERIC, "training loss became %g", (double) *loss);
	TL_TRY(tl_kt_backward(m));
	tl_clip_grad_norm(m->params.grad, m->params.total, m->cfg.clip_norm);
	return tl_adamw_step(&m->opt, &m->params);
}

void
tl_kt_probabilities(const tl_kt *m, float *out)
{
	for (int64_t idx = 0; idx < m->batch * m->seq; idx++)
		out[idx] = tl_sigmoidf(m->logits[idx]);
}

/* ---- inference ---------------------------------------------------------- */

void
tl_kt_skill_averages(const tl_kt *m, const int32_t *item_skill,
					 float *skill_mu_avg, float *skill_bias_avg)
{
	const float *mu = kt_value(m, TL_KT_ITEM_MU_Q).data,
			   *bias = kt_value(m, TL_KT_ITEM_BIAS).data;
	int32_t		S = m->cfg.n_skills;
	int64_t    *counts = tl_alloc((size_t) S, sizeof(int64_t));

	memset(skill_mu_avg, 0, sizeof(float) * S);
	memset(skill_bias_avg, 0, sizeof(float) * S);
	if (!counts)
		return;					/* zeros: the skill's own terms only */
	for (int32_t i = 1; i < m->cfg.n_items; i++)
	{
		int32_t		s = item_skill ? item_skill[i] : 0;

		if (s < 1 || s >= S)
			continue;
		skill_mu_avg[s] += mu[i];
		skill_bias_avg[s] += bias[i];
		counts[s]++;
	}
	for (int32_t s = 0; s < S; s++)
		if (counts[s] > 0)
		{
			skill_mu_avg[s] /= (float) counts[s];
			skill_bias_avg[s] /= (float) counts[s];
		}
	tl_free(counts);
}

tl_status
tl_kt_predict_next(tl_kt *m, const int32_t *items, const int32_t *skills,
				   const float *correct, int64_t n,
				   const tl_kt_query *queries, int64_t n_queries,
				   const float *skill_mu_avg, const float *skill_bias_avg,
				   float *probs)
{
	int64_t		offsets[2] = {0, n};

	if (n < 0 || (n > 0 && (!items || !skills || !correct)))
		return tl_fail(TL_ERR_ARG, "next-answer prediction needs a history and at least one question");
	return tl_kt_predict_batch(m, 1, offsets, items, skills, correct, queries, n_queries,
							   skill_mu_avg, skill_bias_avg, probs);
}

/* Questions per group of students: bounds the decoder's scratch. */
#define KT_GROUP_QUESTIONS 8192

/* The inputs every group shares. */
typedef struct kt_predict_input
{
	const int64_t *offsets;
	const int32_t *items;
	const int32_t *skills;
	const float *correct;
	const tl_kt_query *queries;
	int64_t		n_queries;
	const float *skill_mu_avg;
	const float *skill_bias_avg;
	float	   *probs;
} kt_predict_input;

/* One model instance's scratch for a group: no allocation while predicting. */
typedef struct kt_predict_scratch
{
	float	   *buf;			/* rows * (6D + 4) floats, then used[] and qskills[] */
	float	   *scores;			/* M * window floats: the decoder's attention scores */
} kt_predict_scratch;

/* A group: students [first, first + count), padded to T positions. */
typedef struct kt_group
{
	int64_t		first;
	int64_t		count;
	int64_t		seq;
} kt_group;

static int64_t
kt_history_len(const tl_kt *m, const int64_t *offsets, int64_t b)
{
	int64_t		n = offsets[b + 1] - offsets[b];

	return n < m->cfg.window - 1 ? n : m->cfg.window - 1;
}

/*
 * Predict one group on model instance m with its scratch.  Histories and
 * questions are checked by the caller, so nothing here allocates or can
 * fail on data: it may run on a pool worker.
 */
static tl_status
kt_predict_group(tl_kt *m, const kt_predict_scratch *sc, const kt_predict_input *in, const kt_group *g)
{
	const int64_t D = m->cfg.d_model,
				H = m->cfg.heads,
				M = in->n_queries,
				G = g->count,
				T = g->seq,
				R = G * M;
	float	   *u = sc->buf,
			   *qd = u + R * D,
			   *att = qd + R * D,
			   *zbuf = att + R * D,
			   *h1 = zbuf + R * D,
			   *hid = h1 + R * D,
			   *mean = hid + R * D,
			   *rstd = mean + R,
			   *item_term = rstd + R,
			   *logits = item_term + R;
	int64_t    *used = (int64_t *) (logits + R);	/* 6D + 4 is even: 8-byte aligned */
	int32_t    *qskills = (int32_t *) (used + G);
	const float *mu = kt_value(m, TL_KT_ITEM_MU_Q).data,
			   *ibias = kt_value(m, TL_KT_ITEM_BIAS).data;
	tl_tensor	tu = TL_VIEW(u, R, D),
				tq = TL_VIEW(qd, R, D),
				tatt = TL_VIEW(att, R, D),
				tz = TL_VIEW(zbuf, R, D),
				tmean = TL_VIEW(mean, R),
				trstd = TL_VIEW(rstd, R),
				ths = TL_VIEW(m->hs, G * T, D),
				tk = TL_VIEW(m->dk, G * T, D),
				tv = TL_VIEW(m->dv, G * T, D);
	kt_decoder	dec = kt_decoder_params(m);

	/* each history as a valid prefix: answer p at position p, then the query slot */
	for (int64_t b = 0; b < G; b++)
	{
		int64_t		s = g->first + b,
					nb = kt_history_len(m, in->offsets, s),
					start = in->offsets[s + 1] - nb;

		used[b] = nb;
		for (int64_t p = 0; p < T; p++)
		{
			int64_t		idx = b * T + p;
			bool		real = p < nb;

			m->items[idx] = real ? in->items[start + p] : 0;
			m->skills[idx] = real ? in->skills[start + p] : 0;
			m->answers[idx] = real ? in->correct[start + p] : 0.0f;
			m->valid[idx] = p <= nb;
		}
	}
	m->batch = G;
	m->seq = T;
	kt_embed_inputs(m, m->enc);
	TL_TRY(kt_encode(m, false, 0));

	for (int64_t b = 0; b < G; b++)
		for (int64_t q = 0; q < M; q++)
		{
			int64_t		r = b * M + q;
			int32_t		s = in->queries[q].skill,
						i = in->queries[q].item;

			kt_question(m, u + r * D, s, i >= 0 ? mu[i] : in->skill_mu_avg[s]);
			if (used[b] > 0 && i > 0 && i == m->items[b * T + used[b] - 1])
				kt_repeat(m, u + r * D, m->answers[b * T + used[b] - 1]);
			item_term[r] = i >= 0 ? ibias[i] : in->skill_bias_avg[s];
			qskills[r] = s;
		}
	TL_TRY(tl_linear_fwd(&tq, &tu, &dec.wq, &dec.bq));
	TL_TRY(tl_linear_fwd(&tk, &ths, &dec.wk, &dec.bk));
	TL_TRY(tl_linear_fwd(&tv, &ths, &dec.wv, &dec.bv));
	for (int64_t b = 0; b < G; b++)
	{
		/* student b's questions, at its query slot, over its own states */
		tl_tensor	ob = TL_VIEW(att + b * M * D, M, D),
					qb = TL_VIEW(qd + b * M * D, M, D),
					kb = TL_VIEW(m->dk + b * T * D, T, D),
					vb = TL_VIEW(m->dv + b * T * D, T, D);

		TL_TRY(tl_attention_query_fwd_scratch(&ob, &qb, &kb, &vb, NULL, used[b], H, true, sc->scores));
	}
	/* zpre = u + Wo att, reusing the query buffer */
	TL_TRY(tl_linear_fwd(&tq, &tatt, &dec.wo, &dec.bo));
	TL_TRY(tl_add(&tq, &tq, &tu));
	TL_TRY(tl_layernorm_fwd(&tz, &tmean, &trstd, &tq, &dec.ln_g, &dec.ln_b, TL_KT_LN_EPS));
	TL_TRY(kt_head(m, R, zbuf, h1, hid, logits, item_term, qskills));
	for (int64_t r = 0; r < R; r++)
		in->probs[g->first * M + r] = tl_sigmoidf(logits[r]);
	m->batch = 0;				/* no backward pass of this */
	return TL_OK;
}

/* Groups of students on the pool, one model instance per worker. */
typedef struct kt_predict_job
{
	tl_kt	   *const *models;
	const kt_predict_scratch *scratch;
	const kt_predict_input *in;
	const kt_group *groups;
	tl_status  *status;			/* per group */
} kt_predict_job;

static void
kt_predict_groups_task(void *arg, int64_t begin, int64_t end, int worker)
{
	const kt_predict_job *job = arg;

	for (int64_t g = begin; g < end; g++)
		job->status[g] = kt_predict_group(job->models[worker], &job->scratch[worker], job->in, &job->groups[g]);
}

tl_status
tl_kt_predict_batch(tl_kt *m, int64_t n_students, const int64_t *offsets,
					const int32_t *items, const int32_t *skills, const float *correct,
					const tl_kt_query *queries, int64_t n_queries,
					const float *skill_mu_avg, const float *skill_bias_avg,
					float *probs)
{
	return tl_kt_predict_many(&m, 1, n_students, offsets, items, skills, correct, queries, n_queries,
							  skill_mu_avg, skill_bias_avg, probs);
}

tl_status
tl_kt_predict_many(tl_kt *const *models, int n_models, int64_t n_students, const int64_t *offsets,
				   const int32_t *items, const int32_t *skills, const float *correct,
				   const tl_kt_query *queries, int64_t n_queries,
				   const float *skill_mu_avg, const float *skill_bias_avg,
				   float *probs)
{
	const tl_kt *m0;
	int64_t		D,
				M = n_queries,
				N,
				max_group,
				rows,
				n_groups = 0;
	size_t		per_row;
	kt_group   *groups = NULL;
	kt_predict_scratch *scratch = NULL;
	tl_status  *status = NULL;
	kt_predict_input in = {offsets, items, skills, correct, queries, n_queries,
	skill_mu_avg, skill_bias_avg, probs};
	tl_status	rc = TL_OK;
	bool		parallel;

	if (!models || n_models < 1 || !models[0])
		return tl_fail(TL_ERR_ARG, "prediction needs at least one model instance");
	m0 = models[0];
	for (int i = 1; i < n_models; i++)
		if (!models[i] || memcmp(&models[i]->cfg, &m0->cfg, sizeof(m0->cfg)) != 0)
			return tl_fail(TL_ERR_ARG, "model instance %d differs from the first", i);
	if (n_students < 0 || M <= 0 || !queries || !probs || (n_students > 0 && !offsets))
		return tl_fail(TL_ERR_ARG, "next-answer prediction needs histories and at least one question");
	for (int64_t q = 0; q < M; q++)
		if (queries[q].skill < 0 || queries[q].skill >= m0->cfg.n_skills ||
			queries[q].item < -1 || queries[q].item >= m0->cfg.n_items ||
			(queries[q].item == -1 && (!skill_mu_avg || !skill_bias_avg)))
			return tl_fail(TL_ERR_ARG, "question %lld (item %d, skill %d) is outside the vocabulary",
						   (long long) q, queries[q].item, queries[q].skill);
	/* every answer is checked here, so the groups cannot fail on data */
	for (int64_t b = 0; b < n_students; b++)
	{
		if (offsets[b] < 0 || offsets[b + 1] < offsets[b] ||
			(offsets[b + 1] > offsets[b] && (!items || !skills || !correct)))
			return tl_fail(TL_ERR_ARG, "history offsets of student %lld are not increasing", (long long) b);
		for (int64_t a = offsets[b + 1] - kt_history_len(m0, offsets, b); a < offsets[b + 1]; a++)
			if (items[a] < 0 || items[a] >= m0->cfg.n_items || skills[a] < 0 || skills[a] >= m0->cfg.n_skills ||
				!(correct[a] >= 0.0f && correct[a] <= 1.0f))
				return tl_fail(TL_ERR_ARG, "answer %lld of student %lld is outside the model's vocabulary or [0, 1]",
							   (long long) (a - offsets[b]), (long long) b);
	}
	if (n_students == 0)
		return TL_OK;

	D = m0->cfg.d_model;
	N = m0->cfg.max_tokens;
	max_group = KT_GROUP_QUESTIONS / M > 1 ? KT_GROUP_QUESTIONS / M : 1;
	if (max_group > n_students)
		max_group = n_students;
	rows = max_group * M;
	per_row = sizeof(float) * (6 * D + 4) + sizeof(int32_t) + sizeof(int64_t);

	/*
	 * Groups: as many students as fit max_tokens at the group's longest
	 * history (each history keeps its last window-1 answers plus the
	 * query slot).
	 */
	groups = tl_alloc((size_t) n_students, sizeof(kt_group));
	scratch = tl_alloc((size_t) n_models, sizeof(kt_predict_scratch));
	status = tl_alloc((size_t) n_students, sizeof(tl_status));
	if (!groups || !scratch || !status)
	{
		rc = tl_fail(TL_ERR_NOMEM, "cannot allocate the prediction groups");
		goto done;
	}
	for (int64_t g0 = 0; g0 < n_students;)
	{
		kt_group   *g = &groups[n_groups++];

		g->first = g0;
		g->count = 0;
		g->seq = 0;
		while (g0 + g->count < n_students && g->count < max_group)
		{
			int64_t		len = kt_history_len(m0, offsets, g0 + g->count) + 1,
						Tn = len > g->seq ? len : g->seq;

			if (g->count > 0 && (g->count + 1) * Tn > N)
				break;
			g->seq = Tn;
			g->count++;
		}
		g0 += g->count;
	}

	/* one instance per pool thread runs groups side by side, every op in them single-threaded */
	parallel = n_models >= tl_pool_threads() && tl_pool_threads() > 1 && n_groups > 1;
	for (int i = 0; i < (parallel ? n_models : 1); i++)
	{
		scratch[i].buf = tl_alloc((size_t) rows, per_row);
		scratch[i].scores = tl_alloc((size_t) (M * m0->cfg.window), sizeof(float));
		if (!scratch[i].buf || !scratch[i].scores)
		{
			rc = tl_fail(TL_ERR_NOMEM, "cannot allocate %lld questions", (long long) rows);
			goto done;
		}
	}
	if (parallel)
	{
		kt_predict_job job = {models, scratch, &in, groups, status};

		tl_pool_run(n_groups, 1, kt_predict_groups_task, &job);
		for (int64_t g = 0; g < n_groups && rc == TL_OK; g++)
			if (status[g] != TL_OK)
				rc = tl_fail(status[g], "prediction of students %lld.. failed on a worker thread",
							 (long long) groups[g].first);
	}
	else
		for (int64_t g = 0; g < n_groups && rc == TL_OK; g++)
			rc = kt_predict_group(models[0], &scratch[0], &in, &groups[g]);

done:
	if (scratch)
		for (int i = 0; i < n_models; i++)
		{
			tl_free(scratch[i].buf);
			tl_free(scratch[i].scores);
		}
	tl_free(scratch);
	tl_free(groups);
	tl_free(status);
	return rc;
}
