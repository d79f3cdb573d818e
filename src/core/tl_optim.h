/*
 * tl_optim.h -- parameter sets, AdamW and gradient clipping.
 *
 * A model declares its parameters by name and shape into a tl_params;
 * all values live in one flat buffer and all gradients in another, so
 * the optimiser, clipping and serialisation each see one array.
 */
#ifndef TL_OPTIM_H
#define TL_OPTIM_H

#include <stdbool.h>
#include <stdint.h>

#include "tl_rng.h"
#include "tl_tensor.h"

#define TL_PARAM_NAME_LEN 48

typedef enum tl_init
{
	TL_INIT_ZEROS,
	TL_INIT_ONES,
	TL_INIT_NORMAL				/* N(0, std) */
} tl_init;

typedef struct tl_param
{
	char		name[TL_PARAM_NAME_LEN];
	int			ndim;
	int64_t		shape[TL_MAX_DIMS];
	int64_t		offset;			/* into value/grad, in floats */
	int64_t		numel;
	bool		decay;			/* AdamW weight decay applies (matrices, not gains/biases) */
	tl_init		init;
	float		init_std;
	float		lr_scale;		/* this parameter's learning rate is lr * lr_scale (default 1) */
} tl_param;

typedef struct tl_params
{
	tl_param   *items;			/* count entries */
	int			count;
	int			capacity;
	int64_t		total;			/* floats over all params */
	float	   *value;			/* total, NULL until tl_params_alloc */
	float	   *grad;			/* total */
} tl_params;

/* Declare a parameter; returns its index through *index. */
tl_status	tl_params_declare(tl_params *ps, const char *name, int ndim, const int64_t *shape,
							  tl_init init, float init_std, bool decay, int *index);
/* Allocate value and grad buffers and initialise values with rng. */
tl_status	tl_params_alloc(tl_params *ps, tl_rng *rng);
/* Views of one parameter's value and gradient. */
tl_tensor	tl_params_value(const tl_params *ps, int index);
tl_tensor	tl_params_grad(const tl_params *ps, int index);
void		tl_params_zero_grad(tl_params *ps);
void		tl_params_free(tl_params *ps);

/* Scale grads so their global L2 norm is at most max_norm; returns the norm before. */
float		tl_clip_grad_norm(float *grad, int64_t n, float max_norm);

typedef struct tl_adamw
{
	float		lr;
	float		beta1;
	float		beta2;
	float		eps;
	float		weight_decay;	/* decoupled, applied only where tl_param.decay */
	int64_t		step;
	float	   *m;				/* first moments, total floats */
	float	   *v;				/* second moments */
	int64_t		n;
} tl_adamw;

/* PyTorch defaults: betas (0.9, 0.999), eps 1e-8. */
tl_status	tl_adamw_init(tl_adamw *opt, const tl_params *ps, float lr, float weight_decay);
/* One update of ps->value from ps->grad. */
tl_status	tl_adamw_step(tl_adamw *opt, tl_params *ps);
void		tl_adamw_free(tl_adamw *opt);

#endif							/* TL_OPTIM_H */
