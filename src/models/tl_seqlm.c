/*
 * tl_seqlm.c -- the small causal language model and its toy task.
 */
#include <stdio.h>
#include <string.h>

#include "tl_alloc.h"
#include "tl_seqlm.h"

/* The activation buffers, listed once for allocation and release. */
#define TL_SEQLM_BUFFERS 13

static void
seqlm_buffers(tl_seqlm *m, tl_buffer *b)
{
	int64_t		N = m->cfg.max_batch * m->cfg.max_seq,
				D = m->cfg.d_model,
				V = m->cfg.vocab;
	int			n = 0;

	b[n++] = TL_BUFFER(m->acts, (m->cfg.layers + 1) * N * D);
	b[n++] = TL_BUFFER(m->pos_tmp, N * D);
	b[n++] = TL_BUFFER(m->lnf, N * D);
	b[n++] = TL_BUFFER(m->lnf_mean, N);
	b[n++] = TL_BUFFER(m->lnf_rstd, N);
	b[n++] = TL_BUFFER(m->logits, N * V);
	b[n++] = TL_BUFFER(m->dlogits, N * V);
	b[n++] = TL_BUFFER(m->grad_a, N * D);
	b[n++] = TL_BUFFER(m->grad_b, N * D);
	b[n++] = TL_BUFFER(m->tokens, N);
	b[n++] = TL_BUFFER(m->targets, N);
	b[n++] = TL_BUFFER(m->positions, N);
	b[n++] = TL_BUFFER(m->key_valid, N);
}

tl_status
tl_seqlm_create(tl_seqlm *m, const tl_seqlm_config *cfg, uint64_t seed)
{
	tl_buffer	bufs[TL_SEQLM_BUFFERS];
	int64_t		N,
				D = cfg->d_model,
				V = cfg->vocab;
	tl_block_config bcfg;
	tl_rng		rng;
	tl_status	rc;

	memset(m, 0, sizeof(*m));
	if (V <= 1 || cfg->max_seq <= 0 || cfg->layers <= 0 || cfg->layers > 64 || cfg->max_batch <= 0)
		return tl_fail(TL_ERR_ARG, "seqlm needs vocab > 1, 1..64 layers, positive max_seq and max_batch");
	if (cfg->max_batch > INT64_MAX / cfg->max_seq / (D > V ? D : V) / (cfg->layers + 1))
		return tl_fail(TL_ERR_ARG, "seqlm activations would overflow");
	m->cfg = *cfg;
	N = cfg->max_batch * cfg->max_seq;
	bcfg = (tl_block_config) {D, cfg->heads, cfg->d_ff, cfg->dropout, 1e-5f, false};

#define TRY(expr) do { if ((rc = (expr)) != TL_OK) goto fail; } while (0)
	TRY(tl_params_declare(&m->params, "tok_emb", 2, TL_SHAPE(V, D), TL_INIT_NORMAL, 0.02f, true, &m->tok_emb));
	TRY(tl_params_declare(&m->params, "pos_emb", 2, TL_SHAPE(cfg->max_seq, D), TL_INIT_NORMAL, 0.02f, true, &m->pos_emb));
	TRY(tl_stack_declare(&m->blocks, &bcfg, cfg->layers, &m->params, "block"));
	TRY(tl_params_declare(&m->params, "lnf.g", 1, TL_SHAPE(D), TL_INIT_ONES, 0, false, &m->lnf_g));
	TRY(tl_params_declare(&m->params, "lnf.b", 1, TL_SHAPE(D), TL_INIT_ZEROS, 0, false, &m->lnf_b));
	TRY(tl_params_declare(&m->params, "head.w", 2, TL_SHAPE(V, D), TL_INIT_NORMAL, 0.02f, true, &m->head_w));
	TRY(tl_params_declare(&m->params, "head.b", 1, TL_SHAPE(V), TL_INIT_ZEROS, 0, false, &m->head_b));
	tl_rng_seed(&rng, seed);
	TRY(tl_params_alloc(&m->params, &rng));
	TRY(tl_adamw_init(&m->opt, &m->params, cfg->lr, cfg->weight_decay));
	TRY(tl_stack_cache_alloc(&m->blocks, N, cfg->max_seq));

	seqlm_buffers(m, bufs);
	TRY(tl_alloc_buffers(bufs, TL_SEQLM_BUFFERS, "seqlm activations"));
#undef TRY
	return TL_OK;

fail:
	tl_seqlm_free(m);
	return rc;
}

void
tl_seqlm_free(tl_seqlm *m)
{
	tl_buffer	bufs[TL_SEQLM_BUFFERS];

	tl_stack_free(&m->blocks);
	tl_params_free(&m->params);
	tl_adamw_free(&m->opt);
	seqlm_buffers(m, bufs);
	tl_free_buffers(bufs, TL_SEQLM_BUFFERS);
	memset(m, 0, sizeof(*m));
}

tl_status
tl_seqlm_forward(tl_seqlm *m, const int32_t *tokens, const int32_t *targets,
				 int64_t B, int64_t T, bool training, uint64_t seed, float *loss)
{
	int64_t		D = m->cfg.d_model,
				V = m->cfg.vocab,
				N = B * T;
	tl_tensor	tok_emb = tl_params_value(&m->params, m->tok_emb),
				pos_emb = tl_params_value(&m->params, m->pos_emb),
				x0,
				pos,
				lnf,
				mean,
				rstd,
				logits;

	if (B <= 0 || T <= 0 || B > m->cfg.max_batch || T > m->cfg.max_seq)
		return tl_fail(TL_ERR_ARG, "batch %lld x %lld is outside the model's 1..%lld x 1..%lld",
					   (long long) B, (long long) T, (long long) m->cfg.max_batch, (long long) m->cfg.max_seq);
	if (!tokens || !targets || !loss)
		return tl_fail(TL_ERR_ARG, "seqlm forward needs tokens, targets and a loss");
	m->batch = B;
	m->seq = T;
	memcpy(m->tokens, tokens, sizeof(int32_t) * N);
	memcpy(m->targets, targets, sizeof(int32_t) * N);
	for (int64_t i = 0; i < N; i++)
	{
		m->key_valid[i] = tokens[i] != TL_PAD_INDEX;
		m->positions[i] = m->key_valid[i] ? (int32_t) (i % T) : TL_PAD_INDEX;
	}

	x0 = TL_VIEW(m->acts, B, T, D);
	pos = TL_VIEW(m->pos_tmp, B, T, D);
	TL_TRY(tl_embedding_fwd(&x0, &tok_emb, tokens));
	TL_TRY(tl_embedding_fwd(&pos, &pos_emb, m->positions));
	TL_TRY(tl_add(&x0, &x0, &pos));
	TL_TRY(tl_stack_forward(&m->blocks, &m->params, m->acts, B, T, m->key_valid, training, seed));
	lnf = TL_VIEW(m->lnf, B, T, D);
	mean = TL_VIEW(m->lnf_mean, N);
	rstd = TL_VIEW(m->lnf_rstd, N);
	logits = TL_VIEW(m->logits, N, V);
	{
		tl_tensor	last = TL_VIEW(m->acts + m->cfg.layers * N * D, B, T, D);
		tl_tensor	g = tl_params_value(&m->params, m->lnf_g),
					b = tl_params_value(&m->params, m->lnf_b),
					w = tl_params_value(&m->params, m->head_w),
					hb = tl_params_value(&m->params, m->head_b);

		TL_TRY(tl_layernorm_fwd(&lnf, &mean, &rstd, &last, &g, &b, 1e-5f));
		TL_TRY(tl_linear_fwd(&logits, &lnf, &w, &hb));
	}
	return tl_cross_entropy_fwd(loss, &logits, targets);
}

tl_status
tl_seqlm_backward(tl_seqlm *m)
{
	int64_t		B = m->batch,
				T = m->seq,
				N = B * T,
				D = m->cfg.d_model,
				V = m->cfg.vocab;
	tl_params  *ps = &m->params;
	tl_tensor	logits = TL_VIEW(m->logits, N, V),
				dlogits = TL_VIEW(m->dlogits, N, V),
				lnf = TL_VIEW(m->lnf, B, T, D),
				mean = TL_VIEW(m->lnf_mean, N),
				rstd = TL_VIEW(m->lnf_rstd, N),
				last = TL_VIEW(m->acts + m->cfg.layers * N * D, B, T, D),
				ga = TL_VIEW(m->grad_a, B, T, D),
				gb = TL_VIEW(m->grad_b, B, T, D),
				w = tl_params_value(ps, m->head_w),
				dw = tl_params_grad(ps, m->head_w),
				db = tl_params_grad(ps, m->head_b),
				g = tl_params_value(ps, m->lnf_g),
				dg = tl_params_grad(ps, m->lnf_g),
				dbeta = tl_params_grad(ps, m->lnf_b),
				dtok = tl_params_grad(ps, m->tok_emb),
				dpos = tl_params_grad(ps, m->pos_emb);

	if (B <= 0)
		return tl_fail(TL_ERR_ARG, "seqlm backward called before a forward pass");
	TL_TRY(tl_cross_entropy_bwd(&dlogits, &logits, m->targets, 1.0f));
	TL_TRY(tl_linear_bwd(&gb, &dw, &db, &dlogits, &lnf, &w));
	TL_TRY(tl_layernorm_bwd(&ga, &dg, &dbeta, &gb, &last, &mean, &rstd, &g));
	/* ga holds d/d(output of the last block); walk the blocks back */
	TL_TRY(tl_stack_backward(&m->blocks, ps, ga.data, gb.data, B, T));
	TL_TRY(tl_embedding_bwd(&dtok, &ga, m->tokens));
	TL_TRY(tl_embedding_bwd(&dpos, &ga, m->positions));
	return TL_OK;
}

tl_status
tl_seqlm_train_step(tl_seqlm *m, const int32_t *tokens, const int32_t *targets,
					int64_t batch, int64_t seq, uint64_t seed, float *loss)
{
	tl_params_zero_grad(&m->params);
	TL_TRY(tl_seqlm_forward(m, tokens, targets, batch, seq, true, seed, loss));
	TL_TRY(tl_seqlm_backward(m));
	tl_clip_grad_norm(m->params.grad, m->params.total, m->cfg.clip_norm);
	return tl_adamw_step(&m->opt, &m->params);
}

void
tl_reverse_task_batch(tl_rng *rng, int64_t batch, int64_t k, int32_t *tokens, int32_t *targets)
{
	int64_t		T = 2 * k + 1;

	for (int64_t b = 0; b < batch; b++)
	{
		int32_t    *tok = tokens + b * T;
		int32_t    *tgt = targets + b * T;

		for (int64_t i = 0; i < k; i++)
			tok[i] = (int32_t) tl_rng_below(rng, 10);
		tok[k] = 10;			/* SEP */
		for (int64_t i = 0; i < k; i++)
			tok[k + 1 + i] = tok[k - 1 - i];
		/* next-token targets: position t predicts token t+1, scored from SEP on */
		for (int64_t t = 0; t < T; t++)
			tgt[t] = (t >= k && t + 1 < T) ? tok[t + 1] : TL_PAD_INDEX;
	}
}
