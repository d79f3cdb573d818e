/*
 * tl_optim.c -- flat parameter sets, AdamW and global-norm clipping.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tl_alloc.h"
#include "tl_optim.h"

tl_status
tl_params_declare(tl_params *ps, const char *name, int ndim, const int64_t *shape,
				  tl_init init, float init_std, bool decay, int *index)
{
	tl_param   *p;
	int64_t		numel;

	if (ps->value)
		return tl_fail(TL_ERR_ARG, "parameter \"%s\" declared after allocation", name);
	/* same rules as tl_tensor_alloc, checked here because nothing is allocated yet */
	numel = 1;
	if (ndim < 1 || ndim > TL_MAX_DIMS)
		return tl_fail(TL_ERR_SHAPE, "parameter \"%s\" has rank %d", name, ndim);
	for (int i = 0; i < ndim; i++)
	{
		if (shape[i] <= 0 || numel > INT64_MAX / shape[i])
			return tl_fail(TL_ERR_SHAPE, "parameter \"%s\" has a bad extent", name);
		numel *= shape[i];
	}
	if (ps->count == ps->capacity)
	{
		int			cap = ps->capacity ? ps->capacity * 2 : 16;
		tl_param   *items = tl_alloc((size_t) cap, sizeof(tl_param));

		if (!items)
			return tl_fail(TL_ERR_NOMEM, "cannot grow the parameter list");
		if (ps->items)
			memcpy(items, ps->items, sizeof(tl_param) * ps->count);
		tl_free(ps->items);
		ps->items = items;
		ps->capacity = cap;
	}
	p = &ps->items[ps->count];
	memset(p, 0, sizeof(*p));
	snprintf(p->name, sizeof(p->name), "%s", name);
	p->ndim = ndim;
	memcpy(p->shape, shape, sizeof(int64_t) * ndim);
	p->offset = ps->total;
	p->numel = numel;
	p->decay = decay;
	p->init = init;
	p->init_std = init_std;
	p->lr_scale = 1.0f;
	ps->total += numel;
	if (index)
		*index = ps->count;
	ps->count++;
	return TL_OK;
}

tl_status
tl_params_alloc(tl_params *ps, tl_rng *rng)
{
	if (ps->total <= 0)
		return tl_fail(TL_ERR_ARG, "no parameters were declared");
	ps->value = tl_alloc((size_t) ps->total, sizeof(float));
	ps->grad = tl_alloc((size_t) ps->total, sizeof(float));
	if (!ps->value || !ps->grad)
	{
		tl_free(ps->value);
		tl_free(ps->grad);
		ps->value = ps->grad = NULL;
		return tl_fail(TL_ERR_NOMEM, "cannot allocate %lld parameters", (long long) ps->total);
	}
	for (int i = 0; i < ps->count; i++)
	{
		tl_param   *p = &ps->items[i];
		float	   *dst = ps->value + p->offset;

		for (int64_t j = 0; j < p->numel; j++)
			dst[j] = p->init == TL_INIT_ONES ? 1.0f :
				p->init == TL_INIT_NORMAL ? p->init_std * tl_rng_normal(rng) : 0.0f;
	}
	return TL_OK;
}

static tl_tensor
tl_param_view(const tl_params *ps, int index, float *base)
{
	tl_tensor	t;
	const tl_param *p = &ps->items[index];

	memset(&t, 0, sizeof(t));
	t.data = base + p->offset;
	t.ndim = p->ndim;
	memcpy(t.shape, p->shape, sizeof(p->shape));
	t.numel = p->numel;
	return t;
}

tl_tensor
tl_params_value(const tl_params *ps, int index)
{
	return tl_param_view(ps, index, ps->value);
}

tl_tensor
tl_params_grad(const tl_params *ps, int index)
{
	return tl_param_view(ps, index, ps->grad);
}

void
tl_params_zero_grad(tl_params *ps)
{
	if (ps->grad)
		memset(ps->grad, 0, sizeof(float) * ps->total);
}

void
tl_params_free(tl_params *ps)
{
	tl_free(ps->items);
	tl_free(ps->value);
	tl_free(ps->grad);
	memset(ps, 0, sizeof(*ps));
}

float
tl_clip_grad_norm(float *grad, int64_t n, float max_norm)
{
	double		sq = 0.0;
	float		norm;

	for (int64_t i = 0; i < n; i++)
		sq += (double) grad[i] * grad[i];
	norm = (float) sqrt(sq);
	if (max_norm > 0.0f && norm > max_norm)
	{
		float		scale = max_norm / (norm + 1e-6f);

		for (int64_t i = 0; i < n; i++)
			grad[i] *= scale;
	}
	return norm;
}

tl_status
tl_adamw_init(tl_adamw *opt, const tl_params *ps, float lr, float weight_decay)
{
	memset(opt, 0, sizeof(*opt));
	if (!(lr > 0.0f) || !isfinite(lr))
		return tl_fail(TL_ERR_ARG, "learning rate must be a positive number, got %g", (double) lr);
	if (!(weight_decay >= 0.0f) || !isfinite(weight_decay))
		return tl_fail(TL_ERR_ARG, "weight decay must be non-negative, got %g", (double) weight_decay);
	opt->lr = lr;
	opt->beta1 = 0.9f;
	opt->beta2 = 0.999f;
	opt->eps = 1e-8f;
	opt->weight_decay = weight_decay;
	opt->n = ps->total;
	opt->m = tl_alloc((size_t) ps->total, sizeof(float));
	opt->v = tl_alloc((size_t) ps->total, sizeof(float));
	if (!opt->m || !opt->v)
	{
		tl_adamw_free(opt);
		return tl_fail(TL_ERR_NOMEM, "cannot allocate optimiser state");
	}
	return TL_OK;
}

tl_status
tl_adamw_step(tl_adamw *opt, tl_params *ps)
{
	float		bias1,
				bias2;

	if (opt->n != ps->total || !opt->m)
		return tl_fail(TL_ERR_ARG, "optimiser state does not match the parameter set");
	opt->step++;
	bias1 = 1.0f - powf(opt->beta1, (float) opt->step);
	bias2 = 1.0f - powf(opt->beta2, (float) opt->step);
	for (int i = 0; i < ps->count; i++)
	{
		const tl_param *p = &ps->items[i];
		float	   *w = ps->value + p->offset;
		const float *g = ps->grad + p->offset;
		float	   *m = opt->m + p->offset;
		float	   *v = opt->v + p->offset;
		float		lr = opt->lr * p->lr_scale;
		float		decay = p->decay ? 1.0f - lr * opt->weight_decay : 1.0f;

		for (int64_t j = 0; j < p->numel; j++)
		{
			float		mhat,
						vhat;

			m[j] = opt->beta1 * m[j] + (1.0f - opt->beta1) * g[j];
			v[j] = opt->beta2 * v[j] + (1.0f - opt->beta2) * g[j] * g[j];
			mhat = m[j] / bias1;
			vhat = v[j] / bias2;
			/* decoupled decay (Loshchilov & Hutter), as torch.optim.AdamW */
			w[j] = w[j] * decay - lr * mhat / (sqrtf(vhat) + opt->eps);
		}
	}
	return TL_OK;
}

void
tl_adamw_free(tl_adamw *opt)
{
	tl_free(opt->m);
	tl_free(opt->v);
	opt->m = opt->v = NULL;
}
