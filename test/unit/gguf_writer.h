/*
 * gguf_writer.h -- a tiny GGUF writer for tests, and the sample file the
 * GGUF tests and the fuzzer's seed corpus are built from.
 *
 * Written from the format description alone (not with the reader), so a
 * reader bug cannot hide behind a writer sharing it.  Positions of the
 * fields the corruption tests patch are recorded as the file is built.
 * Test code: it exits on out of memory.
 */
#ifndef TL_GGUF_WRITER_H
#define TL_GGUF_WRITER_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Codes as the file stores them (kept apart from the reader's enums). */
enum
{
	GW_U8 = 0, GW_I8, GW_U16, GW_I16, GW_U32, GW_I32, GW_F32, GW_BOOL,
	GW_STRING, GW_ARRAY, GW_U64, GW_I64, GW_F64
};

enum
{
	GW_T_F32 = 0, GW_T_F16 = 1, GW_T_Q4_1 = 3, GW_T_Q8_0 = 8, GW_T_Q6_K = 14
};

typedef struct gw_buf
{
	uint8_t    *p;
	size_t		len;
	size_t		cap;
} gw_buf;

static inline void
gw_put(gw_buf *w, const void *src, size_t n)
{
	if (w->len + n > w->cap)
	{
		size_t		cap = w->cap ? w->cap : 1024;

		while (cap < w->len + n)
			cap *= 2;
		w->p = realloc(w->p, cap);
		if (!w->p)
		{
			fprintf(stderr, "gguf_writer: out of memory\n");
			exit(1);
		}
		w->cap = cap;
	}
	if (n)
		memcpy(w->p + w->len, src, n);
	w->len += n;
}

static inline void
gw_le(gw_buf *w, uint64_t v, int bytes)
{
	uint8_t		b[8];

	for (int i = 0; i < bytes; i++)
		b[i] = (uint8_t) (v >> (8 * i));
	gw_put(w, b, (size_t) bytes);
}

static inline void gw_u8(gw_buf *w, uint8_t v) { gw_le(w, v, 1); }
static inline void gw_u16(gw_buf *w, uint16_t v) { gw_le(w, v, 2); }
static inline void gw_u32(gw_buf *w, uint32_t v) { gw_le(w, v, 4); }
static inline void gw_u64(gw_buf *w, uint64_t v) { gw_le(w, v, 8); }

static inline void
gw_f32(gw_buf *w, float f)
{
	uint32_t	u;

	memcpy(&u, &f, 4);
	gw_u32(w, u);
}

static inline void
gw_f64(gw_buf *w, double d)
{
	uint64_t	u;

	memcpy(&u, &d, 8);
	gw_u64(w, u);
}

/* A GGUF string: u64 length, bytes, no terminator. */
static inline void
gw_str(gw_buf *w, const char *s, size_t n)
{
	gw_u64(w, n);
	gw_put(w, s, n);
}

static inline void
gw_cstr(gw_buf *w, const char *s)
{
	gw_str(w, s, strlen(s));
}

/* A key and its value type; the value follows. */
static inline void
gw_key(gw_buf *w, const char *key, uint32_t type)
{
	gw_cstr(w, key);
	gw_u32(w, type);
}

/* An array header: element type and count; the elements follow. */
static inline void
gw_array(gw_buf *w, const char *key, uint32_t elem, uint64_t count)
{
	gw_key(w, key, GW_ARRAY);
	gw_u32(w, elem);
	gw_u64(w, count);
}

/*
 * A metadata-only GGUF v3 file (no tensors): gw_begin writes the header
 * and returns where the key/value count goes; gw_finish pads the file and
 * patches in the count, returning an exact-size copy (*len bytes) and
 * freeing w's buffer.
 */
static inline size_t
gw_begin(gw_buf *w)
{
	size_t		at;

	gw_put(w, "GGUF", 4);
	gw_u32(w, 3);
	gw_u64(w, 0);				/* tensors */
	at = w->len;
	gw_u64(w, 0);				/* key/value pairs, patched by gw_finish */
	return at;
}

static inline uint8_t *
gw_finish(gw_buf *w, size_t at_n_kv, uint64_t n_kv, size_t *len);

static inline void
gw_pad(gw_buf *w, size_t alignment)
{
	static const uint8_t zero[256];

	while (w->len % alignment)
		gw_put(w, zero, 1);
}

static inline uint8_t *
gw_finish(gw_buf *w, size_t at_n_kv, uint64_t n_kv, size_t *len)
{
	uint8_t    *copy;

	gw_pad(w, 32);
	for (int i = 0; i < 8; i++)
		w->p[at_n_kv + (size_t) i] = (uint8_t) (n_kv >> (8 * i));
	copy = malloc(w->len ? w->len : 1);
	if (!copy)
		abort();
	memcpy(copy, w->p, w->len);
	*len = w->len;
	free(w->p);
	w->p = NULL;
	return copy;
}

/* ------------------------------------------------------------- the sample */

#define SAMPLE_TENSORS 5

/* The sample's tensors; sizes worked out by hand from the block layouts. */
static const struct
{
	const char *name;
	uint32_t	type;
	uint32_t	n_dims;
	uint64_t	dims[4];
	uint64_t	size;			/* bytes */
}			sample_tensors[SAMPLE_TENSORS] = {
	{"token_embd.weight", GW_T_Q4_1, 2, {64, 3, 1, 1}, 3 * 2 * 20},
	{"output_norm.weight", GW_T_F32, 1, {64, 1, 1, 1}, 64 * 4},
	{"blk.0.ffn_down.weight", GW_T_Q6_K, 2, {256, 2, 1, 1}, 2 * 210},
	{"blk.0.attn_v.weight", GW_T_Q8_0, 2, {32, 2, 1, 1}, 2 * 34},
	{"blk.0.attn_k.weight", GW_T_F16, 4, {8, 2, 3, 1}, 48 * 2},	/* last: ends the file */
};

typedef struct gguf_sample_opts
{
	uint32_t	version;		/* 3 unless set */
	uint32_t	alignment;		/* 0: no general.alignment key (32 applies) */
	uint32_t	alignment_type;	/* GW_U32 unless set */
	int			n_tensors;		/* SAMPLE_TENSORS unless set; -1: none */
} gguf_sample_opts;

/* Where the fields the tests patch lie. */
typedef struct gguf_sample
{
	gw_buf		w;
	uint32_t	alignment;		/* in effect */
	uint64_t	n_kv;
	int			n_tensors;
	size_t		at_version,
				at_tensor_count,
				at_kv_count,
				at_first_key,	/* length of the first key */
				at_string_value,	/* length of test.string's value */
				at_bool_value,
				at_u32_type,	/* value type of test.u32 */
				at_i32_key,		/* first byte of the key "test.i32" */
				at_tokens_elem,	/* element type of tokenizer.ggml.tokens */
				at_tokens_count,
				at_u8s_count,	/* count of test.arr.u8 */
				at_bools,		/* first element of test.arr.bool */
				at_alignment_value;
	struct
	{
		size_t		at_name,	/* length of the name */
					at_n_dims,
					at_dims,
					at_type,
					at_offset;
		uint64_t	offset;		/* from the data section */
	}			t[SAMPLE_TENSORS];
	size_t		data_offset;
} gguf_sample;

/* Byte k of tensor i's data: a pattern the tests recognise. */
static inline uint8_t
sample_byte(int i, size_t k)
{
	return (uint8_t) (i * 37 + k * 7 + 1);
}

static inline void
gguf_sample_build(gguf_sample *s, const gguf_sample_opts *opts)
{
	static const char tok_nul[3] = {'a', '\0', 'b'};
	gw_buf	   *w = &s->w;
	uint64_t	n_kv = 0;
	uint64_t	end = 0;
	size_t		at_n_kv;

	memset(s, 0, sizeof(*s));
	s->alignment = opts->alignment ? opts->alignment : 32;
	s->n_tensors = opts->n_tensors == 0 ? SAMPLE_TENSORS : opts->n_tensors < 0 ? 0 : opts->n_tensors;

	gw_put(w, "GGUF", 4);
	s->at_version = w->len;
	gw_u32(w, opts->version ? opts->version : 3);
	s->at_tensor_count = w->len;
	gw_u64(w, (uint64_t) s->n_tensors);
	at_n_kv = s->at_kv_count = w->len;
	gw_u64(w, 0);				/* patched below */

	s->at_first_key = w->len;
	gw_key(w, "general.architecture", GW_STRING);
	gw_cstr(w, "llama");
	n_kv++;
	if (opts->alignment)
	{
		uint32_t	type = opts->alignment_type ? opts->alignment_type : GW_U32;

		gw_key(w, "general.alignment", type);
		s->at_alignment_value = w->len;
		if (type == GW_U64)
			gw_u64(w, opts->alignment);
		else
			gw_u32(w, opts->alignment);
		n_kv++;
	}
	gw_key(w, "test.u8", GW_U8);
	gw_u8(w, 200);
	gw_key(w, "test.i8", GW_I8);
	gw_u8(w, (uint8_t) -100);
	gw_key(w, "test.u16", GW_U16);
	gw_u16(w, 60000);
	gw_key(w, "test.i16", GW_I16);
	gw_u16(w, (uint16_t) -30000);
	gw_cstr(w, "test.u32");
	s->at_u32_type = w->len;
	gw_u32(w, GW_U32);
	gw_u32(w, 4000000000u);
	s->at_i32_key = w->len + 8;
	gw_key(w, "test.i32", GW_I32);
	gw_u32(w, (uint32_t) -2000000000);
	gw_key(w, "test.f32", GW_F32);
	gw_f32(w, 1.5f);
	gw_key(w, "test.bool", GW_BOOL);
	s->at_bool_value = w->len;
	gw_u8(w, 1);
	gw_key(w, "test.u64", GW_U64);
	gw_u64(w, 0x8000000000000005ull);
	gw_key(w, "test.i64", GW_I64);
	gw_u64(w, (uint64_t) INT64_MIN);
	gw_key(w, "test.f64", GW_F64);
	gw_f64(w, 3.141592653589793);
	gw_key(w, "test.string", GW_STRING);
	s->at_string_value = w->len;
	gw_cstr(w, "h\xc3\xa9llo");
	gw_key(w, "test.empty", GW_STRING);
	gw_cstr(w, "");
	n_kv += 13;

	gw_cstr(w, "tokenizer.ggml.tokens");
	gw_u32(w, GW_ARRAY);
	s->at_tokens_elem = w->len;
	gw_u32(w, GW_STRING);
	s->at_tokens_count = w->len;
	gw_u64(w, 5);
	gw_cstr(w, "<s>");
	gw_cstr(w, "hello");
	gw_cstr(w, "");
	gw_cstr(w, "w\xc3\xb6rld");
	gw_str(w, tok_nul, 3);
	gw_array(w, "tokenizer.ggml.scores", GW_F32, 3);
	gw_f32(w, 0.5f);
	gw_f32(w, -1.25f);
	gw_f32(w, 3.0f);
	gw_array(w, "tokenizer.ggml.token_type", GW_I32, 3);
	gw_u32(w, 1);
	gw_u32(w, (uint32_t) -2);
	gw_u32(w, 2147483647u);
	gw_cstr(w, "test.arr.u8");
	gw_u32(w, GW_ARRAY);
	gw_u32(w, GW_U8);
	s->at_u8s_count = w->len;
	gw_u64(w, 2);
	gw_u8(w, 0);
	gw_u8(w, 255);
	gw_array(w, "test.arr.i8", GW_I8, 2);
	gw_u8(w, (uint8_t) -128);
	gw_u8(w, 127);
	gw_array(w, "test.arr.u16", GW_U16, 1);
	gw_u16(w, 65535);
	gw_array(w, "test.arr.i16", GW_I16, 1);
	gw_u16(w, (uint16_t) -32768);
	gw_array(w, "test.arr.u32", GW_U32, 2);
	gw_u32(w, 4294967295u);
	gw_u32(w, 7);
	gw_array(w, "test.arr.bool", GW_BOOL, 3);
	s->at_bools = w->len;
	gw_u8(w, 1);
	gw_u8(w, 0);
	gw_u8(w, 1);
	gw_array(w, "test.arr.u64", GW_U64, 2);
	gw_u64(w, UINT64_MAX);
	gw_u64(w, 9);
	gw_array(w, "test.arr.i64", GW_I64, 2);
	gw_u64(w, (uint64_t) INT64_MIN);
	gw_u64(w, 5);
	gw_array(w, "test.arr.f64", GW_F64, 2);
	gw_f64(w, 1e300);
	gw_f64(w, -0.25);
	gw_array(w, "test.arr.empty", GW_U32, 0);
	gw_key(w, "llama.context_length", GW_U32);
	gw_u32(w, 8192);
	n_kv += 14;

	s->n_kv = n_kv;
	for (int i = 0; i < 8; i++)
		w->p[at_n_kv + i] = (uint8_t) (n_kv >> (8 * i));

	/* Tensor infos, offsets packed with alignment padding between. */
	for (int i = 0; i < s->n_tensors; i++)
	{
		end = (end + s->alignment - 1) / s->alignment * s->alignment;
		s->t[i].offset = end;
		end += sample_tensors[i].size;
		s->t[i].at_name = w->len;
		gw_cstr(w, sample_tensors[i].name);
		s->t[i].at_n_dims = w->len;
		gw_u32(w, sample_tensors[i].n_dims);
		s->t[i].at_dims = w->len;
		for (uint32_t d = 0; d < sample_tensors[i].n_dims; d++)
			gw_u64(w, sample_tensors[i].dims[d]);
		s->t[i].at_type = w->len;
		gw_u32(w, sample_tensors[i].type);
		s->t[i].at_offset = w->len;
		gw_u64(w, s->t[i].offset);
	}
	if (s->n_tensors == 0)
		return;

	gw_pad(w, s->alignment);
	s->data_offset = w->len;
	for (int i = 0; i < s->n_tensors; i++)
	{
		while (w->len < s->data_offset + s->t[i].offset)
			gw_u8(w, 0);
		for (size_t k = 0; k < sample_tensors[i].size; k++)
			gw_u8(w, sample_byte(i, k));
	}
}

static inline void
gguf_sample_free(gguf_sample *s)
{
	free(s->w.p);
	memset(&s->w, 0, sizeof(s->w));
}

#endif							/* TL_GGUF_WRITER_H */
