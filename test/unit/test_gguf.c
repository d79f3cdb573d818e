/*
 * test_gguf.c -- the GGUF reader: every value of a sample file written
 * by gguf_writer.h, the typed getters' checks, the file path (mmap),
 * rejection of each kind of damage with its byte offset, truncation at
 * every length, random corruption, and the real model when it has been
 * fetched (scripts/fetch_model.sh; skipped otherwise).
 *
 * Every file under attack is copied into a heap buffer of exactly its
 * length, so the sanitizers catch any read past its end.
 */
#include <fcntl.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <unistd.h>

#include "unit.h"
#include "gguf_writer.h"
#include "tl_gguf.h"

#define REAL_MODEL "build/models/SmolLM2-135M-Instruct.Q4_1.gguf"

/* Assert the last core message contains a fragment. */
#define ASSERT_MESSAGE_HAS(fragment) \
	do { if (!strstr(tl_last_error(), (fragment))) \
			fail_msg("message \"%s\" lacks \"%s\"", tl_last_error(), (fragment)); \
	} while (0)

static const gguf_sample_opts default_opts = {.version = 3, .alignment = 64};

static bool
str_is(tl_gguf_str s, const char *bytes, size_t n)
{
	return s.len == n && (n == 0 || memcmp(s.ptr, bytes, n) == 0);
}

/*
 * Open an exact copy of bytes and expect TL_ERR_ARG with each given
 * fragment in the message (NULL ends the list); *g must come back zeroed.
 */
static void
expect_reject(const uint8_t *bytes, size_t len, const char *fragment, const char *fragment2)
{
	uint8_t    *exact = copy_exact(bytes, len);
	tl_gguf		g;
	tl_status	rc = tl_gguf_open_memory(&g, exact, len);

	if (rc == TL_OK)
		fail_msg("expected a rejection with \"%s\", but the file was accepted", fragment);
	if (rc != TL_ERR_ARG)
		fail_msg("expected a rejection with \"%s\", got %s: %s",
				 fragment, tl_status_name(rc), tl_last_error());
	ASSERT_MESSAGE_HAS(fragment);
	if (fragment2)
		ASSERT_MESSAGE_HAS(fragment2);
	assert_null(g.kv);
	assert_null(g.tensors);
	assert_int_equal(g.n_kv, 0);
	free(exact);
}

/* "byte N" as the reader writes it. */
static const char *
at_byte(char *buf, size_t cap, size_t pos)
{
	snprintf(buf, cap, "byte %zu:", pos);
	return buf;
}

/* Every scalar, string and array of the sample, through both the kv and the getters. */
static void
check_sample_metadata(const tl_gguf *g, const gguf_sample *s)
{
	const tl_gguf_kv *kv;
	tl_gguf_str str;
	uint32_t	u32;
	int32_t		i32;
	uint64_t	u64;
	float		f32;
	bool		b;
	int64_t		i64;
	double		f64;

	assert_int_equal(g->n_kv, s->n_kv);
	assert_int_equal(g->alignment, s->alignment);

	ASSERT_OK(tl_gguf_get_string(g, "general.architecture", &str));
	assert_true(tl_gguf_str_eq(str, "llama"));
	kv = tl_gguf_find(g, "general.architecture");
	assert_non_null(kv);
	assert_int_equal(kv->type, TL_GGUF_STRING);
	assert_int_equal(kv->offset, s->at_first_key);
	assert_ptr_equal(kv, &g->kv[0]);

	kv = tl_gguf_find(g, "test.u8");
	assert_non_null(kv);
	assert_int_equal(kv->type, TL_GGUF_U8);
	assert_int_equal(kv->v.u, 200);
	kv = tl_gguf_find(g, "test.i8");
	assert_int_equal(kv->type, TL_GGUF_I8);
	assert_int_equal(kv->v.i, -100);
	kv = tl_gguf_find(g, "test.u16");
	assert_int_equal(kv->type, TL_GGUF_U16);
	assert_int_equal(kv->v.u, 60000);
	kv = tl_gguf_find(g, "test.i16");
	assert_int_equal(kv->type, TL_GGUF_I16);
	assert_int_equal(kv->v.i, -30000);
	kv = tl_gguf_find(g, "test.u32");
	assert_int_equal(kv->type, TL_GGUF_U32);
	assert_int_equal(kv->v.u, 4000000000u);
	kv = tl_gguf_find(g, "test.i32");
	assert_int_equal(kv->type, TL_GGUF_I32);
	assert_int_equal(kv->v.i, -2000000000);
	kv = tl_gguf_find(g, "test.f32");
	assert_int_equal(kv->type, TL_GGUF_F32);
	assert_true(kv->v.f == 1.5);
	kv = tl_gguf_find(g, "test.bool");
	assert_int_equal(kv->type, TL_GGUF_BOOL);
	assert_true(kv->v.b);
	kv = tl_gguf_find(g, "test.u64");
	assert_int_equal(kv->type, TL_GGUF_U64);
	assert_true(kv->v.u == 0x8000000000000005ull);
	kv = tl_gguf_find(g, "test.i64");
	assert_int_equal(kv->type, TL_GGUF_I64);
	assert_true(kv->v.i == INT64_MIN);
	kv = tl_gguf_find(g, "test.f64");
	assert_int_equal(kv->type, TL_GGUF_F64);
	assert_true(kv->v.f == 3.141592653589793);

	ASSERT_OK(tl_gguf_get_u32(g, "test.u32", &u32));
	assert_int_equal(u32, 4000000000u);
	ASSERT_OK(tl_gguf_get_u32(g, "test.u16", &u32));
	assert_int_equal(u32, 60000);
	ASSERT_OK(tl_gguf_get_u32(g, "llama.context_length", &u32));
	assert_int_equal(u32, 8192);
	ASSERT_OK(tl_gguf_get_i32(g, "test.i32", &i32));
	assert_int_equal(i32, -2000000000);
	ASSERT_OK(tl_gguf_get_i32(g, "test.i8", &i32));
	assert_int_equal(i32, -100);
	ASSERT_OK(tl_gguf_get_i32(g, "test.u8", &i32));
	assert_int_equal(i32, 200);
	ASSERT_OK(tl_gguf_get_u64(g, "test.u64", &u64));
	assert_true(u64 == 0x8000000000000005ull);
	ASSERT_OK(tl_gguf_get_u64(g, "llama.context_length", &u64));
	assert_int_equal(u64, 8192);
	ASSERT_OK(tl_gguf_get_f32(g, "test.f32", &f32));
	assert_true(f32 == 1.5f);
	ASSERT_OK(tl_gguf_get_f32(g, "test.f64", &f32));
	assert_true(f32 == (float) 3.141592653589793);
	ASSERT_OK(tl_gguf_get_bool(g, "test.bool", &b));
	assert_true(b);
	ASSERT_OK(tl_gguf_get_string(g, "test.string", &str));
	assert_true(str_is(str, "h\xc3\xa9llo", 6));
	ASSERT_OK(tl_gguf_get_string(g, "test.empty", &str));
	assert_int_equal(str.len, 0);

	/* strings are views into the file, not copies */
	assert_true((const uint8_t *) str.ptr >= g->base && (const uint8_t *) str.ptr <= g->base + g->size);

	ASSERT_OK(tl_gguf_get_strings(g, "tokenizer.ggml.tokens", &kv));
	assert_int_equal(kv->count, 5);
	assert_int_equal(kv->elem_type, TL_GGUF_STRING);
	ASSERT_OK(tl_gguf_array_string(kv, 0, &str));
	assert_true(str_is(str, "<s>", 3));
	ASSERT_OK(tl_gguf_array_string(kv, 1, &str));
	assert_true(str_is(str, "hello", 5));
	ASSERT_OK(tl_gguf_array_string(kv, 2, &str));
	assert_int_equal(str.len, 0);
	ASSERT_OK(tl_gguf_array_string(kv, 3, &str));
	assert_true(str_is(str, "w\xc3\xb6rld", 6));
	ASSERT_OK(tl_gguf_array_string(kv, 4, &str));
	assert_true(str_is(str, "a\0b", 3));
	ASSERT_FAILS(TL_ERR_ARG, tl_gguf_array_string(kv, 5, &str));
	ASSERT_MESSAGE_HAS("index 5 is past its 5 elements");

	{
		float		scores[3];
		int32_t		types[3];

		ASSERT_OK(tl_gguf_get_floats(g, "tokenizer.ggml.scores", &kv));
		ASSERT_OK(tl_gguf_copy_f32(kv, scores, 3));
		assert_true(scores[0] == 0.5f && scores[1] == -1.25f && scores[2] == 3.0f);
		ASSERT_OK(tl_gguf_array_float(kv, 1, &f64));
		assert_true(f64 == -1.25);
		ASSERT_OK(tl_gguf_get_ints(g, "tokenizer.ggml.token_type", &kv));
		ASSERT_OK(tl_gguf_copy_i32(kv, types, 3));
		assert_int_equal(types[0], 1);
		assert_int_equal(types[1], -2);
		assert_int_equal(types[2], INT32_MAX);
	}

	ASSERT_OK(tl_gguf_get_ints(g, "test.arr.u8", &kv));
	assert_int_equal(kv->elem_type, TL_GGUF_U8);
	ASSERT_OK(tl_gguf_array_int(kv, 1, &i64));
	assert_int_equal(i64, 255);
	ASSERT_OK(tl_gguf_get_ints(g, "test.arr.i8", &kv));
	ASSERT_OK(tl_gguf_array_int(kv, 0, &i64));
	assert_int_equal(i64, -128);
	ASSERT_OK(tl_gguf_array_int(kv, 1, &i64));
	assert_int_equal(i64, 127);
	ASSERT_OK(tl_gguf_get_ints(g, "test.arr.u16", &kv));
	ASSERT_OK(tl_gguf_array_int(kv, 0, &i64));
	assert_int_equal(i64, 65535);
	ASSERT_OK(tl_gguf_get_ints(g, "test.arr.i16", &kv));
	ASSERT_OK(tl_gguf_array_int(kv, 0, &i64));
	assert_int_equal(i64, -32768);
	ASSERT_OK(tl_gguf_get_ints(g, "test.arr.u32", &kv));
	ASSERT_OK(tl_gguf_array_int(kv, 0, &i64));
	assert_int_equal(i64, 4294967295LL);
	ASSERT_OK(tl_gguf_array_int(kv, 1, &i64));
	assert_int_equal(i64, 7);
	kv = tl_gguf_find(g, "test.arr.bool");
	assert_int_equal(kv->type, TL_GGUF_ARRAY);
	assert_int_equal(kv->elem_type, TL_GGUF_BOOL);
	assert_int_equal(kv->count, 3);
	assert_memory_equal(kv->data, "\x01\x00\x01", 3);
	ASSERT_OK(tl_gguf_get_ints(g, "test.arr.u64", &kv));
	ASSERT_FAILS(TL_ERR_ARG, tl_gguf_array_int(kv, 0, &i64));
	ASSERT_MESSAGE_HAS("out of range for i64");
	ASSERT_OK(tl_gguf_array_int(kv, 1, &i64));
	assert_int_equal(i64, 9);
	ASSERT_OK(tl_gguf_get_ints(g, "test.arr.i64", &kv));
	ASSERT_OK(tl_gguf_array_int(kv, 0, &i64));
	assert_true(i64 == INT64_MIN);
	ASSERT_OK(tl_gguf_get_floats(g, "test.arr.f64", &kv));
	ASSERT_OK(tl_gguf_array_float(kv, 0, &f64));
	assert_true(f64 == 1e300);
	ASSERT_OK(tl_gguf_array_float(kv, 1, &f64));
	assert_true(f64 == -0.25);
	ASSERT_OK(tl_gguf_get_ints(g, "test.arr.empty", &kv));
	assert_int_equal(kv->count, 0);
	ASSERT_FAILS(TL_ERR_ARG, tl_gguf_array_int(kv, 0, &i64));

	assert_null(tl_gguf_find(g, "test"));
	assert_null(tl_gguf_find(g, "test.u3"));
	assert_null(tl_gguf_find(g, "test.u322"));
	assert_null(tl_gguf_find(g, ""));
}

/* Every tensor: name, shape, type, size, placement and the bytes themselves. */
static void
check_sample_tensors(const tl_gguf *g, const gguf_sample *s)
{
	static const tl_qtype types[SAMPLE_TENSORS] = {
		TL_QT_Q4_1, TL_QT_F32, TL_QT_Q6_K, TL_QT_Q8_0, TL_QT_F16
	};
	static const uint64_t row_sizes[SAMPLE_TENSORS] = {40, 256, 210, 34, 16};
	static const uint64_t n_elements[SAMPLE_TENSORS] = {192, 64, 512, 64, 48};

	assert_int_equal(g->n_tensors, s->n_tensors);
	if (s->n_tensors > 0)
	{
		assert_int_equal(g->data_offset, s->data_offset);
		assert_int_equal(g->data_offset % s->alignment, 0);
	}
	for (int i = 0; i < s->n_tensors; i++)
	{
		const tl_gguf_tensor *t = &g->tensors[i];
		const uint8_t *data;

		assert_true(tl_gguf_str_eq(t->name, sample_tensors[i].name));
		assert_ptr_equal(tl_gguf_find_tensor(g, sample_tensors[i].name), t);
		assert_int_equal(t->type, types[i]);
		assert_int_equal(t->n_dims, sample_tensors[i].n_dims);
		for (int d = 0; d < TL_GGUF_MAX_DIMS; d++)
			assert_int_equal(t->dims[d], sample_tensors[i].dims[d]);
		assert_int_equal(t->n_elements, n_elements[i]);
		assert_int_equal(t->row_size, row_sizes[i]);
		assert_int_equal(t->size, sample_tensors[i].size);
		assert_int_equal(t->offset, s->t[i].offset);
		assert_int_equal(t->info_offset, s->t[i].at_name);
		data = t->data;
		assert_ptr_equal(data, g->base + s->data_offset + s->t[i].offset);
		assert_int_equal((size_t) (data - g->base) % s->alignment, 0);
		for (size_t k = 0; k < t->size; k++)
			if (data[k] != sample_byte(i, k))
				fail_msg("tensor %d byte %zu is %u, expected %u", i, k, data[k], sample_byte(i, k));
	}
	assert_null(tl_gguf_find_tensor(g, "token_embd"));
	assert_null(tl_gguf_find_tensor(g, "output.weight"));
}

static void
test_type_traits(void **state)
{
	static const struct
	{
		uint32_t	code;
		const char *name;
		uint32_t	block,
					bytes;
	}			expect[] = {
		{0, "F32", 1, 4}, {1, "F16", 1, 2}, {30, "BF16", 1, 2},
		{2, "Q4_0", 32, 18}, {3, "Q4_1", 32, 20}, {6, "Q5_0", 32, 22},
		{7, "Q5_1", 32, 24}, {8, "Q8_0", 32, 34}, {12, "Q4_K", 256, 144},
		{13, "Q5_K", 256, 176}, {14, "Q6_K", 256, 210}, {15, "Q8_K", 256, 292},
		/* storage only: readable, not computable */
		{9, "Q8_1", 32, 36}, {10, "Q2_K", 256, 84}, {11, "Q3_K", 256, 110},
	};

	/* the reader sizes tensors by tl_quant's table: it must hold GGUF's sizes */
	for (size_t k = 0; k < sizeof(expect) / sizeof(expect[0]); k++)
	{
		const tl_qtype_traits *t = tl_qtype_info((int) expect[k].code);

		assert_non_null(t);
		assert_string_equal(t->name, expect[k].name);
		assert_string_equal(tl_qtype_name((int) expect[k].code), expect[k].name);
		assert_int_equal(t->block_size, expect[k].block);
		assert_int_equal(t->type_size, expect[k].bytes);
	}
	/* removed (4, 5), not known here (16+), out of range */
	assert_null(tl_qtype_info(4));
	assert_null(tl_qtype_info(5));
	assert_null(tl_qtype_info(16));
	assert_null(tl_qtype_info(31));
	assert_null(tl_qtype_info(-1));
	assert_string_equal(tl_qtype_name(99), "unknown");
	assert_string_equal(tl_gguf_vtype_name(TL_GGUF_U32), "u32");
	assert_string_equal(tl_gguf_vtype_name(13), "unknown");
}

static void
test_parse_sample(void **state)
{
	gguf_sample s;
	uint8_t    *exact;
	tl_gguf		g;

	gguf_sample_build(&s, &default_opts);
	exact = copy_exact(s.w.p, s.w.len);
	ASSERT_OK(tl_gguf_open_memory(&g, exact, s.w.len));
	assert_int_equal(g.version, 3);
	assert_null(g.map);
	check_sample_metadata(&g, &s);
	check_sample_tensors(&g, &s);
	print_message("  sample: %zu bytes, %zu keys, %zu tensors, data at byte %zu\n",
				  s.w.len, g.n_kv, g.n_tensors, g.data_offset);
	tl_gguf_close(&g);
	assert_null(g.kv);
	tl_gguf_close(&g);			/* twice is harmless */
	free(exact);
	gguf_sample_free(&s);
}

/* Version 2, no general.alignment (32 applies), and a file without tensors. */
static void
test_version2_default_alignment(void **state)
{
	gguf_sample_opts opts = {.version = 2};
	gguf_sample s;
	uint8_t    *exact;
	tl_gguf		g;

	gguf_sample_build(&s, &opts);
	exact = copy_exact(s.w.p, s.w.len);
	ASSERT_OK(tl_gguf_open_memory(&g, exact, s.w.len));
	assert_int_equal(g.version, 2);
	assert_int_equal(g.alignment, 32);
	assert_null(tl_gguf_find(&g, "general.alignment"));
	check_sample_metadata(&g, &s);
	check_sample_tensors(&g, &s);
	tl_gguf_close(&g);
	free(exact);
	gguf_sample_free(&s);

	opts.n_tensors = -1;
	opts.alignment = 256;
	gguf_sample_build(&s, &opts);
	exact = copy_exact(s.w.p, s.w.len);
	ASSERT_OK(tl_gguf_open_memory(&g, exact, s.w.len));
	assert_int_equal(g.n_tensors, 0);
	assert_int_equal(g.alignment, 256);
	assert_int_equal(g.data_offset, s.w.len);	/* no padding written */
	assert_null(tl_gguf_find_tensor(&g, "token_embd.weight"));
	check_sample_metadata(&g, &s);
	tl_gguf_close(&g);
	free(exact);
	gguf_sample_free(&s);
}

static void
test_getter_checks(void **state)
{
	gguf_sample s;
	uint8_t    *exact;
	tl_gguf		g;
	uint32_t	u32 = 77;
	int32_t		i32;
	uint64_t	u64;
	float		f32;
	bool		b;
	tl_gguf_str str;
	const tl_gguf_kv *kv;
	int32_t		ints[3];
	float		floats[3];
	double		f64;

	gguf_sample_build(&s, &default_opts);
	exact = copy_exact(s.w.p, s.w.len);
	ASSERT_OK(tl_gguf_open_memory(&g, exact, s.w.len));

	ASSERT_FAILS(TL_ERR_ARG, tl_gguf_get_u32(&g, "general.architecture", &u32));
	ASSERT_MESSAGE_HAS("\"general.architecture\" is a string, expected an integer");
	assert_int_equal(u32, 77);	/* untouched on failure */
	ASSERT_FAILS(TL_ERR_ARG, tl_gguf_get_u32(&g, "test.i32", &u32));
	ASSERT_MESSAGE_HAS("is -2000000000, out of range for u32");
	ASSERT_FAILS(TL_ERR_ARG, tl_gguf_get_u32(&g, "test.u64", &u32));
	ASSERT_MESSAGE_HAS("out of range for u32");
	ASSERT_FAILS(TL_ERR_ARG, tl_gguf_get_i32(&g, "test.u32", &i32));
	ASSERT_MESSAGE_HAS("is 4000000000, out of range for i32");
	ASSERT_FAILS(TL_ERR_ARG, tl_gguf_get_i32(&g, "test.i64", &i32));
	ASSERT_FAILS(TL_ERR_ARG, tl_gguf_get_u64(&g, "test.i8", &u64));
	ASSERT_MESSAGE_HAS("is -100, out of range for u64");
	ASSERT_FAILS(TL_ERR_ARG, tl_gguf_get_u64(&g, "test.f32", &u64));
	ASSERT_MESSAGE_HAS("is a f32, expected an integer");
	ASSERT_FAILS(TL_ERR_ARG, tl_gguf_get_u64(&g, "test.bool", &u64));
	ASSERT_FAILS(TL_ERR_ARG, tl_gguf_get_f32(&g, "test.u32", &f32));
	ASSERT_MESSAGE_HAS("expected f32 or f64");
	ASSERT_FAILS(TL_ERR_ARG, tl_gguf_get_bool(&g, "test.u8", &b));
	ASSERT_MESSAGE_HAS("is a u8, expected bool");
	ASSERT_FAILS(TL_ERR_ARG, tl_gguf_get_string(&g, "tokenizer.ggml.tokens", &str));
	ASSERT_MESSAGE_HAS("is an array of string, expected string");
	ASSERT_FAILS(TL_ERR_ARG, tl_gguf_get_string(&g, "no.such.key", &str));
	ASSERT_MESSAGE_HAS("\"no.such.key\" is missing");
	ASSERT_FAILS(TL_ERR_ARG, tl_gguf_get_u32(&g, "no.such.key", &u32));

	ASSERT_FAILS(TL_ERR_ARG, tl_gguf_get_strings(&g, "tokenizer.ggml.scores", &kv));
	ASSERT_MESSAGE_HAS("is an array of f32, expected an array of strings");
	assert_null(kv);
	ASSERT_FAILS(TL_ERR_ARG, tl_gguf_get_ints(&g, "tokenizer.ggml.scores", &kv));
	ASSERT_FAILS(TL_ERR_ARG, tl_gguf_get_ints(&g, "test.arr.bool", &kv));
	ASSERT_FAILS(TL_ERR_ARG, tl_gguf_get_floats(&g, "test.u32", &kv));
	ASSERT_MESSAGE_HAS("is a u32, expected an array of floats");
	ASSERT_FAILS(TL_ERR_ARG, tl_gguf_get_strings(&g, "no.such.key", &kv));

	/* element access checks the kind and the index */
	kv = tl_gguf_find(&g, "tokenizer.ggml.scores");
	ASSERT_FAILS(TL_ERR_ARG, tl_gguf_array_string(kv, 0, &str));
	ASSERT_FAILS(TL_ERR_ARG, tl_gguf_array_int(kv, 0, &(int64_t) {0}));
	ASSERT_FAILS(TL_ERR_ARG, tl_gguf_array_float(kv, 3, &f64));
	ASSERT_FAILS(TL_ERR_ARG, tl_gguf_copy_f32(kv, floats, 2));
	ASSERT_MESSAGE_HAS("holds 3 elements, 2 expected");
	ASSERT_FAILS(TL_ERR_ARG, tl_gguf_copy_i32(kv, ints, 3));
	ASSERT_FAILS(TL_ERR_ARG, tl_gguf_array_float(tl_gguf_find(&g, "test.f64"), 0, &f64));
	kv = tl_gguf_find(&g, "test.arr.u32");
	ASSERT_FAILS(TL_ERR_ARG, tl_gguf_copy_i32(kv, ints, 2));
	ASSERT_MESSAGE_HAS("element 0 is out of range for i32");
	kv = tl_gguf_find(&g, "test.arr.f64");
	ASSERT_FAILS(TL_ERR_ARG, tl_gguf_copy_f32(kv, floats, 2));
	ASSERT_MESSAGE_HAS("element 0 holds 1e+300, out of range for f32");

	tl_gguf_close(&g);
	free(exact);
	gguf_sample_free(&s);
}

/* A temporary file under TMPDIR (or /tmp) holding n bytes. */
static void
write_temp(char *path, size_t cap, const void *bytes, size_t n)
{
	const char *dir = getenv("TMPDIR");
	int			fd;

	snprintf(path, cap, "%s/test_gguf_XXXXXX", dir && *dir ? dir : "/tmp");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, bytes, n), (ssize_t) n);
	close(fd);
}

static void
test_open_file(void **state)
{
	gguf_sample s;
	tl_gguf		g;
	char		path[512],
				dir_path[512];

	gguf_sample_build(&s, &default_opts);
	write_temp(path, sizeof(path), s.w.p, s.w.len);
	ASSERT_OK(tl_gguf_open(&g, path));
	assert_non_null(g.map);
	assert_int_equal(g.size, s.w.len);
	check_sample_metadata(&g, &s);
	check_sample_tensors(&g, &s);
	tl_gguf_close(&g);
	assert_null(g.map);
	unlink(path);

	/* a damaged file: the message starts with its path */
	s.w.p[s.t[2].at_type] = 99;
	write_temp(path, sizeof(path), s.w.p, s.w.len);
	ASSERT_FAILS(TL_ERR_ARG, tl_gguf_open(&g, path));
	assert_true(strncmp(tl_last_error(), path, strlen(path)) == 0);
	ASSERT_MESSAGE_HAS("type 99 is unknown");
	assert_null(g.map);
	unlink(path);

	write_temp(path, sizeof(path), "", 0);
	ASSERT_FAILS(TL_ERR_ARG, tl_gguf_open(&g, path));
	ASSERT_MESSAGE_HAS("of 0 bytes is impossible");
	unlink(path);
	ASSERT_FAILS(TL_ERR_ARG, tl_gguf_open(&g, path));
	ASSERT_MESSAGE_HAS("cannot open");

	snprintf(dir_path, sizeof(dir_path), "%s", path);
	assert_int_equal(mkdir(dir_path, 0700), 0);
	ASSERT_FAILS(TL_ERR_ARG, tl_gguf_open(&g, dir_path));
	ASSERT_MESSAGE_HAS("not a regular file");
	rmdir(dir_path);
	gguf_sample_free(&s);
}

/* Every proper prefix of a valid file is rejected, and never read past. */
static void
test_truncation_every_length(void **state)
{
	gguf_sample s;
	size_t		rejected = 0;

	gguf_sample_build(&s, &default_opts);
	for (size_t len = 0; len < s.w.len; len++)
	{
		uint8_t    *exact = copy_exact(s.w.p, len);
		tl_gguf		g;
		tl_status	rc = tl_gguf_open_memory(&g, exact, len);

		if (rc != TL_ERR_ARG)
			fail_msg("a %zu-byte prefix of %zu gave %s", len, s.w.len, tl_status_name(rc));
		if (tl_last_error()[0] == '\0')
			fail_msg("a %zu-byte prefix gave no message", len);
		assert_null(g.kv);
		rejected++;
		free(exact);
	}
	/* and a NULL buffer */
	{
		tl_gguf		g;

		ASSERT_FAILS(TL_ERR_ARG, tl_gguf_open_memory(&g, NULL, 0));
		ASSERT_FAILS(TL_ERR_ARG, tl_gguf_open_memory(&g, NULL, 100));
	}
	print_message("  %zu truncations rejected\n", rejected);
	gguf_sample_free(&s);
}

static void
test_bad_header(void **state)
{
	gguf_sample s;
	uint8_t    *b;

	gguf_sample_build(&s, &default_opts);
	b = s.w.p;

	b[0] ^= 0xFF;
	expect_reject(b, s.w.len, "not a GGUF file", "expected \"GGUF\"");
	b[0] ^= 0xFF;
	memcpy(b, "GGML", 4);
	expect_reject(b, s.w.len, "bytes 0-3 are \"GGML\"", NULL);
	memcpy(b, "GGUF", 4);

	put_le32(b + s.at_version, 1);
	expect_reject(b, s.w.len, "version 1", "not supported");
	put_le32(b + s.at_version, 4);
	expect_reject(b, s.w.len, "version 4 at byte 4 is not supported", NULL);
	put_le32(b + s.at_version, 0x03000000u);
	expect_reject(b, s.w.len, "big-endian", NULL);
	put_le32(b + s.at_version, 3);

	put_le64(b + s.at_kv_count, UINT64_MAX);
	expect_reject(b, s.w.len, "18446744073709551615 metadata entries cannot fit", "byte 16:");
	put_le64(b + s.at_kv_count, s.n_kv + 1);	/* the tensor infos are misread */
	expect_reject(b, s.w.len, "GGUF", NULL);
	put_le64(b + s.at_kv_count, s.n_kv);

	put_le64(b + s.at_tensor_count, (uint64_t) 1 << 40);
	expect_reject(b, s.w.len, "1099511627776 tensors cannot fit", "byte 8:");
	put_le64(b + s.at_tensor_count, SAMPLE_TENSORS + 1);
	expect_reject(b, s.w.len, "tensor 5", NULL);
	put_le64(b + s.at_tensor_count, SAMPLE_TENSORS);

	expect_reject(b, 23, "shorter than its 24-byte header", NULL);
	gguf_sample_free(&s);
}

static void
test_bad_metadata(void **state)
{
	gguf_sample s;
	uint8_t    *b;
	char		where[64];

	gguf_sample_build(&s, &default_opts);
	b = s.w.p;

	/* a key length far past the end */
	put_le64(b + s.at_first_key, UINT64_MAX);
	expect_reject(b, s.w.len, "metadata entry 0, byte 24: the key claims 18446744073709551615 bytes", NULL);
	put_le64(b + s.at_first_key, 0);
	expect_reject(b, s.w.len, "the key is empty", NULL);
	put_le64(b + s.at_first_key, strlen("general.architecture"));

	/* a string value length past the end */
	put_le64(b + s.at_string_value, (uint64_t) 1 << 62);
	expect_reject(b, s.w.len, "metadata entry", "\"test.string\"");
	expect_reject(b, s.w.len, at_byte(where, sizeof(where), s.at_string_value), "the string value claims 4611686018427387904 bytes");
	put_le64(b + s.at_string_value, 6);

	/* array counts that cannot fit: strings and fixed-size elements */
	put_le64(b + s.at_tokens_count, UINT64_MAX);
	expect_reject(b, s.w.len, "an array of 18446744073709551615 strings cannot fit", "\"tokenizer.ggml.tokens\"");
	put_le64(b + s.at_tokens_count, (uint64_t) 1 << 61);
	expect_reject(b, s.w.len, at_byte(where, sizeof(where), s.at_tokens_count), "strings cannot fit");
	put_le64(b + s.at_tokens_count, 6);	/* one more string: the rest is misread */
	expect_reject(b, s.w.len, "GGUF metadata entry", NULL);
	put_le64(b + s.at_tokens_count, 5);
	put_le64(b + s.at_u8s_count, UINT64_MAX / 2);
	expect_reject(b, s.w.len, "an array of 9223372036854775807 u8 values cannot fit", NULL);
	put_le64(b + s.at_u8s_count, 2);

	/* nested arrays and unknown element types */
	put_le32(b + s.at_tokens_elem, 9);
	expect_reject(b, s.w.len, "arrays of arrays are not supported", at_byte(where, sizeof(where), s.at_tokens_elem));
	put_le32(b + s.at_tokens_elem, 13);
	expect_reject(b, s.w.len, "unknown array element type 13", NULL);
	put_le32(b + s.at_tokens_elem, 8);

	/* value types */
	put_le32(b + s.at_u32_type, 13);
	expect_reject(b, s.w.len, "\"test.u32\"", "unknown value type 13");
	put_le32(b + s.at_u32_type, UINT32_MAX);
	expect_reject(b, s.w.len, "unknown value type 4294967295", at_byte(where, sizeof(where), s.at_u32_type));
	put_le32(b + s.at_u32_type, 4);

	/* bools are 0 or 1 */
	b[s.at_bool_value] = 2;
	expect_reject(b, s.w.len, "bool value is 2, not 0 or 1", at_byte(where, sizeof(where), s.at_bool_value));
	b[s.at_bool_value] = 1;
	b[s.at_bools + 2] = 0xFF;
	expect_reject(b, s.w.len, "bool element 2 is 255", at_byte(where, sizeof(where), s.at_bools + 2));
	b[s.at_bools + 2] = 1;

	/* keys: printable and unique */
	b[s.at_first_key + 8 + 3] = '\n';
	expect_reject(b, s.w.len, "the key holds byte 0x0A", at_byte(where, sizeof(where), s.at_first_key + 8 + 3));
	b[s.at_first_key + 8 + 3] = 'e';
	b[s.at_i32_key + 5] = 'u';	/* "test.i32" becomes a second "test.u32" */
	expect_reject(b, s.w.len, "metadata key \"test.u32\" appears twice", NULL);
	b[s.at_i32_key + 5] = 'i';

	/* nothing left damaged */
	{
		uint8_t    *exact = copy_exact(b, s.w.len);
		tl_gguf		g;

		ASSERT_OK(tl_gguf_open_memory(&g, exact, s.w.len));
		tl_gguf_close(&g);
		free(exact);
	}
	gguf_sample_free(&s);
}

static void
test_bad_alignment(void **state)
{
	static const uint32_t bad[] = {0, 1, 4, 12, 48, 0x80000001u};
	gguf_sample_opts opts = default_opts;
	gguf_sample s;

	gguf_sample_build(&s, &opts);
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++)
	{
		char		expect[64];

		put_le32(s.w.p + s.at_alignment_value, bad[k]);
		snprintf(expect, sizeof(expect), "%u is not a power of two of at least 8", bad[k]);
		expect_reject(s.w.p, s.w.len, "\"general.alignment\"", expect);
	}
	gguf_sample_free(&s);

	opts.alignment_type = GW_U64;
	gguf_sample_build(&s, &opts);
	expect_reject(s.w.p, s.w.len, "\"general.alignment\"", "a u64, expected u32");
	gguf_sample_free(&s);

	/* alignment 8 is fine, and the offsets follow it */
	opts = default_opts;
	opts.alignment = 8;
	gguf_sample_build(&s, &opts);
	{
		uint8_t    *exact = copy_exact(s.w.p, s.w.len);
		tl_gguf		g;

		ASSERT_OK(tl_gguf_open_memory(&g, exact, s.w.len));
		check_sample_tensors(&g, &s);
		tl_gguf_close(&g);
		free(exact);
	}
	gguf_sample_free(&s);
}

static void
test_bad_tensor_info(void **state)
{
	gguf_sample s;
	uint8_t    *b;
	char		where[64];

	gguf_sample_build(&s, &default_opts);
	b = s.w.p;

	/* n_dims */
	put_le32(b + s.t[1].at_n_dims, 5);
	expect_reject(b, s.w.len, "tensor 1 \"output_norm.weight\"", "5 dimensions, expected 1 to 4");
	expect_reject(b, s.w.len, at_byte(where, sizeof(where), s.t[1].at_n_dims), NULL);
	put_le32(b + s.t[1].at_n_dims, 0);
	expect_reject(b, s.w.len, "0 dimensions", NULL);
	put_le32(b + s.t[1].at_n_dims, 1);

	/* dims: zero, and a product past int64 */
	put_le64(b + s.t[0].at_dims + 8, 0);
	expect_reject(b, s.w.len, "\"token_embd.weight\"", "dimension 1 is 0");
	put_le64(b + s.t[0].at_dims, (uint64_t) 1 << 32);
	put_le64(b + s.t[0].at_dims + 8, (uint64_t) 1 << 32);
	expect_reject(b, s.w.len, "the element count overflows at dimension 1", at_byte(where, sizeof(where), s.t[0].at_dims + 8));
	put_le64(b + s.t[0].at_dims + 8, (uint64_t) 1 << 31);	/* 2^63 elements: one too many */
	expect_reject(b, s.w.len, "overflows", NULL);
	put_le64(b + s.t[0].at_dims, 64);
	put_le64(b + s.t[0].at_dims + 8, 3);

	/* an F32 tensor of INT64_MAX elements: 4 bytes each would wrap */
	put_le64(b + s.t[1].at_dims, (uint64_t) INT64_MAX);
	expect_reject(b, s.w.len, "the row size overflows", NULL);
	/* huge but representable: placed past the end of the file */
	put_le64(b + s.t[1].at_dims, (uint64_t) 1 << 60);
	expect_reject(b, s.w.len, "runs past", "\"output_norm.weight\"");
	put_le64(b + s.t[1].at_dims, 64);

	/* types */
	put_le32(b + s.t[2].at_type, 99);
	expect_reject(b, s.w.len, "tensor 2 \"blk.0.ffn_down.weight\"", "type 99 is unknown to this reader");
	expect_reject(b, s.w.len, at_byte(where, sizeof(where), s.t[2].at_type), NULL);
	put_le32(b + s.t[2].at_type, 4);	/* Q4_2: removed from ggml */
	expect_reject(b, s.w.len, "type 4 is unknown", NULL);
	put_le32(b + s.t[2].at_type, UINT32_MAX);
	expect_reject(b, s.w.len, "type 4294967295 is unknown", NULL);
	/* storage-only types are read and sized like any other */
	{
		static const struct
		{
			uint32_t	code;
			uint64_t	row_size;
		}			storage[] = {{10, 84}, {11, 110}};

		for (size_t k = 0; k < sizeof(storage) / sizeof(storage[0]); k++)
		{
			uint8_t    *exact;
			tl_gguf		sg;
			const tl_gguf_tensor *t;

			put_le32(b + s.t[2].at_type, storage[k].code);
			exact = copy_exact(b, s.w.len);
			ASSERT_OK(tl_gguf_open_memory(&sg, exact, s.w.len));
			t = tl_gguf_find_tensor(&sg, "blk.0.ffn_down.weight");
			assert_non_null(t);
			assert_int_equal(t->type, storage[k].code);
			assert_int_equal(t->row_size, storage[k].row_size);
			assert_int_equal(t->size, t->n_elements / 256 * storage[k].row_size);
			tl_gguf_close(&sg);
			free(exact);
		}
	}
	put_le32(b + s.t[2].at_type, 14);

	/* row length not a multiple of the block size */
	put_le64(b + s.t[0].at_dims, 48);
	expect_reject(b, s.w.len, "row length 48 is not a multiple of the Q4_1 block size 32", NULL);
	put_le64(b + s.t[0].at_dims, 64);
	put_le64(b + s.t[2].at_dims, 128);
	expect_reject(b, s.w.len, "row length 128 is not a multiple of the Q6_K block size 256", NULL);
	put_le64(b + s.t[2].at_dims, 256);

	/* offsets: misaligned, past the end, overlapping */
	put_le64(b + s.t[3].at_offset, s.t[3].offset + 1);
	expect_reject(b, s.w.len, "not a multiple of the alignment 64", at_byte(where, sizeof(where), s.t[3].at_offset));
	put_le64(b + s.t[3].at_offset, s.t[3].offset + 32);
	expect_reject(b, s.w.len, "not a multiple of the alignment 64", NULL);
	put_le64(b + s.t[3].at_offset, (uint64_t) 1 << 63);
	expect_reject(b, s.w.len, "tensor 3 \"blk.0.attn_v.weight\"", "runs past the");
	put_le64(b + s.t[3].at_offset, s.t[3].offset);
	put_le64(b + s.t[4].at_offset, s.t[4].offset + 64);	/* the last tensor, one block on */
	expect_reject(b, s.w.len, "data [", "runs past the");
	put_le64(b + s.t[4].at_offset, s.t[4].offset);
	put_le64(b + s.t[1].at_offset, s.t[0].offset);
	expect_reject(b, s.w.len, "\"token_embd.weight\"", "overlap");
	put_le64(b + s.t[1].at_offset, s.t[2].offset);
	expect_reject(b, s.w.len, "\"output_norm.weight\"", "\"blk.0.ffn_down.weight\"");
	put_le64(b + s.t[1].at_offset, s.t[1].offset);

	/* data in another order than the infos is fine while it does not overlap */
	put_le64(b + s.t[0].at_offset, s.t[3].offset);
	put_le64(b + s.t[3].at_offset, s.t[0].offset);
	{
		uint8_t    *exact = copy_exact(b, s.w.len);
		tl_gguf		g;

		ASSERT_OK(tl_gguf_open_memory(&g, exact, s.w.len));
		assert_int_equal(g.tensors[0].offset, s.t[3].offset);
		assert_ptr_equal(g.tensors[3].data, g.base + s.data_offset + s.t[0].offset);
		tl_gguf_close(&g);
		free(exact);
	}
	put_le64(b + s.t[3].at_offset, s.t[3].offset + 64);	/* now over output_norm.weight */
	expect_reject(b, s.w.len, "\"blk.0.attn_v.weight\"", "overlap");
	put_le64(b + s.t[0].at_offset, s.t[0].offset);
	put_le64(b + s.t[3].at_offset, s.t[3].offset);

	/* names: empty, too long, duplicated */
	put_le64(b + s.t[0].at_name, 0);
	expect_reject(b, s.w.len, "the name is empty", NULL);
	put_le64(b + s.t[0].at_name, 17);
	memcpy(b + s.t[4].at_name + 8, "blk.0.attn_v.weight", 19);	/* tensor 3's name */
	expect_reject(b, s.w.len, "tensor name \"blk.0.attn_v.weight\" appears twice", NULL);
	memcpy(b + s.t[4].at_name + 8, "blk.0.attn_k.weight", 19);

	/* nothing left damaged */
	{
		uint8_t    *exact = copy_exact(b, s.w.len);
		tl_gguf		g;

		ASSERT_OK(tl_gguf_open_memory(&g, exact, s.w.len));
		check_sample_tensors(&g, &s);
		tl_gguf_close(&g);
		free(exact);
	}
	gguf_sample_free(&s);
}

/* Walk everything an accepted file offers, as a consumer would. */
static void
walk(const tl_gguf *g)
{
	uint64_t	sum = 0;

	for (size_t k = 0; k < g->n_kv; k++)
	{
		const tl_gguf_kv *kv = &g->kv[k];

		if (kv->type != TL_GGUF_ARRAY)
			continue;
		for (size_t i = 0; i < kv->count; i++)
		{
			tl_gguf_str str;
			int64_t		i64;
			double		f64;

			if (tl_gguf_array_string(kv, i, &str) == TL_OK && str.len)
				sum += (uint8_t) str.ptr[str.len - 1];
			if (tl_gguf_array_int(kv, i, &i64) == TL_OK)
				sum += (uint64_t) i64;
			if (tl_gguf_array_float(kv, i, &f64) == TL_OK)
				sum += f64 > 0;
		}
	}
	for (size_t k = 0; k < g->n_tensors; k++)
	{
		const uint8_t *d = g->tensors[k].data;

		sum += d[0] + d[g->tensors[k].size - 1];
	}
	(void) sum;
}

/* Random damage: every outcome is a clean acceptance or a clean rejection. */
static void
test_random_corruption(void **state)
{
	gguf_sample s;
	tl_rng		rng;
	int			accepted = 0,
				rejected = 0;

	gguf_sample_build(&s, &default_opts);
	tl_rng_seed(&rng, 20240601);
	for (int round = 0; round < 4000; round++)
	{
		uint8_t    *exact = copy_exact(s.w.p, s.w.len);
		int			edits = 1 + (int) (tl_rng_next(&rng) % 4);
		size_t		len = s.w.len;
		tl_gguf		g;
		tl_status	rc;

		for (int e = 0; e < edits; e++)
		{
			/* mostly hit the header and tables, where the structure is */
			size_t		limit = (tl_rng_next(&rng) & 3) ? s.data_offset : s.w.len;
			size_t		at = (size_t) (tl_rng_next(&rng) % limit);

			switch (tl_rng_next(&rng) % 3)
			{
				case 0:
					exact[at] ^= (uint8_t) (1u << (tl_rng_next(&rng) % 8));
					break;
				case 1:
					exact[at] = (uint8_t) tl_rng_next(&rng);
					break;
				default:
					exact[at] = 0xFF;
					break;
			}
		}
		if ((tl_rng_next(&rng) % 8) == 0)
			len = (size_t) (tl_rng_next(&rng) % s.w.len);
		rc = tl_gguf_open_memory(&g, exact, len);
		if (rc == TL_OK)
		{
			walk(&g);
			tl_gguf_close(&g);
			accepted++;
		}
		else
		{
			if (rc != TL_ERR_ARG)
				fail_msg("round %d: %s: %s", round, tl_status_name(rc), tl_last_error());
			rejected++;
		}
		free(exact);
	}
	print_message("  random damage: %d accepted, %d rejected\n", accepted, rejected);
	assert_true(rejected > 1000);
	gguf_sample_free(&s);
}

/*
 * The real model, when scripts/fetch_model.sh has fetched it (TL_TEST_GGUF
 * names another file).  SmolLM2-135M-Instruct is a Llama: the token
 * embedding is [n_embd, n_vocab] in ggml order.
 */
static void
test_real_model(void **state)
{
	const char *path = getenv("TL_TEST_GGUF");
	tl_gguf		g;
	tl_gguf_str arch;
	const tl_gguf_kv *tokens;
	const tl_gguf_tensor *embd;
	uint64_t	ctx,
				n_embd;
	size_t		counts[TL_QT_LIMIT] = {0};
	char		summary[256];
	size_t		used = 0;
	uint64_t	data_bytes = 0;

	if (!path || !*path)
		path = REAL_MODEL;
	if (access(path, R_OK) != 0)
	{
		print_message("  %s is absent (run scripts/fetch_model.sh): real-model checks skipped\n", path);
		skip();
	}
	ASSERT_OK(tl_gguf_open(&g, path));
	ASSERT_OK(tl_gguf_get_string(&g, "general.architecture", &arch));
	if (!tl_gguf_str_eq(arch, "llama"))
		fail_msg("general.architecture is \"%.*s\", expected \"llama\"", (int) arch.len, arch.ptr);
	ASSERT_OK(tl_gguf_get_u64(&g, "llama.context_length", &ctx));
	assert_true(ctx > 0);
	ASSERT_OK(tl_gguf_get_u64(&g, "llama.embedding_length", &n_embd));
	ASSERT_OK(tl_gguf_get_strings(&g, "tokenizer.ggml.tokens", &tokens));
	embd = tl_gguf_find_tensor(&g, "token_embd.weight");
	assert_non_null(embd);
	assert_int_equal(embd->n_dims, 2);
	assert_int_equal(embd->dims[0], n_embd);
	assert_int_equal(embd->dims[1], tokens->count);

	/* every token is reachable; scores and types, if present, match in count */
	for (size_t i = 0; i < tokens->count; i++)
	{
		tl_gguf_str tok;

		ASSERT_OK(tl_gguf_array_string(tokens, i, &tok));
		assert_true((const uint8_t *) tok.ptr + tok.len <= g.base + g.size);
	}
	if (tl_gguf_find(&g, "tokenizer.ggml.scores"))
	{
		const tl_gguf_kv *scores;

		ASSERT_OK(tl_gguf_get_floats(&g, "tokenizer.ggml.scores", &scores));
		assert_int_equal(scores->count, tokens->count);
	}
	if (tl_gguf_find(&g, "tokenizer.ggml.token_type"))
	{
		const tl_gguf_kv *types;
		int32_t    *values = malloc(tokens->count * sizeof(int32_t));

		assert_non_null(values);
		ASSERT_OK(tl_gguf_get_ints(&g, "tokenizer.ggml.token_type", &types));
		ASSERT_OK(tl_gguf_copy_i32(types, values, tokens->count));
		free(values);
	}

	for (size_t k = 0; k < g.n_tensors; k++)
	{
		counts[g.tensors[k].type]++;
		data_bytes += g.tensors[k].size;
		assert_int_equal(((const uint8_t *) g.tensors[k].data - g.base) % g.alignment, 0);
	}
	for (int t = 0; t < TL_QT_LIMIT; t++)
		if (counts[t] && used < sizeof(summary))
			used += (size_t) snprintf(summary + used, sizeof(summary) - used, "%s%s x%zu",
									  used ? ", " : "", tl_qtype_name(t), counts[t]);
	print_message("  %s: GGUF v%u, %zu keys, %zu tensors (%s), vocab %zu, n_embd %llu, context %llu, %.1f MiB of tensor data\n",
				  path, g.version, g.n_kv, g.n_tensors, summary, tokens->count,
				  (unsigned long long) n_embd, (unsigned long long) ctx, data_bytes / 1048576.0);
	tl_gguf_close(&g);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_type_traits),
		cmocka_unit_test(test_parse_sample),
		cmocka_unit_test(test_version2_default_alignment),
		cmocka_unit_test(test_getter_checks),
		cmocka_unit_test(test_open_file),
		cmocka_unit_test(test_truncation_every_length),
		cmocka_unit_test(test_bad_header),
		cmocka_unit_test(test_bad_metadata),
		cmocka_unit_test(test_bad_alignment),
		cmocka_unit_test(test_bad_tensor_info),
		cmocka_unit_test(test_random_corruption),
		cmocka_unit_test(test_real_model),
	};

	return cmocka_run_group_tests_name("GGUF reader", tests, NULL, NULL);
}
