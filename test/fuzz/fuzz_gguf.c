/*
 * fuzz_gguf.c -- libFuzzer target for the GGUF reader (make fuzz-gguf).
 *
 * Each input is parsed from an exact-size heap copy; an accepted file is
 * then walked the way a consumer would: every key through the lookup and
 * the typed getters, every array element, every tensor by name and the
 * first and last byte of its data.  Rejections are the expected outcome
 * for most inputs; crashes, sanitizer reports and leaks are the bugs.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tl_gguf.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A NUL-terminated copy of a file string, for the lookup functions. */
static char *
c_string(tl_gguf_str s)
{
	char	   *p = malloc(s.len + 1);

	if (!p)
		abort();
	if (s.len)
		memcpy(p, s.ptr, s.len);
	p[s.len] = '\0';
	return p;
}

static volatile uint64_t sink;

static void
walk_kv(const tl_gguf *g, const tl_gguf_kv *kv)
{
	char	   *key = c_string(kv->key);
	uint32_t	u32;
	int32_t		i32;
	uint64_t	u64;
	float		f32;
	bool		b;
	tl_gguf_str str;
	const tl_gguf_kv *arr;

	/* keys are printable ASCII, so the C string finds the same entry */
	if (tl_gguf_find(g, key) != kv)
		abort();
	if (tl_gguf_get_u32(g, key, &u32) == TL_OK)
		sink += u32;
	if (tl_gguf_get_i32(g, key, &i32) == TL_OK)
		sink += (uint32_t) i32;
	if (tl_gguf_get_u64(g, key, &u64) == TL_OK)
		sink += u64;
	if (tl_gguf_get_f32(g, key, &f32) == TL_OK)
		sink += f32 > 0;
	if (tl_gguf_get_bool(g, key, &b) == TL_OK)
		sink += b;
	if (tl_gguf_get_string(g, key, &str) == TL_OK && str.len)
		sink += (uint8_t) str.ptr[str.len - 1];
	if (tl_gguf_get_strings(g, key, &arr) == TL_OK)
	{
		for (size_t i = 0; i < arr->count; i++)
		{
			if (tl_gguf_array_string(arr, i, &str) != TL_OK)
				abort();
			if (str.len)
				sink += (uint8_t) str.ptr[0] + (uint8_t) str.ptr[str.len - 1];
		}
	}
	if (tl_gguf_get_ints(g, key, &arr) == TL_OK)
	{
		int32_t    *out = malloc((arr->count ? arr->count : 1) * sizeof(int32_t));

		if (!out)
			abort();
		for (size_t i = 0; i < arr->count; i++)
		{
			int64_t		v;

			if (tl_gguf_array_int(arr, i, &v) == TL_OK)
				sink += (uint64_t) v;
		}
		if (tl_gguf_copy_i32(arr, out, arr->count) == TL_OK && arr->count)
			sink += (uint32_t) out[arr->count - 1];
		free(out);
	}
	if (tl_gguf_get_floats(g, key, &arr) == TL_OK)
	{
		float	   *out = malloc((arr->count ? arr->count : 1) * sizeof(float));

		if (!out)
			abort();
		for (size_t i = 0; i < arr->count; i++)
		{
			double		v;

			if (tl_gguf_array_float(arr, i, &v) != TL_OK)
				abort();
			sink += v > 0;
		}
		if (tl_gguf_copy_f32(arr, out, arr->count) == TL_OK && arr->count)
			sink += out[0] > 0;
		free(out);
	}
	free(key);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t    *exact = malloc(size ? size : 1);
	tl_gguf		g;

	if (!exact)
		return 0;
	if (size)
		memcpy(exact, data, size);
	if (tl_gguf_open_memory(&g, exact, size) == TL_OK)
	{
		for (size_t k = 0; k < g.n_kv; k++)
			walk_kv(&g, &g.kv[k]);
		for (size_t k = 0; k < g.n_tensors; k++)
		{
			const tl_gguf_tensor *t = &g.tensors[k];
			const uint8_t *d = t->data;
			char	   *name = c_string(t->name);
			const tl_gguf_tensor *found = tl_gguf_find_tensor(&g, name);

			/* a name with a NUL byte is looked up by its prefix */
			if (strlen(name) == t->name.len && found != t)
				abort();
			if (!tl_qtype_info((int) t->type) || t->size == 0)
				abort();
			sink += d[0] + d[t->size - 1];
			free(name);
		}
		tl_gguf_close(&g);
	}
	free(exact);
	return 0;
}
