/*
 * tl_tensor.c -- tensor construction and shape checks.
 */
#include <stdio.h>
#include <string.h>

#include "tl_alloc.h"
#include "tl_tensor.h"

/* Validate ndim and extents and compute the element count. */
static tl_status
tl_shape_numel(int ndim, const int64_t *shape, int64_t *numel)
{
	int64_t		n = 1;

	if (ndim < 1 || ndim > TL_MAX_DIMS)
		return tl_fail(TL_ERR_SHAPE, "tensor rank %d is outside 1..%d", ndim, TL_MAX_DIMS);
	for (int i = 0; i < ndim; i++)
	{
		if (shape[i] <= 0)
			return tl_fail(TL_ERR_SHAPE, "tensor dimension %d has extent %lld", i, (long long) shape[i]);
		if (n > INT64_MAX / shape[i])
			return tl_fail(TL_ERR_SHAPE, "tensor element count overflows");
		n *= shape[i];
	}
	*numel = n;
	return TL_OK;
}

static void
tl_tensor_set_shape(tl_tensor *t, int ndim, const int64_t *shape, int64_t numel)
{
	memset(t->shape, 0, sizeof(t->shape));
	memcpy(t->shape, shape, sizeof(int64_t) * ndim);
	t->ndim = ndim;
	t->numel = numel;
}

tl_status
tl_tensor_alloc(tl_tensor *t, int ndim, const int64_t *shape)
{
	int64_t		numel = 0;

	memset(t, 0, sizeof(*t));
	TL_TRY(tl_shape_numel(ndim, shape, &numel));
	t->data = tl_alloc((size_t) numel, sizeof(float));
	if (!t->data)
		return tl_fail(TL_ERR_NOMEM, "cannot allocate a tensor of %lld floats", (long long) numel);
	t->owns_data = true;
	tl_tensor_set_shape(t, ndim, shape, numel);
	return TL_OK;
}

tl_status
tl_tensor_view(tl_tensor *t, float *data, int ndim, const int64_t *shape)
{
	int64_t		numel = 0;

	memset(t, 0, sizeof(*t));
	if (!data)
		return tl_fail(TL_ERR_ARG, "tensor view of a NULL pointer");
	TL_TRY(tl_shape_numel(ndim, shape, &numel));
	t->data = data;
	tl_tensor_set_shape(t, ndim, shape, numel);
	return TL_OK;
}

void
tl_tensor_free(tl_tensor *t)
{
	if (t->owns_data)
		tl_free(t->data);
	memset(t, 0, sizeof(*t));
}

void
tl_tensor_fill(tl_tensor *t, float value)
{
	for (int64_t i = 0; i < t->numel; i++)
		t->data[i] = value;
}

/* Render a shape as "(2, 3, 4)" for messages. */
static void
tl_shape_string(char *buf, size_t len, int ndim, const int64_t *shape)
{
	size_t		used = 0;

	used += snprintf(buf + used, len - used, "(");
	for (int i = 0; i < ndim && used < len; i++)
		used += snprintf(buf + used, len - used, "%s%lld", i ? ", " : "", (long long) shape[i]);
	if (used < len)
		snprintf(buf + used, len - used, ")");
}

tl_status
tl_expect_shape(const tl_tensor *t, const char *what, int ndim, const int64_t *shape)
{
	bool		ok;
	char		want[96],
				have[96];

	if (!t || !t->data)
		return tl_fail(TL_ERR_ARG, "%s is missing", what);
	ok = (t->ndim == ndim);
	for (int i = 0; ok && i < ndim; i++)
		ok = (shape[i] < 0 || shape[i] == t->shape[i]);
	if (ok)
		return TL_OK;
	tl_shape_string(want, sizeof(want), ndim, shape);
	tl_shape_string(have, sizeof(have), t->ndim, t->shape);
	return tl_fail(TL_ERR_SHAPE, "%s has shape %s, expected %s", what, have, want);
}

tl_status
tl_expect_same_shape(const tl_tensor *a, const char *what_a,
					 const tl_tensor *b, const char *what_b)
{
	char		sa[96],
				sb[96];

	if (!a || !a->data)
		return tl_fail(TL_ERR_ARG, "%s is missing", what_a);
	if (!b || !b->data)
		return tl_fail(TL_ERR_ARG, "%s is missing", what_b);
	if (a->ndim == b->ndim && memcmp(a->shape, b->shape, sizeof(int64_t) * a->ndim) == 0)
		return TL_OK;
	tl_shape_string(sa, sizeof(sa), a->ndim, a->shape);
	tl_shape_string(sb, sizeof(sb), b->ndim, b->shape);
	return tl_fail(TL_ERR_SHAPE, "%s has shape %s but %s has shape %s", what_a, sa, what_b, sb);
}

int64_t
tl_cols(const tl_tensor *t)
{
	return t->shape[t->ndim - 1];
}

int64_t
tl_rows(const tl_tensor *t)
{
	return t->numel / tl_cols(t);
}
