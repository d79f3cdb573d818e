/*
 * tl_tensor.h -- float32, contiguous, row-major tensors of up to 4 dims.
 *
 * A tensor either owns its data (tl_tensor_alloc) or is a view of memory
 * that someone else owns (tl_tensor_view).  Ops check shapes with
 * tl_expect_shape and report TL_ERR_SHAPE with both shapes in the message.
 */
#ifndef TL_TENSOR_H
#define TL_TENSOR_H

#include <stdbool.h>
#include <stdint.h>

#include "tl_status.h"

#define TL_MAX_DIMS 4

typedef struct tl_tensor
{
	float	   *data;			/* numel floats, row-major */
	int			ndim;
	int64_t		shape[TL_MAX_DIMS];
	int64_t		numel;
	bool		owns_data;
} tl_tensor;

/* Allocate a zeroed tensor; shape has ndim entries, each > 0. */
tl_status	tl_tensor_alloc(tl_tensor *t, int ndim, const int64_t *shape);

/* Wrap existing memory; never frees it. */
tl_status	tl_tensor_view(tl_tensor *t, float *data, int ndim, const int64_t *shape);

/* Free owned data and reset the struct. Safe on a zeroed struct. */
void		tl_tensor_free(tl_tensor *t);

/* Fill with a value. */
void		tl_tensor_fill(tl_tensor *t, float value);

/*
 * Check that t has exactly the given shape.  A shape entry of -1 matches
 * any extent.  `what` names the tensor in the error message.
 */
tl_status	tl_expect_shape(const tl_tensor *t, const char *what, int ndim, const int64_t *shape);

/* Check that two tensors have identical shapes. */
tl_status	tl_expect_same_shape(const tl_tensor *a, const char *what_a,
								 const tl_tensor *b, const char *what_b);

/* Product of all but the last dim ("rows") and the last dim ("cols"). */
int64_t		tl_rows(const tl_tensor *t);
int64_t		tl_cols(const tl_tensor *t);

/*
 * An unchecked view for code that sized the buffer itself (model
 * internals).  Extents must be positive and data non-NULL.
 */
static inline tl_tensor
tl_view(float *data, int ndim, const int64_t *shape)
{
	tl_tensor	t = {.data = data, .ndim = ndim, .numel = 1, .owns_data = false};

	for (int i = 0; i < ndim; i++)
	{
		t.shape[i] = shape[i];
		t.numel *= shape[i];
	}
	return t;
}

#define TL_VIEW(data, ...) tl_view((data), TL_NDIM(__VA_ARGS__), TL_SHAPE(__VA_ARGS__))

/* Convenience shape builders for call sites: TL_SHAPE(2, 3) etc. */
#define TL_SHAPE(...) ((const int64_t[]){__VA_ARGS__})
#define TL_NDIM(...) ((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))

#endif							/* TL_TENSOR_H */
