/*
 * test_blob.c -- the model container: CRC-32C, the exact byte layout,
 * round trips of values and parameter sets, and rejection of every kind
 * of damage (foreign magic, other versions, flipped bytes, truncation,
 * forged section tables with a valid checksum, shape mismatches, NaN).
 *
 * Every blob under attack is copied into a heap buffer of exactly its
 * length, so the sanitizers catch any read past its end.
 */
#include "unit.h"
#include "tl_blob.h"
#include "tl_optim.h"

#define TAG_META TL_BLOB_TAG('M', 'E', 'T', 'A')
#define TAG_EMPTY TL_BLOB_TAG('E', 'M', 'P', 'T')
#define TEST_KIND 0x4B54u		/* an arbitrary model kind code */

/* Assert the last core message contains a fragment. */
#define ASSERT_MESSAGE_HAS(fragment) \
	do { if (!strstr(tl_last_error(), (fragment))) \
			fail_msg("message \"%s\" lacks \"%s\"", tl_last_error(), (fragment)); \
	} while (0)

/* Recompute the trailer CRC after a deliberate edit, so only structure checks remain. */
static void
reseal(uint8_t *blob, size_t len)
{
	put_le32(blob + len - 8, tl_crc32c(blob, len - 8));
}

/* Bit-at-a-time CRC-32C: the reference the table is checked against. */
static uint32_t
crc32c_bitwise(const uint8_t *p, size_t len)
{
	uint32_t	crc = 0xFFFFFFFFu;

	for (size_t i = 0; i < len; i++)
	{
		crc ^= p[i];
		for (int k = 0; k < 8; k++)
			crc = (crc & 1) ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
	}
	return crc ^ 0xFFFFFFFFu;
}

/* A parameter set of several ranks, declared identically by every caller. */
static void
declare_model(tl_params *ps, int64_t wq_extent, uint64_t seed)
{
	tl_rng		rng;

	memset(ps, 0, sizeof(*ps));
	ASSERT_OK(tl_params_declare(ps, "emb", 2, TL_SHAPE(10, 8), TL_INIT_NORMAL, 0.5f, true, NULL));
	ASSERT_OK(tl_params_declare(ps, "enc0.wq", 2, TL_SHAPE(wq_extent, wq_extent), TL_INIT_NORMAL, 0.5f, true, NULL));
	ASSERT_OK(tl_params_declare(ps, "enc0.bias", 1, TL_SHAPE(8), TL_INIT_NORMAL, 0.5f, false, NULL));
	ASSERT_OK(tl_params_declare(ps, "conv", 4, TL_SHAPE(2, 3, 4, 5), TL_INIT_NORMAL, 0.5f, true, NULL));
	ASSERT_OK(tl_params_declare(ps, "gain", 1, TL_SHAPE(1), TL_INIT_ONES, 0, false, NULL));
	tl_rng_seed(&rng, seed);
	ASSERT_OK(tl_params_alloc(ps, &rng));
}

/* A complete blob: a META section of mixed values and the parameters. */
static void
build_model_blob(const tl_params *ps, uint8_t **blob, size_t *len)
{
	tl_blob_writer w;

	ASSERT_OK(tl_blob_writer_init(&w, TEST_KIND));
	ASSERT_OK(tl_blob_begin_section(&w, TAG_META));
	ASSERT_OK(tl_blob_put_string(&w, "kt-transformer", 14));
	ASSERT_OK(tl_blob_put_u32(&w, 3));
	ASSERT_OK(tl_blob_put_f32(&w, 0.25f));
	ASSERT_OK(tl_blob_end_section(&w));
	ASSERT_OK(tl_blob_put_params(&w, ps));
	ASSERT_OK(tl_blob_finish(&w, blob, len));
	tl_blob_writer_free(&w);
}

static void
test_crc32c(void **state)
{
	uint8_t		buf[1000];
	tl_rng		rng;

	assert_int_equal(tl_crc32c("123456789", 9), 0xE3069283u);
	assert_int_equal(tl_crc32c("", 0), 0u);
	tl_rng_seed(&rng, 5);
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t) tl_rng_next(&rng);
	for (size_t n = 0; n <= sizeof(buf); n += 37)
		assert_int_equal(tl_crc32c(buf, n), crc32c_bitwise(buf, n));
}

/* The exact bytes of a tiny blob, built by hand from the documented layout. */
static void
test_layout_bytes(void **state)
{
	tl_blob_writer w;
	uint8_t    *blob;
	size_t		len;
	uint8_t		expect[56] = {
		'T', 'U', 'T', 'O', 'R', 'L', 'L', 'M',
		1, 0, 0, 0,				/* version */
		4, 3, 2, 1,				/* kind 0x01020304 */
		1, 0, 0, 0,				/* one section */
		0, 0, 0, 0,				/* reserved */
		'A', 'B', 'C', 'D', 0, 0, 0, 0,
		5, 0, 0, 0, 0, 0, 0, 0,	/* payload length */
		0xEF, 0xBE, 0xAD, 0xDE, 0x7F, 0, 0, 0,	/* payload and 3 bytes of padding */
		0, 0, 0, 0, 'T', 'E', 'N', 'D'	/* CRC filled in below */
	};

	put_le32(expect + 48, crc32c_bitwise(expect, 48));
	ASSERT_OK(tl_blob_writer_init(&w, 0x01020304u));
	ASSERT_OK(tl_blob_begin_section(&w, TL_BLOB_TAG('A', 'B', 'C', 'D')));
	ASSERT_OK(tl_blob_put_u32(&w, 0xDEADBEEFu));
	ASSERT_OK(tl_blob_put_bytes(&w, "\x7f", 1));
	ASSERT_OK(tl_blob_end_section(&w));
	ASSERT_OK(tl_blob_finish(&w, &blob, &len));
	tl_blob_writer_free(&w);
	assert_int_equal(len, sizeof(expect));
	assert_memory_equal(blob, expect, sizeof(expect));
	tl_free(blob);
}

static void
test_values_round_trip(void **state)
{
	tl_blob_writer w;
	tl_blob_reader r;
	tl_blob_cursor c;
	uint8_t    *blob,
			   *exact;
	size_t		len,
				n;
	uint32_t	kind,
				u32;
	uint64_t	u64;
	int32_t		i32;
	int64_t		i64;
	float		f,
				floats[5] = {1.5f, -0.0f, 1e-42f, INFINITY, -3.25e30f},
				back[5];
	const char *s;
	const uint8_t *bytes;

	ASSERT_OK(tl_blob_writer_init(&w, TEST_KIND));
	ASSERT_OK(tl_blob_begin_section(&w, TAG_META));
	ASSERT_OK(tl_blob_put_u32(&w, 0xFFFFFFFFu));
	ASSERT_OK(tl_blob_put_u64(&w, 0x0123456789ABCDEFull));
	ASSERT_OK(tl_blob_put_i32(&w, -5));
	ASSERT_OK(tl_blob_put_i64(&w, INT64_MIN));
	ASSERT_OK(tl_blob_put_f32(&w, -2.5f));
	ASSERT_OK(tl_blob_put_string(&w, "student", 7));
	ASSERT_OK(tl_blob_put_string(&w, NULL, 0));
	ASSERT_OK(tl_blob_put_bytes(&w, "\x00\x01\x02", 3));
	ASSERT_OK(tl_blob_put_f32_array(&w, floats, 5));
	ASSERT_OK(tl_blob_end_section(&w));
	ASSERT_OK(tl_blob_begin_section(&w, TAG_EMPTY));
	ASSERT_OK(tl_blob_end_section(&w));
	ASSERT_OK(tl_blob_finish(&w, &blob, &len));
	tl_blob_writer_free(&w);
	assert_int_equal(len % 8, 0);

	exact = copy_exact(blob, len);
	tl_free(blob);
	ASSERT_OK(tl_blob_open(&r, exact, len, &kind));
	assert_int_equal(kind, TEST_KIND);
	assert_int_equal(r.section_count, 2);
	assert_true(tl_blob_has_section(&r, TAG_EMPTY));
	assert_false(tl_blob_has_section(&r, TL_BLOB_TAG_PARAMS));

	ASSERT_OK(tl_blob_find_section(&r, TAG_META, &c));
	ASSERT_OK(tl_blob_get_u32(&c, &u32));
	assert_int_equal(u32, 0xFFFFFFFFu);
	ASSERT_OK(tl_blob_get_u64(&c, &u64));
	assert_true(u64 == 0x0123456789ABCDEFull);
	ASSERT_OK(tl_blob_get_i32(&c, &i32));
	assert_int_equal(i32, -5);
	ASSERT_OK(tl_blob_get_i64(&c, &i64));
	assert_true(i64 == INT64_MIN);
	ASSERT_OK(tl_blob_get_f32(&c, &f));
	assert_true(f == -2.5f);
	ASSERT_OK(tl_blob_get_string(&c, &s, &n));
	assert_int_equal(n, 7);
	assert_memory_equal(s, "student", 7);
	ASSERT_OK(tl_blob_get_string(&c, &s, &n));
	assert_int_equal(n, 0);
	ASSERT_OK(tl_blob_get_bytes(&c, 3, &bytes));
	assert_memory_equal(bytes, "\x00\x01\x02", 3);
	assert_int_equal(tl_blob_cursor_remaining(&c), 20);
	ASSERT_OK(tl_blob_get_f32_array(&c, back, 5));
	assert_memory_equal(back, floats, sizeof(floats));	/* bit exact: -0, denormal, inf */
	ASSERT_OK(tl_blob_expect_end(&c));

	ASSERT_OK(tl_blob_find_section(&r, TAG_EMPTY, &c));
	assert_int_equal(tl_blob_cursor_remaining(&c), 0);
	ASSERT_FAILS(TL_ERR_ARG, tl_blob_get_u32(&c, &u32));

	ASSERT_FAILS(TL_ERR_ARG, tl_blob_find_section(&r, TL_BLOB_TAG_PARAMS, &c));
	assert_string_equal(tl_last_error(), "section PARM is missing from the model weights");
	free(exact);
}

static void
test_params_round_trip(void **state)
{
	tl_params	saved,
				loaded;
	tl_blob_reader r;
	tl_blob_cursor c;
	uint8_t    *blob;
	size_t		len;
	const char *s;
	size_t		n;

	declare_model(&saved, 8, 1);
	declare_model(&loaded, 8, 2);
	assert_memory_not_equal(saved.value, loaded.value, sizeof(float) * saved.total);
	build_model_blob(&saved, &blob, &len);
	ASSERT_OK(tl_blob_open(&r, blob, len, NULL));
	ASSERT_OK(tl_blob_get_params(&r, &loaded));
	assert_memory_equal(saved.value, loaded.value, sizeof(float) * saved.total);
	/* the other section is still readable next to PARM */
	ASSERT_OK(tl_blob_find_section(&r, TAG_META, &c));
	ASSERT_OK(tl_blob_get_string(&c, &s, &n));
	assert_memory_equal(s, "kt-transformer", 14);
	tl_free(blob);
	tl_params_free(&saved);
	tl_params_free(&loaded);
}

static void
test_foreign_magic_and_version(void **state)
{
	tl_params	ps;
	tl_blob_reader r;
	uint8_t    *blob;
	size_t		len;
	uint32_t	kind = 99;

	declare_model(&ps, 8, 1);
	build_model_blob(&ps, &blob, &len);

	blob[3] = 'X';
	ASSERT_FAILS(TL_ERR_ARG, tl_blob_open(&r, blob, len, &kind));
	ASSERT_MESSAGE_HAS("bad magic");
	assert_int_equal(kind, 0);
	blob[3] = 'O';

	put_le32(blob + 8, 2);
	ASSERT_FAILS(TL_ERR_ARG, tl_blob_open(&r, blob, len, &kind));
	assert_string_equal(tl_last_error(),
						"model weights have format version 2, but this build reads version 1");
	reseal(blob, len);			/* a well-formed blob of another version */
	ASSERT_FAILS(TL_ERR_ARG, tl_blob_open(&r, blob, len, &kind));
	ASSERT_MESSAGE_HAS("format version 2");
	put_le32(blob + 8, 1);
	reseal(blob, len);
	ASSERT_OK(tl_blob_open(&r, blob, len, &kind));
	assert_int_equal(kind, TEST_KIND);

	ASSERT_FAILS(TL_ERR_ARG, tl_blob_open(&r, NULL, 0, &kind));
	ASSERT_FAILS(TL_ERR_ARG, tl_blob_open(&r, "PNG", 3, &kind));
	ASSERT_MESSAGE_HAS("bad magic");
	tl_free(blob);
	tl_params_free(&ps);
}

/* Any single changed byte anywhere must be caught (CRC-32C finds every such error). */
static void
test_flipped_bytes(void **state)
{
	static const uint8_t flips[] = {0x01, 0x80, 0xFF, 0x5A};
	tl_params	ps;
	tl_blob_reader r;
	uint8_t    *blob,
			   *exact;
	size_t		len;
	int			checksum_failures = 0;

	declare_model(&ps, 8, 1);
	build_model_blob(&ps, &blob, &len);
	exact = copy_exact(blob, len);
	for (size_t pos = 0; pos < len; pos++)
	{
		for (size_t f = 0; f < sizeof(flips); f++)
		{
			exact[pos] ^= flips[f];
			ASSERT_FAILS(TL_ERR_ARG, tl_blob_open(&r, exact, len, NULL));
			if (strcmp(tl_last_error(), "model weights fail their checksum") == 0)
				checksum_failures++;
			exact[pos] ^= flips[f];
		}
	}
	ASSERT_OK(tl_blob_open(&r, exact, len, NULL));
	/* all but magic, version, end marker and the odd CRC byte are checksum failures */
	assert_true(checksum_failures >= (int) (len - 24) * 4);
	print_message("  %zu bytes x %zu flips rejected (%d by checksum)\n",
				  len, sizeof(flips), checksum_failures);
	free(exact);
	tl_free(blob);
	tl_params_free(&ps);
}

static void
test_truncation_and_extension(void **state)
{
	tl_params	ps;
	tl_blob_reader r;
	uint8_t    *blob,
			   *cut,
			   *longer;
	size_t		len;

	declare_model(&ps, 8, 1);
	build_model_blob(&ps, &blob, &len);
	for (size_t keep = 0; keep < len; keep++)
	{
		cut = copy_exact(blob, keep);
		ASSERT_FAILS(TL_ERR_ARG, tl_blob_open(&r, cut, keep, NULL));
		assert_null(r.data);
		free(cut);
	}
	longer = malloc(len + 8);
	assert_non_null(longer);
	memcpy(longer, blob, len);
	memcpy(longer + len, "TENDTEND", 8);
	ASSERT_FAILS(TL_ERR_ARG, tl_blob_open(&r, longer, len + 1, NULL));
	ASSERT_FAILS(TL_ERR_ARG, tl_blob_open(&r, longer, len + 8, NULL));
	free(longer);
	tl_free(blob);
	tl_params_free(&ps);
}

/*
 * Forged section tables with a recomputed CRC: a length past the end, a
 * wrong section count, nonzero padding or reserved fields.
 */
static void
test_forged_section_table(void **state)
{
	const uint64_t bad_lengths[] = {8, 16, 1000000, (uint64_t) 1 << 63, UINT64_MAX};
	tl_blob_writer w;
	tl_blob_reader r;
	uint8_t    *blob,
			   *exact;
	size_t		len;
	uint64_t	true_length;

	/* header 24 | 'META' section: 16 + 5 payload + 3 padding | trailer 8 */
	ASSERT_OK(tl_blob_writer_init(&w, TEST_KIND));
	ASSERT_OK(tl_blob_begin_section(&w, TAG_META));
	ASSERT_OK(tl_blob_put_u32(&w, 7));
	ASSERT_OK(tl_blob_put_bytes(&w, "!", 1));
	ASSERT_OK(tl_blob_end_section(&w));
	ASSERT_OK(tl_blob_finish(&w, &blob, &len));
	tl_blob_writer_free(&w);
	assert_int_equal(len, 56);
	exact = copy_exact(blob, len);
	tl_free(blob);
	true_length = 5;

	for (size_t i = 0; i < sizeof(bad_lengths) / sizeof(bad_lengths[0]); i++)
	{
		put_le64(exact + 32, true_length + bad_lengths[i]);
		reseal(exact, len);
		ASSERT_FAILS(TL_ERR_ARG, tl_blob_open(&r, exact, len, NULL));
	}
	put_le64(exact + 32, true_length + 8);
	reseal(exact, len);
	ASSERT_FAILS(TL_ERR_ARG, tl_blob_open(&r, exact, len, NULL));
	assert_string_equal(tl_last_error(),
						"section META claims 13 bytes but only 8 remain in the model weights");
	put_le64(exact + 32, 4);	/* shorter: the padding check sees a payload byte */
	reseal(exact, len);
	ASSERT_FAILS(TL_ERR_ARG, tl_blob_open(&r, exact, len, NULL));
	put_le64(exact + 32, true_length);
	reseal(exact, len);
	ASSERT_OK(tl_blob_open(&r, exact, len, NULL));

	put_le32(exact + 16, 2);	/* one more section than there is */
	reseal(exact, len);
	ASSERT_FAILS(TL_ERR_ARG, tl_blob_open(&r, exact, len, NULL));
	ASSERT_MESSAGE_HAS("declare 2 sections but hold only 1");
	put_le32(exact + 16, 0);	/* one fewer: the section is extra bytes */
	reseal(exact, len);
	ASSERT_FAILS(TL_ERR_ARG, tl_blob_open(&r, exact, len, NULL));
	ASSERT_MESSAGE_HAS("24 more bytes after the last");
	put_le32(exact + 16, UINT32_MAX);
	reseal(exact, len);
	ASSERT_FAILS(TL_ERR_ARG, tl_blob_open(&r, exact, len, NULL));
	put_le32(exact + 16, 1);

	exact[46] = 1;				/* padding */
	reseal(exact, len);
	ASSERT_FAILS(TL_ERR_ARG, tl_blob_open(&r, exact, len, NULL));
	ASSERT_MESSAGE_HAS("nonzero padding");
	exact[46] = 0;
	exact[28] = 1;				/* section reserved */
	reseal(exact, len);
	ASSERT_FAILS(TL_ERR_ARG, tl_blob_open(&r, exact, len, NULL));
	exact[28] = 0;
	exact[20] = 1;				/* header reserved */
	reseal(exact, len);
	ASSERT_FAILS(TL_ERR_ARG, tl_blob_open(&r, exact, len, NULL));
	exact[20] = 0;
	reseal(exact, len);
	ASSERT_OK(tl_blob_open(&r, exact, len, NULL));
	free(exact);
}

/* Lengths inside a valid section that claim more than it holds. */
static void
test_hostile_lengths_in_section(void **state)
{
	tl_blob_writer w;
	tl_blob_reader r;
	tl_blob_cursor c,
				before;
	uint8_t    *blob,
			   *exact;
	size_t		len,
				n;
	const char *s;
	const uint8_t *bytes;
	float		sink[4];

	ASSERT_OK(tl_blob_writer_init(&w, TEST_KIND));
	ASSERT_OK(tl_blob_begin_section(&w, TAG_META));
	ASSERT_OK(tl_blob_put_string(&w, "abcdefgh", 8));
	ASSERT_OK(tl_blob_end_section(&w));
	ASSERT_OK(tl_blob_finish(&w, &blob, &len));
	tl_blob_writer_free(&w);
	exact = copy_exact(blob, len);
	tl_free(blob);

	put_le32(exact + 40, 0xFFFFFFFFu);	/* the string's length field */
	reseal(exact, len);
	ASSERT_OK(tl_blob_open(&r, exact, len, NULL));
	ASSERT_OK(tl_blob_find_section(&r, TAG_META, &c));
	before = c;
	ASSERT_FAILS(TL_ERR_ARG, tl_blob_get_string(&c, &s, &n));
	assert_string_equal(tl_last_error(),
						"model weights are truncated in section META: 4294967295 bytes needed, 8 remain");
	assert_ptr_equal(c.pos, before.pos);	/* a failed getter does not move */
	assert_int_equal(c.remaining, before.remaining);

	/* counts whose byte size wraps around */
	ASSERT_FAILS(TL_ERR_ARG, tl_blob_get_f32_array(&c, sink, SIZE_MAX));
	ASSERT_FAILS(TL_ERR_ARG, tl_blob_get_f32_array(&c, sink, SIZE_MAX / 4 + 1));
	ASSERT_FAILS(TL_ERR_ARG, tl_blob_get_f32_array(&c, sink, (SIZE_MAX >> 2) + 2));
	ASSERT_MESSAGE_HAS("truncated in section META");
	ASSERT_FAILS(TL_ERR_ARG, tl_blob_get_bytes(&c, SIZE_MAX, &bytes));
	ASSERT_FAILS(TL_ERR_ARG, tl_blob_get_f32_array(&c, sink, 4));
	ASSERT_OK(tl_blob_get_f32_array(&c, sink, 3));
	assert_int_equal(tl_blob_cursor_remaining(&c), 0);
	free(exact);
}

static void
test_getter_past_section_end(void **state)
{
	tl_blob_writer w;
	tl_blob_reader r;
	tl_blob_cursor c;
	uint8_t    *blob,
			   *exact;
	size_t		len;
	uint32_t	u32;
	uint64_t	u64;
	int64_t		i64;

	ASSERT_OK(tl_blob_writer_init(&w, TEST_KIND));
	ASSERT_OK(tl_blob_begin_section(&w, TAG_META));
	ASSERT_OK(tl_blob_put_u32(&w, 11));
	ASSERT_OK(tl_blob_put_u32(&w, 12));
	ASSERT_OK(tl_blob_end_section(&w));
	ASSERT_OK(tl_blob_begin_section(&w, TAG_EMPTY));	/* bytes follow, but not META's */
	ASSERT_OK(tl_blob_put_u64(&w, 13));
	ASSERT_OK(tl_blob_end_section(&w));
	ASSERT_OK(tl_blob_finish(&w, &blob, &len));
	tl_blob_writer_free(&w);
	exact = copy_exact(blob, len);
	tl_free(blob);

	ASSERT_OK(tl_blob_open(&r, exact, len, NULL));
	ASSERT_OK(tl_blob_find_section(&r, TAG_META, &c));
	ASSERT_OK(tl_blob_get_u32(&c, &u32));
	assert_int_equal(u32, 11);
	ASSERT_FAILS(TL_ERR_ARG, tl_blob_expect_end(&c));
	assert_string_equal(tl_last_error(),
						"section META of the model weights has 4 unexpected bytes at its end");
	ASSERT_FAILS(TL_ERR_ARG, tl_blob_get_u64(&c, &u64));
	assert_string_equal(tl_last_error(),
						"model weights are truncated in section META: 8 bytes needed, 4 remain");
	ASSERT_FAILS(TL_ERR_ARG, tl_blob_get_i64(&c, &i64));
	ASSERT_OK(tl_blob_get_u32(&c, &u32));
	assert_int_equal(u32, 12);
	ASSERT_FAILS(TL_ERR_ARG, tl_blob_get_u32(&c, &u32));
	ASSERT_OK(tl_blob_expect_end(&c));
	free(exact);
}

/* A model whose declaration differs from the saved one. */
static void
test_params_mismatch(void **state)
{
	tl_params	saved,
				other;
	tl_blob_reader r;
	uint8_t    *blob;
	size_t		len;
	float	   *before;

	declare_model(&saved, 16, 1);
	build_model_blob(&saved, &blob, &len);
	ASSERT_OK(tl_blob_open(&r, blob, len, NULL));

	declare_model(&other, 8, 2);
	before = malloc(sizeof(float) * other.total);
	assert_non_null(before);
	memcpy(before, other.value, sizeof(float) * other.total);
	ASSERT_FAILS(TL_ERR_ARG, tl_blob_get_params(&r, &other));
	assert_string_equal(tl_last_error(),
						"parameter 1 is \"enc0.wq\" (16 x 16) in the weights but \"enc0.wq\" (8 x 8) in the model");
	assert_memory_equal(before, other.value, sizeof(float) * other.total);
	tl_params_free(&other);
	free(before);

	/* one more parameter */
	ASSERT_OK(tl_params_declare(&other, "emb", 2, TL_SHAPE(10, 8), TL_INIT_ZEROS, 0, true, NULL));
	ASSERT_OK(tl_params_declare(&other, "enc0.wq", 2, TL_SHAPE(16, 16), TL_INIT_ZEROS, 0, true, NULL));
	ASSERT_OK(tl_params_declare(&other, "enc0.bias", 1, TL_SHAPE(8), TL_INIT_ZEROS, 0, false, NULL));
	ASSERT_OK(tl_params_declare(&other, "conv", 4, TL_SHAPE(2, 3, 4, 5), TL_INIT_ZEROS, 0, true, NULL));
	ASSERT_OK(tl_params_declare(&other, "gain", 1, TL_SHAPE(1), TL_INIT_ZEROS, 0, false, NULL));
	ASSERT_OK(tl_params_declare(&other, "extra", 1, TL_SHAPE(1), TL_INIT_ZEROS, 0, false, NULL));
	{
		tl_rng		rng;

		tl_rng_seed(&rng, 3);
		ASSERT_OK(tl_params_alloc(&other, &rng));
	}
	ASSERT_FAILS(TL_ERR_ARG, tl_blob_get_params(&r, &other));
	assert_string_equal(tl_last_error(), "the weights hold 5 parameters but the model declares 6");
	tl_params_free(&other);

	/* a renamed parameter, same shapes */
	{
		tl_rng		rng;

		ASSERT_OK(tl_params_declare(&other, "emb", 2, TL_SHAPE(10, 8), TL_INIT_ZEROS, 0, true, NULL));
		ASSERT_OK(tl_params_declare(&other, "enc0.wk", 2, TL_SHAPE(16, 16), TL_INIT_ZEROS, 0, true, NULL));
		ASSERT_OK(tl_params_declare(&other, "enc0.bias", 1, TL_SHAPE(8), TL_INIT_ZEROS, 0, false, NULL));
		ASSERT_OK(tl_params_declare(&other, "conv", 3, TL_SHAPE(6, 4, 5), TL_INIT_ZEROS, 0, true, NULL));
		ASSERT_OK(tl_params_declare(&other, "gain", 1, TL_SHAPE(1), TL_INIT_ZEROS, 0, false, NULL));
		tl_rng_seed(&rng, 3);
		ASSERT_OK(tl_params_alloc(&other, &rng));
	}
	ASSERT_FAILS(TL_ERR_ARG, tl_blob_get_params(&r, &other));
	assert_string_equal(tl_last_error(),
						"parameter 1 is \"enc0.wq\" (16 x 16) in the weights but \"enc0.wk\" (16 x 16) in the model");
	/* same total, different rank: caught even though the values would fit */
	memcpy(other.items[1].name, "enc0.wq", 8);
	ASSERT_FAILS(TL_ERR_ARG, tl_blob_get_params(&r, &other));
	assert_string_equal(tl_last_error(),
						"parameter 3 is \"conv\" (2 x 3 x 4 x 5) in the weights but \"conv\" (6 x 4 x 5) in the model");
	tl_params_free(&other);

	/* an unallocated set is refused */
	memset(&other, 0, sizeof(other));
	ASSERT_FAILS(TL_ERR_ARG, tl_blob_get_params(&r, &other));
	tl_free(blob);
	tl_params_free(&saved);
}

/* Non-finite values written by a broken training run, with a valid CRC. */
static void
test_params_non_finite(void **state)
{
	tl_params	saved,
				loaded;
	tl_blob_reader r;
	uint8_t    *blob;
	size_t		len;
	float	   *before;
	const float bad[] = {NAN, INFINITY, -INFINITY};

	declare_model(&saved, 8, 1);
	declare_model(&loaded, 8, 2);
	before = malloc(sizeof(float) * loaded.total);
	assert_non_null(before);
	memcpy(before, loaded.value, sizeof(float) * loaded.total);
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++)
	{
		float		kept = saved.value[80 + 5];

		saved.value[80 + 5] = bad[k];	/* enc0.wq, element 5 */
		build_model_blob(&saved, &blob, &len);
		saved.value[80 + 5] = kept;
		ASSERT_OK(tl_blob_open(&r, blob, len, NULL));
		ASSERT_FAILS(TL_ERR_ARG, tl_blob_get_params(&r, &loaded));
		assert_string_equal(tl_last_error(), k == 0 ?
							"parameter 1 (\"enc0.wq\") holds NaN at element 5 in the weights" :
							"parameter 1 (\"enc0.wq\") holds an infinity at element 5 in the weights");
		assert_memory_equal(before, loaded.value, sizeof(float) * loaded.total);
		tl_free(blob);
	}
	free(before);
	tl_params_free(&saved);
	tl_params_free(&loaded);
}

/* Hand-made PARM sections with a valid CRC but a wrong inner structure. */
static void
test_params_bad_section(void **state)
{
	tl_params	ps = {0};
	tl_blob_writer w;
	tl_blob_reader r;
	tl_rng		rng;
	uint8_t    *blob;
	size_t		len;
	const float values[5] = {1, 2, 3, 4, 5};

	ASSERT_OK(tl_params_declare(&ps, "x", 1, TL_SHAPE(4), TL_INIT_ZEROS, 0, false, NULL));
	tl_rng_seed(&rng, 1);
	ASSERT_OK(tl_params_alloc(&ps, &rng));

	for (int variant = 0; variant < 5; variant++)
	{
		ASSERT_OK(tl_blob_writer_init(&w, TEST_KIND));
		ASSERT_OK(tl_blob_begin_section(&w, TL_BLOB_TAG_PARAMS));
		ASSERT_OK(tl_blob_put_u32(&w, 1));
		ASSERT_OK(tl_blob_put_string(&w, variant == 3 ? "x\n\"y" : "x", variant == 3 ? 4 : 1));
		ASSERT_OK(tl_blob_put_u32(&w, variant == 0 ? 9 : 1));
		ASSERT_OK(tl_blob_put_i64(&w, 4));
		ASSERT_OK(tl_blob_put_f32_array(&w, values, variant == 1 ? 3 : variant == 2 ? 5 : 4));
		ASSERT_OK(tl_blob_end_section(&w));
		ASSERT_OK(tl_blob_finish(&w, &blob, &len));
		tl_blob_writer_free(&w);
		ASSERT_OK(tl_blob_open(&r, blob, len, NULL));
		if (variant == 4)
		{
			ASSERT_OK(tl_blob_get_params(&r, &ps));
			assert_memory_equal(ps.value, values, sizeof(float) * 4);
		}
		else
			ASSERT_FAILS(TL_ERR_ARG, tl_blob_get_params(&r, &ps));
		switch (variant)
		{
			case 0:
				assert_string_equal(tl_last_error(),
									"parameter 0 is \"x\" (rank 9) in the weights but \"x\" (4) in the model");
				break;
			case 1:
				ASSERT_MESSAGE_HAS("truncated in section PARM");
				break;
			case 2:
				ASSERT_MESSAGE_HAS("section PARM of the model weights has 4 unexpected bytes");
				break;
			case 3:
				ASSERT_MESSAGE_HAS("\"x??y\" (4) in the weights");	/* made printable */
				break;
		}
		tl_free(blob);
	}
	tl_params_free(&ps);
}

/*
 * Random damage to the body with the CRC recomputed: whatever the
 * structure checks let through, reading it must not crash or overrun.
 */
static void
test_random_forgeries(void **state)
{
	tl_params	saved,
				loaded;
	tl_blob_reader r;
	tl_rng		rng;
	uint8_t    *blob,
			   *exact;
	size_t		len;
	int			opened = 0,
				loaded_ok = 0;

	declare_model(&saved, 8, 1);
	declare_model(&loaded, 8, 2);
	build_model_blob(&saved, &blob, &len);
	tl_rng_seed(&rng, 77);
	for (int trial = 0; trial < 3000; trial++)
	{
		int			edits = 1 + (int) tl_rng_below(&rng, 4);
		tl_status	rc;

		exact = copy_exact(blob, len);
		for (int e = 0; e < edits; e++)
		{
			size_t		pos = 16 + tl_rng_below(&rng, 200);	/* the section table and names */

			exact[pos] = (uint8_t) (tl_rng_below(&rng, 3) == 0 ? 0xFF : tl_rng_next(&rng));
		}
		reseal(exact, len);
		rc = tl_blob_open(&r, exact, len, NULL);
		if (rc == TL_OK)
		{
			opened++;
			rc = tl_blob_get_params(&r, &loaded);
			if (rc == TL_OK)
				loaded_ok++;
		}
		assert_true(rc == TL_OK || rc == TL_ERR_ARG);
		free(exact);
	}
	print_message("  3000 forgeries: %d opened, %d loaded\n", opened, loaded_ok);
	tl_free(blob);
	tl_params_free(&saved);
	tl_params_free(&loaded);
}

static void
test_writer_misuse_is_sticky(void **state)
{
	tl_blob_writer w;
	uint8_t    *blob = (uint8_t *) &w;
	size_t		len = 1;
	char		first[256];
	float		one = 1.0f;

	ASSERT_OK(tl_blob_writer_init(&w, TEST_KIND));
	ASSERT_FAILS(TL_ERR_ARG, tl_blob_put_u32(&w, 1));	/* outside a section */
	snprintf(first, sizeof(first), "%s", tl_last_error());
	ASSERT_FAILS(TL_ERR_ARG, tl_blob_begin_section(&w, TAG_META));
	assert_string_equal(tl_last_error(), first);
	ASSERT_FAILS(TL_ERR_ARG, tl_blob_finish(&w, &blob, &len));
	assert_null(blob);
	assert_int_equal(len, 0);
	tl_blob_writer_free(&w);

	ASSERT_OK(tl_blob_writer_init(&w, TEST_KIND));
	ASSERT_OK(tl_blob_begin_section(&w, TAG_META));
	ASSERT_FAILS(TL_ERR_ARG, tl_blob_begin_section(&w, TAG_EMPTY));
	assert_string_equal(tl_last_error(), "section EMPT begun while section META is open");
	tl_blob_writer_free(&w);

	ASSERT_OK(tl_blob_writer_init(&w, TEST_KIND));
	ASSERT_FAILS(TL_ERR_ARG, tl_blob_end_section(&w));
	tl_blob_writer_free(&w);

	ASSERT_OK(tl_blob_writer_init(&w, TEST_KIND));
	ASSERT_OK(tl_blob_begin_section(&w, TAG_META));
	ASSERT_FAILS(TL_ERR_ARG, tl_blob_finish(&w, &blob, &len));
	ASSERT_MESSAGE_HAS("still open");
	tl_blob_writer_free(&w);

	/* sizes beyond a bytea are refused before anything is read or allocated */
	ASSERT_OK(tl_blob_writer_init(&w, TEST_KIND));
	ASSERT_OK(tl_blob_begin_section(&w, TAG_META));
	ASSERT_FAILS(TL_ERR_ARG, tl_blob_put_bytes(&w, &one, TL_BLOB_MAX_SIZE));
	ASSERT_MESSAGE_HAS("the most a bytea holds");
	ASSERT_FAILS(TL_ERR_ARG, tl_blob_put_f32(&w, 1.0f));
	ASSERT_FAILS(TL_ERR_ARG, tl_blob_end_section(&w));
	tl_blob_writer_free(&w);
	ASSERT_OK(tl_blob_writer_init(&w, TEST_KIND));
	ASSERT_OK(tl_blob_begin_section(&w, TAG_META));
	ASSERT_FAILS(TL_ERR_ARG, tl_blob_put_f32_array(&w, &one, SIZE_MAX));
	tl_blob_writer_free(&w);
	ASSERT_OK(tl_blob_writer_init(&w, TEST_KIND));
	ASSERT_OK(tl_blob_begin_section(&w, TAG_META));
	ASSERT_FAILS(TL_ERR_ARG, tl_blob_put_string(&w, "x", (size_t) UINT32_MAX + 1));
	tl_blob_writer_free(&w);

	/* a finished writer is spent */
	ASSERT_OK(tl_blob_writer_init(&w, TEST_KIND));
	ASSERT_OK(tl_blob_finish(&w, &blob, &len));
	assert_int_equal(len, 32);
	ASSERT_FAILS(TL_ERR_ARG, tl_blob_begin_section(&w, TAG_META));
	ASSERT_MESSAGE_HAS("already finished");
	tl_blob_writer_free(&w);
	tl_free(blob);
}

/* An allocator that fails from the n-th call on. */
static int	alloc_calls,
			alloc_fail_from;

static void *
failing_alloc(size_t bytes, void *arg)
{
	if (alloc_calls++ >= alloc_fail_from)
		return NULL;
	return calloc(1, bytes);
}

static void
failing_release(void *ptr, void *arg)
{
	free(ptr);
}

/* Every allocation failure surfaces as TL_ERR_NOMEM at finish, with nothing leaked. */
static void
test_writer_out_of_memory(void **state)
{
	const tl_allocator failing = {failing_alloc, failing_release, NULL};
	float		chunk[100];
	int			failures = 0;

	for (int i = 0; i < 100; i++)
		chunk[i] = (float) i;
	for (alloc_fail_from = 0;; alloc_fail_from++)
	{
		tl_blob_writer w;
		uint8_t    *blob;
		size_t		len;
		tl_status	rc;

		alloc_calls = 0;
		tl_set_allocator(&failing);
		tl_blob_writer_init(&w, TEST_KIND);
		tl_blob_begin_section(&w, TAG_META);
		for (int k = 0; k < 50; k++)
		{
			tl_blob_put_string(&w, "layer", 5);
			tl_blob_put_f32_array(&w, chunk, 100);
		}
		tl_blob_end_section(&w);
		rc = tl_blob_finish(&w, &blob, &len);
		tl_blob_writer_free(&w);
		tl_set_allocator(NULL);
		if (rc == TL_OK)
		{
			assert_int_equal(len, 24 + 16 + 50 * (4 + 5 + 400) + 6 + 8);
			free(blob);			/* came from failing_alloc's calloc */
			break;
		}
		assert_int_equal(rc, TL_ERR_NOMEM);
		ASSERT_MESSAGE_HAS("cannot grow model weights");
		failures++;
	}
	print_message("  %d allocation failures handled\n", failures);
	assert_true(failures >= 5);	/* 256 bytes doubled up to 32 KiB */
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crc32c),
		cmocka_unit_test(test_layout_bytes),
		cmocka_unit_test(test_values_round_trip),
		cmocka_unit_test(test_params_round_trip),
		cmocka_unit_test(test_foreign_magic_and_version),
		cmocka_unit_test(test_flipped_bytes),
		cmocka_unit_test(test_truncation_and_extension),
		cmocka_unit_test(test_forged_section_table),
		cmocka_unit_test(test_hostile_lengths_in_section),
		cmocka_unit_test(test_getter_past_section_end),
		cmocka_unit_test(test_params_mismatch),
		cmocka_unit_test(test_params_non_finite),
		cmocka_unit_test(test_params_bad_section),
		cmocka_unit_test(test_random_forgeries),
		cmocka_unit_test(test_writer_misuse_is_sticky),
		cmocka_unit_test(test_writer_out_of_memory),
	};

	return cmocka_run_group_tests_name("model blob", tests, NULL, NULL);
}
