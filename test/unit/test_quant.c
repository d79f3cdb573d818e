/*
 * test_quant.c -- the GGUF storage formats: half-precision conversions,
 * hand-built blocks decoded to hand-computed values, quantization error
 * per type, dot products against float arithmetic on the decoded
 * values, the AVX2 dot products against the references, and the
 * quantized matrix product on one and two pool threads.
 */
#include "unit.h"
#include "tl_bytes.h"
#include "tl_pool.h"
#include "tl_quant.h"

/* every computable type; the storage-only ones are in storage_types */
static const tl_qtype all_types[] = {
	TL_QT_F32, TL_QT_F16, TL_QT_BF16, TL_QT_Q4_0, TL_QT_Q4_1, TL_QT_Q5_0,
	TL_QT_Q5_1, TL_QT_Q8_0, TL_QT_Q4_K, TL_QT_Q5_K, TL_QT_Q6_K, TL_QT_Q8_K,
};
#define N_TYPES ((int) (sizeof(all_types) / sizeof(all_types[0])))

static const tl_qtype storage_types[] = {TL_QT_Q2_K, TL_QT_Q3_K};
#define N_STORAGE_TYPES ((int) (sizeof(storage_types) / sizeof(storage_types[0])))

static const tl_qtype_traits *
traits(tl_qtype type)
{
	const tl_qtype_traits *t = tl_qtype_info((int) type);

	if (!t)
		fail_msg("no traits for type %d", (int) type);
	return t;
}

/* A row of n elements quantized to type (malloc'ed, 64-byte aligned). */
static void *
quantize_row(tl_qtype type, const float *x, int64_t n)
{
	size_t		bytes = tl_qtype_row_size(type, n);
	void	   *q = aligned_alloc(64, (bytes + 63) / 64 * 64);

	assert_true(bytes > 0);
	assert_non_null(q);
	traits(type)->from_float(x, q, n);
	return q;
}

static float *
dequantize_row(tl_qtype type, const void *q, int64_t n)
{
	float	   *y = malloc(sizeof(float) * (size_t) n);

	assert_non_null(y);
	traits(type)->to_float(q, y, n);
	return y;
}

static float *
normal_row(tl_rng *rng, int64_t n, float scale)
{
	float	   *x = malloc(sizeof(float) * (size_t) n);

	assert_non_null(x);
	for (int64_t i = 0; i < n; i++)
		x[i] = scale * tl_rng_normal(rng);
	return x;
}

/* ======================================================================
 * Half precision and bfloat16
 * ====================================================================== */

static void
test_fp16_edges(void **state)
{
	static const struct
	{
		uint32_t	f;			/* float bits */
		uint16_t	h;			/* expected half bits */
	}			cases[] = {
		{0x00000000, 0x0000},	/* +0 */
		{0x80000000, 0x8000},	/* -0 */
		{0x3f800000, 0x3c00},	/* 1 */
		{0xc0000000, 0xc000},	/* -2 */
		{0x3dcccccd, 0x2e66},	/* 0.1 */
		{0x3eaaaaab, 0x3555},	/* 1/3 */
		{0x3f801000, 0x3c00},	/* 1 + 2^-11: a tie, to even (down) */
		{0x3f803000, 0x3c02},	/* 1 + 3*2^-11: a tie, to even (up) */
		{0x3f801001, 0x3c01},	/* just above the tie: up */
		{0x477fe000, 0x7bff},	/* 65504, the largest half */
		{0x477fefff, 0x7bff},	/* just below 65520 */
		{0x477ff000, 0x7c00},	/* 65520 rounds to inf */
		{0x7f7fffff, 0x7c00},	/* FLT_MAX overflows */
		{0x7f800000, 0x7c00},	/* inf */
		{0xff800000, 0xfc00},	/* -inf */
		{0x38800000, 0x0400},	/* 2^-14, the smallest normal */
		{0x387fc000, 0x03ff},	/* 1023 * 2^-24, the largest subnormal */
		{0x387fe000, 0x0400},	/* 1023.5 * 2^-24: a tie, to even 2^-14 */
		{0x33800000, 0x0001},	/* 2^-24, the smallest subnormal */
		{0x33000000, 0x0000},	/* 2^-25: a tie, to even zero */
		{0x33000001, 0x0001},	/* above the tie */
		{0x33c00000, 0x0002},	/* 1.5 * 2^-24: a tie, to even 2 */
		{0xb4200000, 0x8002},	/* -2.5 * 2^-24: a tie, to even -2 * 2^-24 */
		{0x00000001, 0x0000},	/* float subnormal: zero */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		uint16_t	h = tl_f32_to_fp16(tl_bits_f32(cases[i].f));

		if (h != cases[i].h)
			fail_msg("fp16(0x%08x) = 0x%04x, expected 0x%04x", cases[i].f, h, cases[i].h);
	}

	/* decoding by hand: sign, exponent, mantissa */
	assert_true(tl_fp16_to_f32(0x3c00) == 1.0f);
	assert_true(tl_fp16_to_f32(0xc500) == -5.0f);
	assert_true(tl_fp16_to_f32(0x7bff) == 65504.0f);
	assert_true(tl_fp16_to_f32(0x0001) == 0x1p-24f);
	assert_true(tl_fp16_to_f32(0x03ff) == 1023 * 0x1p-24f);
	assert_true(tl_fp16_to_f32(0x8000) == 0.0f && signbit(tl_fp16_to_f32(0x8000)));
	assert_true(isinf(tl_fp16_to_f32(0xfc00)) && tl_fp16_to_f32(0xfc00) < 0);
	assert_true(isnan(tl_fp16_to_f32(0x7e00)));
	assert_true(isnan(tl_fp16_to_f32(0x7c01)));	/* a signalling NaN stays NaN */

	/* NaN in, NaN out, even with a payload only in the low float bits */
	{
		uint16_t	h = tl_f32_to_fp16(tl_bits_f32(0x7f800001));

		assert_int_equal(h & 0x7c00, 0x7c00);
		assert_true((h & 0x3ff) != 0);
		h = tl_f32_to_fp16(tl_bits_f32(0xffc00000));
		assert_int_equal(h, 0xfe00);
	}

	/* every half that is not NaN survives half -> float -> half */
	for (uint32_t h = 0; h < 0x10000; h++)
	{
		float		f = tl_fp16_to_f32((uint16_t) h);

		if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff))
		{
			assert_true(isnan(f));
			continue;
		}
		if (tl_f32_to_fp16(f) != h)
			fail_msg("half 0x%04x -> %g -> 0x%04x", h, (double) f, tl_f32_to_fp16(f));
	}
}

static void
test_bf16_edges(void **state)
{
	static const struct
	{
		uint32_t	f;
		uint16_t	h;
	}			cases[] = {
		{0x3f800000, 0x3f80},	/* 1 */
		{0xc0c00000, 0xc0c0},	/* -6 */
		{0x40490fdb, 0x4049},	/* pi: the dropped half is below a tie */
		{0x3f808000, 0x3f80},	/* a tie, to even (down) */
		{0x3f818000, 0x3f82},	/* a tie, to even (up) */
		{0x3f808001, 0x3f81},	/* above the tie */
		{0x7f7fffff, 0x7f80},	/* FLT_MAX rounds to inf */
		{0xff800000, 0xff80},	/* -inf */
		{0x00018000, 0x0002},	/* subnormal tie, to even (up) */
		{0x00028000, 0x0002},	/* subnormal tie, to even (down) */
		{0x80000000, 0x8000},	/* -0 */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		uint16_t	h = tl_f32_to_bf16(tl_bits_f32(cases[i].f));

		if (h != cases[i].h)
			fail_msg("bf16(0x%08x) = 0x%04x, expected 0x%04x", cases[i].f, h, cases[i].h);
	}
	assert_true(tl_bf16_to_f32(0x4049) == 3.140625f);
	assert_true(tl_bf16_to_f32(0x0001) == tl_bits_f32(0x00010000));	/* subnormal */
	{
		/* a NaN whose payload lies only in the dropped bits stays NaN */
		uint16_t	h = tl_f32_to_bf16(tl_bits_f32(0x7f800001));

		assert_true(isnan(tl_bf16_to_f32(h)));
	}
	for (uint32_t h = 0; h < 0x10000; h++)
	{
		float		f = tl_bf16_to_f32((uint16_t) h);

		if (isnan(f))
			continue;
		assert_int_equal(tl_f32_bits(f), h << 16);
		if (tl_f32_to_bf16(f) != h)
			fail_msg("bf16 0x%04x -> %g -> 0x%04x", h, (double) f, tl_f32_to_bf16(f));
	}
}

/* ======================================================================
 * Hand-built blocks
 * ====================================================================== */

typedef struct
{
	int			index;
	float		value;
} spot;

static void
check_spots(tl_qtype type, const void *block, const spot *spots, int n_spots)
{
	const tl_qtype_traits *t = traits(type);
	float	   *y = dequantize_row(type, block, t->block_size);

	for (int i = 0; i < n_spots; i++)
		if (y[spots[i].index] != spots[i].value)
			fail_msg("%s element %d decodes to %g, expected %g", t->name, spots[i].index,
					 (double) y[spots[i].index], (double) spots[i].value);
	free(y);
}

#define CHECK_SPOTS(type, block, ...) do { \
		static const spot s_[] = {__VA_ARGS__}; \
		check_spots((type), (block), s_, (int) (sizeof(s_) / sizeof(s_[0]))); \
	} while (0)

static void
test_known_float_formats(void **state)
{
	static const uint8_t f32[] = {0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0xc0, 0xc0};
	static const uint8_t f16[] = {0x00, 0x3c, 0x00, 0xc0, 0x01, 0x00, 0xff, 0x7b};
	static const uint8_t bf16[] = {0x80, 0x3f, 0x49, 0x40, 0xc0, 0xc0, 0x00, 0x00};
	uint8_t		buf[8] __attribute__((aligned(4)));
	float		y[4];

	memcpy(buf, f32, sizeof(buf));
	traits(TL_QT_F32)->to_float(buf, y, 2);
	assert_true(y[0] == 1.0f && y[1] == -6.0f);
	memcpy(buf, f16, sizeof(buf));
	traits(TL_QT_F16)->to_float(buf, y, 4);
	assert_true(y[0] == 1.0f && y[1] == -2.0f && y[2] == 0x1p-24f && y[3] == 65504.0f);
	memcpy(buf, bf16, sizeof(buf));
	traits(TL_QT_BF16)->to_float(buf, y, 4);
	assert_true(y[0] == 1.0f && y[1] == 3.140625f && y[2] == -6.0f && y[3] == 0.0f);
}

/* qs[j] = j in the low nibble, 15 - j in the high one */
static void
fill_nibbles(uint8_t *qs)
{
	for (int j = 0; j < 16; j++)
		qs[j] = (uint8_t) (j | (15 - j) << 4);
}

static void
test_known_blocks_32(void **state)
{
	/* Q4_0: d = 0.5; x[j] = 0.5 (j - 8), x[16 + j] = 0.5 (7 - j) */
	{
		tl_block_q4_0 b;
		uint8_t		bytes[18] = {0x00, 0x38};

		fill_nibbles(bytes + 2);
		memcpy(&b, bytes, sizeof(b));
		CHECK_SPOTS(TL_QT_Q4_0, &b, {0, -4.0f}, {1, -3.5f}, {8, 0.0f}, {15, 3.5f},
					{16, 3.5f}, {17, 3.0f}, {31, -4.0f});
	}
	/* Q4_1: d = 1, m = -5; x[j] = j - 5, x[16 + j] = 10 - j */
	{
		tl_block_q4_1 b;
		uint8_t		bytes[20] = {0x00, 0x3c, 0x00, 0xc5};
		tl_block_q8_1 ones;

		fill_nibbles(bytes + 4);
		memcpy(&b, bytes, sizeof(b));
		CHECK_SPOTS(TL_QT_Q4_1, &b, {0, -5.0f}, {5, 0.0f}, {15, 10.0f}, {16, 10.0f}, {31, -5.0f});
		/* with activations all 1: the sum, 16 * 5, by every dot product */
		ones.d = 0x3c00;
		ones.s = tl_f32_to_fp16(32.0f);
		for (int j = 0; j < 32; j++)
			ones.qs[j] = 1;
		assert_true(traits(TL_QT_Q4_1)->vec_dot(32, &b, &ones) == 80.0f);
		assert_true(tl_quant_vec_dot(TL_QT_Q4_1) (32, &b, &ones) == 80.0f);
	}
	/*
	 * Q5_0: d = 1, qh = 0xAAAA5555 (bytes 55 55 aa aa): bit i is the top
	 * bit of element i, so the top bit is set for even j < 16 and odd j >= 16.
	 */
	{
		tl_block_q5_0 b;
		uint8_t		bytes[22] = {0x00, 0x3c, 0x55, 0x55, 0xaa, 0xaa};

		fill_nibbles(bytes + 6);
		memcpy(&b, bytes, sizeof(b));
		CHECK_SPOTS(TL_QT_Q5_0, &b, {0, 0.0f}, {1, -15.0f}, {2, 2.0f}, {15, -1.0f},
					{16, -1.0f}, {17, 14.0f}, {30, -15.0f}, {31, 0.0f});
	}
	/* Q5_1: d = 0.5, m = 2, qh = bits 0 and 31 (bytes 01 00 00 80) */
	{
		tl_block_q5_1 b;
		uint8_t		bytes[24] = {0x00, 0x38, 0x00, 0x40, 0x01, 0x00, 0x00, 0x80};

		fill_nibbles(bytes + 8);
		memcpy(&b, bytes, sizeof(b));
		CHECK_SPOTS(TL_QT_Q5_1, &b, {0, 10.0f}, {1, 2.5f}, {15, 9.5f}, {16, 9.5f},
					{30, 2.5f}, {31, 10.0f});
	}
	/* Q8_0: d = 0.25, qs[j] = 8j - 128 */
	{
		tl_block_q8_0 b;
		uint8_t		bytes[34] = {0x00, 0x34};

		for (int j = 0; j < 32; j++)
			bytes[2 + j] = (uint8_t) (8 * j) ^ 0x80;	/* int8 8j - 128 */
		memcpy(&b, bytes, sizeof(b));
		CHECK_SPOTS(TL_QT_Q8_0, &b, {0, -32.0f}, {1, -30.0f}, {16, 0.0f}, {31, 30.0f});
	}
}

/*
 * The Q4_K / Q5_K scale bytes below encode, by hand,
 *   sc = {1, 2, 3, 4, 17, 33, 50, 63},  m = {0, 5, 10, 63, 20, 40, 1, 36}:
 *   bytes 0-3:  sc[0..3] | (sc[4..7] >> 4) << 6  = 41 82 c3 c4
 *   bytes 4-7:  m[0..3]  | (m[4..7] >> 4) << 6   = 40 85 0a bf
 *   bytes 8-11: (sc[4..7] & 15) | (m[4..7] & 15) << 4 = 41 81 12 4f
 * with d = 1 (3c00) and dmin = 0.5 (3800), so x = sc * q - m / 2.
 */
static const uint8_t k_head[16] = {
	0x00, 0x3c, 0x00, 0x38,
	0x41, 0x82, 0xc3, 0xc4, 0x40, 0x85, 0x0a, 0xbf, 0x41, 0x81, 0x12, 0x4f,
};

static void
test_known_blocks_k(void **state)
{
	/*
	 * Q4_K, qs[i] = i: element 64c + l takes the low nibble of qs[32c + l]
	 * with sub-block 2c, element 64c + 32 + l the high nibble with 2c + 1.
	 */
	{
		tl_block_q4_K b;
		uint8_t		bytes[144];

		memcpy(bytes, k_head, sizeof(k_head));
		for (int i = 0; i < 128; i++)
			bytes[16 + i] = (uint8_t) i;
		memcpy(&b, bytes, sizeof(b));
		CHECK_SPOTS(TL_QT_Q4_K, &b,
					{0, 0.0f},	/* 1*0 - 0 */
					{5, 5.0f},	/* 1*5 - 0 */
					{32, -2.5f},	/* 2*0 - 2.5 */
					{63, -0.5f},	/* qs[31] = 0x1f: 2*1 - 2.5 */
					{67, 4.0f},	/* qs[35] = 0x23: 3*3 - 5 */
					{113, -19.5f},	/* qs[49] = 0x31: 4*3 - 31.5 */
					{138, 160.0f},	/* qs[74] = 0x4a: 17*10 - 10 */
					{160, 112.0f},	/* qs[64] = 0x40: 33*4 - 20 */
					{207, 749.5f},	/* qs[111] = 0x6f: 50*15 - 0.5 */
					{255, 423.0f});	/* qs[127] = 0x7f: 63*7 - 18 */
	}

	/*
	 * Q5_K, the same head and qs, qh[l] = 1 << (l % 8): bit 2c of qh[l]
	 * tops element 64c + l, bit 2c + 1 tops element 64c + 32 + l.
	 */
	{
		tl_block_q5_K b;
		uint8_t		bytes[176];

		memcpy(bytes, k_head, sizeof(k_head));
		for (int l = 0; l < 32; l++)
			bytes[16 + l] = (uint8_t) (1 << (l % 8));
		for (int i = 0; i < 128; i++)
			bytes[48 + i] = (uint8_t) i;
		memcpy(&b, bytes, sizeof(b));
		CHECK_SPOTS(TL_QT_Q5_K, &b,
					{0, 16.0f},	/* (0 + 16) * 1 */
					{1, 1.0f},	/* bit 0 of qh[1] clear */
					{32, -2.5f},	/* bit 1 of qh[0] clear: 2*0 - 2.5 */
					{33, 29.5f},	/* bit 1 of qh[1] set: 2*16 - 2.5 */
					{66, 49.0f},	/* 3*(2 + 16) - 5 */
					{99, 40.5f},	/* qs[35] high 2, bit 3 of qh[3]: 4*18 - 31.5 */
					{132, 330.0f},	/* 17*(4 + 16) - 10 */
					{173, 640.0f},	/* qs[77] high 4, bit 5 of qh[13]: 33*20 - 20 */
					{198, 1099.5f},	/* 50*(6 + 16) - 0.5 */
					{254, 423.0f},	/* bit 7 of qh[30] clear: 63*7 - 18 */
					{255, 1431.0f});	/* 63*(7 + 16) - 18 */
	}

	/*
	 * Q6_K: ql[i] = i, qh[i] = 0xe4 for i < 32 (bit pairs 0,1,2,3 for the
	 * four quarters) but qh[3] = 0, and qh[i] = 0x1b for i >= 32 (pairs
	 * 3,2,1,0); scales 1, -2, 3, -4, ... -16; d = 0.5 (3800).
	 * x = 0.5 * scale[e / 16] * (level - 32).
	 */
	{
		tl_block_q6_K b;
		uint8_t		bytes[210];

		for (int i = 0; i < 128; i++)
			bytes[i] = (uint8_t) i;
		for (int i = 0; i < 64; i++)
			bytes[128 + i] = i < 32 ? 0xe4 : 0x1b;
		bytes[128 + 3] = 0x00;
		for (int g = 0; g < 16; g++)
			bytes[192 + g] = (uint8_t) (int8_t) ((g & 1) ? -(g + 1) : (g + 1));
		bytes[208] = 0x00;
		bytes[209] = 0x38;
		memcpy(&b, bytes, sizeof(b));
		CHECK_SPOTS(TL_QT_Q6_K, &b,
					{0, -16.0f},	/* level 0: 0.5*1*(-32) */
					{5, -13.5f},	/* level 5 */
					{17, 31.0f},	/* level 1, scale -2 */
					{35, -43.5f},	/* ql[35] low 3, qh[3] = 0: level 3, scale 3 */
					{36, -18.0f},	/* ql[36] low 4, pair 1: level 20, scale 3 */
					{84, -3.0f},	/* ql[20] high 1, pair 2: level 33, scale -6 */
					{127, -76.0f},	/* ql[63] high 3, pair 3: level 51, scale -8 */
					{135, 103.5f},	/* ql[71] low 7, qh 0x1b pair 3: level 55, scale 9 */
					{192, -78.0f},	/* ql[64] high 4, pair 1: level 20, scale 13 */
					{254, 200.0f});	/* ql[126] high 7, pair 0: level 7, scale -16 */
	}

	/* Q8_K: d = 0.5 as a float, qs[j] = j - 128 */
	{
		tl_block_q8_K b;
		uint8_t		bytes[292] = {0x00, 0x00, 0x00, 0x3f};

		for (int j = 0; j < 256; j++)
			bytes[4 + j] = (uint8_t) (j ^ 0x80);
		memcpy(&b, bytes, sizeof(b));
		CHECK_SPOTS(TL_QT_Q8_K, &b, {0, -64.0f}, {128, 0.0f}, {255, 63.5f});
	}
}

/* ======================================================================
 * Quantization error
 * ====================================================================== */

static double
rel_rms(const float *x, const float *y, int64_t n)
{
	double		num = 0,
				den = 0;

	for (int64_t i = 0; i < n; i++)
	{
		num += ((double) x[i] - y[i]) * ((double) x[i] - y[i]);
		den += (double) x[i] * x[i];
	}
	return sqrt(num / den);
}

/*
 * Relative RMS error bounds for rows of N(0, 1), a little above what the
 * quantizers reach: about step / sqrt(12) relative to the data, where
 * step is the block's range over its levels.
 */
static double
error_bound(tl_qtype type)
{
	switch (type)
	{
		case TL_QT_F32:
			return 0.0;
		case TL_QT_F16:
			return 3.5e-4;
		case TL_QT_BF16:
			return 2.8e-3;
		case TL_QT_Q4_0:
			return 0.095;
		case TL_QT_Q4_1:
			return 0.085;
		case TL_QT_Q5_0:
			return 0.047;
		case TL_QT_Q5_1:
			return 0.042;
		case TL_QT_Q8_0:
		case TL_QT_Q8_1:
			return 0.0060;
		case TL_QT_Q4_K:
			return 0.078;
		case TL_QT_Q5_K:
			return 0.039;
		case TL_QT_Q6_K:
			return 0.020;
		case TL_QT_Q8_K:
			return 0.0080;		/* one scale per 256: a wider range */
		default:
			fail_msg("no bound for type %d", (int) type);
	}
	return 0.0;
}

static void
test_roundtrip_error(void **state)
{
	const int64_t n = 8192;
	tl_rng		rng;

	tl_rng_seed(&rng, 11);
	for (int t = 0; t < N_TYPES; t++)
	{
		tl_qtype	type = all_types[t];
		float	   *x = normal_row(&rng, n, 1.0f);
		void	   *q = quantize_row(type, x, n);
		float	   *y = dequantize_row(type, q, n);
		double		e = rel_rms(x, y, n);

		print_message("  %-5s relative RMS error %.5f (bound %.5f)\n", traits(type)->name, e, error_bound(type));
		if (!(e <= error_bound(type)))
			fail_msg("%s: relative RMS error %g > %g", traits(type)->name, e, error_bound(type));
		free(x);
		free(q);
		free(y);
	}
}

/* Small weights (1e-3 scale, as in real models), constant rows, zeros. */
static void
test_roundtrip_special_rows(void **state)
{
	const int64_t n = 512;
	tl_rng		rng;

	tl_rng_seed(&rng, 12);
	for (int t = 0; t < N_TYPES; t++)
	{
		tl_qtype	type = all_types[t];
		float	   *x = normal_row(&rng, n, 0.02f);
		void	   *q;
		float	   *y;

		if (type == TL_QT_F32 || type == TL_QT_F16 || type == TL_QT_BF16)
		{
			free(x);
			continue;
		}
		q = quantize_row(type, x, n);
		y = dequantize_row(type, q, n);
		if (!(rel_rms(x, y, n) < 0.1))
			fail_msg("%s: small weights error %g", traits(type)->name, rel_rms(x, y, n));
		free(q);
		free(y);

		/* all zero decodes to zero; a constant row to (about) itself */
		for (int64_t i = 0; i < n; i++)
			x[i] = 0.0f;
		q = quantize_row(type, x, n);
		y = dequantize_row(type, q, n);
		for (int64_t i = 0; i < n; i++)
			assert_true(y[i] == 0.0f);
		free(q);
		free(y);
		for (int64_t i = 0; i < n; i++)
			x[i] = -0.75f;
		q = quantize_row(type, x, n);
		y = dequantize_row(type, q, n);
		for (int64_t i = 0; i < n; i++)
			if (!(fabsf(y[i] + 0.75f) < 0.01f))
				fail_msg("%s: constant -0.75 decodes to %g at %lld", traits(type)->name, (double) y[i],
						 (long long) i);
		free(q);
		free(y);
		free(x);
	}
}

/* ======================================================================
 * Dot products
 * ====================================================================== */

/*
 * A row of n random blocks: random bytes everywhere (every nibble, high
 * bit and packed scale pattern occurs) except the float scale fields,
 * which get moderate values so that sums stay finite.
 */
static void *
random_blocks(tl_rng *rng, tl_qtype type, int64_t n)
{
	const tl_qtype_traits *t = traits(type);
	size_t		bytes = tl_qtype_row_size(type, n);
	uint8_t    *p = aligned_alloc(64, (bytes + 63) / 64 * 64);
	int64_t		nb = n / t->block_size;

	assert_non_null(p);
	for (size_t i = 0; i < bytes; i++)
		p[i] = (uint8_t) tl_rng_below(rng, 256);
#define SCALE(lo, hi) tl_f32_to_fp16((lo) + ((hi) - (lo)) * tl_rng_uniform(rng))
	for (int64_t b = 0; b < nb; b++)
		switch (type)
		{
			case TL_QT_F32:
				((float *) p)[b] = tl_rng_normal(rng);
				break;
			case TL_QT_F16:
				((uint16_t *) p)[b] = tl_f32_to_fp16(tl_rng_normal(rng));
				break;
			case TL_QT_BF16:
				((uint16_t *) p)[b] = tl_f32_to_bf16(tl_rng_normal(rng));
				break;
			case TL_QT_Q4_0:
				((tl_block_q4_0 *) p)[b].d = SCALE(0.001f, 0.1f);
				break;
			case TL_QT_Q4_1:
				((tl_block_q4_1 *) p)[b].d = SCALE(0.001f, 0.1f);
				((tl_block_q4_1 *) p)[b].m = SCALE(-0.8f, 0.1f);
				break;
			case TL_QT_Q5_0:
				((tl_block_q5_0 *) p)[b].d = SCALE(0.001f, 0.05f);
				break;
			case TL_QT_Q5_1:
				((tl_block_q5_1 *) p)[b].d = SCALE(0.001f, 0.05f);
				((tl_block_q5_1 *) p)[b].m = SCALE(-0.8f, 0.1f);
				break;
			case TL_QT_Q8_0:
				((tl_block_q8_0 *) p)[b].d = SCALE(0.0001f, 0.01f);
				break;
			case TL_QT_Q4_K:
				((tl_block_q4_K *) p)[b].d = SCALE(0.0001f, 0.002f);
				((tl_block_q4_K *) p)[b].dmin = SCALE(0.0001f, 0.002f);
				break;
			case TL_QT_Q5_K:
				((tl_block_q5_K *) p)[b].d = SCALE(0.0001f, 0.001f);
				((tl_block_q5_K *) p)[b].dmin = SCALE(0.0001f, 0.002f);
				break;
			case TL_QT_Q6_K:
				((tl_block_q6_K *) p)[b].d = SCALE(0.0001f, 0.001f);
				break;
			case TL_QT_Q8_K:
				((tl_block_q8_K *) p)[b].d = 0.0001f + 0.01f * tl_rng_uniform(rng);
				break;
			default:
				fail_msg("no random blocks for %s", t->name);
		}
#undef SCALE
	return p;
}

typedef struct
{
	double		exact;			/* the dot of the decoded rows, in double */
	double		scale;			/* sum |w_i a_i| over the decoded rows */
} dot_ref;

static dot_ref
decoded_dot(tl_qtype type, const void *w, const void *a, int64_t n)
{
	const tl_qtype_traits *t = traits(type);
	float	   *wf = dequantize_row(type, w, n);
	float	   *af = dequantize_row(t->vec_dot_type, a, n);
	dot_ref		r = {0, 0};

	for (int64_t i = 0; i < n; i++)
	{
		r.exact += (double) wf[i] * af[i];
		r.scale += fabs((double) wf[i] * af[i]);
	}
	if (t->vec_dot_type == TL_QT_Q8_1)
	{
		/* the min term uses the stored s, d * sum(q) rounded to fp16 */
		const tl_block_q8_1 *ab = a;

		for (int64_t b = 0; b < n / 32; b++)
		{
			double		m = tl_fp16_to_f32(type == TL_QT_Q4_1 ? ((const tl_block_q4_1 *) w)[b].m
										   : ((const tl_block_q5_1 *) w)[b].m);
			int			sum = 0;

			for (int j = 0; j < 32; j++)
				sum += ab[b].qs[j];
			r.exact += m * ((double) tl_fp16_to_f32(ab[b].s) - (double) tl_fp16_to_f32(ab[b].d) * sum);
		}
	}
	free(wf);
	free(af);
	return r;
}

/* For each type: weights from the quantizer and from random bytes. */
static void
test_vec_dot_reference(void **state)
{
	const int64_t n = 1024;
	tl_rng		rng;

	tl_rng_seed(&rng, 21);
	for (int t = 0; t < N_TYPES; t++)
	{
		tl_qtype	type = all_types[t];
		const tl_qtype_traits *tt = traits(type);
		double		worst = 0;

		for (int rep = 0; rep < 20; rep++)
		{
			float	   *xw = normal_row(&rng, n, 1.0f);
			float	   *xa = normal_row(&rng, n, 1.0f + (float) rep);
			void	   *w = rep % 2 ? quantize_row(type, xw, n) : random_blocks(&rng, type, n);
			void	   *a = quantize_row(tt->vec_dot_type, xa, n);
			dot_ref		r = decoded_dot(type, w, a, n);
			double		got = tt->vec_dot(n, w, a);
			double		err = fabs(got - r.exact) / r.scale;

			if (err > worst)
				worst = err;
			if (!(err < (tt->block_size == 1 ? 1e-5 : 2e-6)))
				fail_msg("%s rep %d: vec_dot %.9g, decoded dot %.9g (scale %.3g)", tt->name, rep,
						 got, r.exact, r.scale);
			free(xw);
			free(xa);
			free(w);
			free(a);
		}
		print_message("  %-5s reference vs decoded: max error / sum|wa| = %.2e\n", tt->name, worst);
	}
}

/*
 * For N(0, 1) rows of n, the error of the quantized dot is a sum of n
 * terms dw_i a_i + w_i da_i, with standard deviation about
 * sqrt(n) (e_w + e_a) for relative errors e: allow six of those.
 */
static double
dot_tolerance(tl_qtype type, int64_t n)
{
	double		e = error_bound(type) + error_bound(traits(type)->vec_dot_type);

	return 6.0 * e * sqrt((double) n) + 1e-3;
}

/* The quantized dot approximates the float dot of the original rows. */
static void
test_vec_dot_vs_float(void **state)
{
	const int64_t n = 2048;
	tl_rng		rng;

	tl_rng_seed(&rng, 22);
	for (int t = 0; t < N_TYPES; t++)
	{
		tl_qtype	type = all_types[t];
		const tl_qtype_traits *tt = traits(type);
		float	   *xw = normal_row(&rng, n, 1.0f);
		float	   *xa = normal_row(&rng, n, 1.0f);
		void	   *w = quantize_row(type, xw, n);
		void	   *a = quantize_row(tt->vec_dot_type, xa, n);
		double		exact = 0;
		double		got = tt->vec_dot(n, w, a);

		for (int64_t i = 0; i < n; i++)
			exact += (double) xw[i] * xa[i];
		if (!(fabs(got - exact) < dot_tolerance(type, n)))
			fail_msg("%s: quantized dot %g vs float %g", tt->name, got, exact);
		free(xw);
		free(xa);
		free(w);
		free(a);
	}
}

/* The AVX2 versions equal the references to rounding. */
static void
test_vec_dot_simd(void **state)
{
	const int64_t sizes[] = {256, 512, 4096};
	tl_rng		rng;
	int			compared = 0;

	tl_quant_force_scalar(false);
	if (!tl_quant_simd_active())
	{
		print_message("  skipped: no AVX2+FMA+F16C on this CPU (or TL_QUANT_SCALAR set)\n");
		skip();
	}
	tl_rng_seed(&rng, 23);
	for (int t = 0; t < N_TYPES; t++)
	{
		tl_qtype	type = all_types[t];
		const tl_qtype_traits *tt = traits(type);
		tl_vec_dot_fn simd = tl_quant_vec_dot(type);
		double		worst = 0;

		if (!tt->vec_dot_avx2)
		{
			print_message("  %-5s has no AVX2 version\n", tt->name);
			continue;
		}
		/* the dispatcher hands out the AVX2 version, or the reference when forced */
		assert_ptr_equal(simd, tt->vec_dot_avx2);
		tl_quant_force_scalar(true);
		assert_ptr_equal(tl_quant_vec_dot(type), tt->vec_dot);
		assert_false(tl_quant_simd_active());
		tl_quant_force_scalar(false);

		for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++)
			for (int rep = 0; rep < 10; rep++)
			{
				int64_t		n = sizes[s] + (tt->block_size == 1 ? rep : 0);	/* odd tails too */
				float	   *xw = normal_row(&rng, n, 1.0f);
				float	   *xa = normal_row(&rng, n, 1.0f);
				void	   *w = rep % 2 ? quantize_row(type, xw, n) : random_blocks(&rng, type, n);
				void	   *a = quantize_row(tt->vec_dot_type, xa, n);
				dot_ref		r = decoded_dot(type, w, a, n);
				double		ref = tt->vec_dot(n, w, a);
				double		got = simd(n, w, a);
				double		err = fabs(got - ref) / r.scale;

				if (err > worst)
					worst = err;
				if (!(err < (tt->block_size == 1 ? 1e-5 : 1e-6)))
					fail_msg("%s n=%lld rep %d: AVX2 %.9g vs reference %.9g (scale %.3g)", tt->name,
							 (long long) n, rep, got, ref, r.scale);
				/* a batch order is written in fmaf and AVX2 alike: the same bits */
				if (tt->vec_dot_batch && tt->vec_dot_batch(n, w, a) != tt->vec_dot_batch_avx2(n, w, a))
					fail_msg("%s n=%lld rep %d: batch order, AVX2 %.9g vs reference %.9g", tt->name,
							 (long long) n, rep, tt->vec_dot_batch_avx2(n, w, a), tt->vec_dot_batch(n, w, a));
				if (type == TL_QT_F16 && tt->vec_dot(n, w, a) != simd(n, w, a))
					fail_msg("F16 n=%lld rep %d: AVX2 and reference differ", (long long) n, rep);
				free(xw);
				free(xa);
				free(w);
				free(a);
				compared++;
			}
		print_message("  %-5s AVX2 vs reference: max error / sum|wa| = %.2e\n", tt->name, worst);
	}
	assert_true(compared > 0);
}

/* ======================================================================
 * Matrix products
 * ====================================================================== */

static void
test_matmul_pool(void **state)
{
	const int64_t rows = 37,
				cols = 512,
				n = 3;
	tl_rng		rng;

	tl_rng_seed(&rng, 31);
	for (int t = 0; t < N_TYPES; t++)
	{
		tl_qtype	type = all_types[t];
		const tl_qtype_traits *tt = traits(type);
		size_t		row_bytes = tl_qtype_row_size(type, cols);
		uint8_t    *w = aligned_alloc(64, (rows * row_bytes + 63) / 64 * 64);
		float	   *xf = normal_row(&rng, rows * cols, 1.0f);
		float	   *x = normal_row(&rng, n * cols, 1.0f);
		float	   *expect = calloc((size_t) (n * rows), sizeof(float));
		float	   *y1 = calloc((size_t) (n * rows), sizeof(float));
		float	   *y2 = calloc((size_t) (n * rows), sizeof(float));
		float	   *yv = calloc((size_t) rows, sizeof(float));
		tl_vec_dot_fn dot = tl_quant_vec_dot_for(type, n),
					single = tl_quant_vec_dot(type);

		for (int64_t r = 0; r < rows; r++)
			tt->from_float(xf + r * cols, w + r * row_bytes, cols);

		/*
		 * the naive loop: convert each vector, one dot per (vector, row),
		 * in the batch's order (F16 has its own)
		 */
		for (int64_t v = 0; v < n; v++)
		{
			void	   *a = tt->vec_dot_type == TL_QT_F32
				? NULL : quantize_row(tt->vec_dot_type, x + v * cols, cols);

			for (int64_t r = 0; r < rows; r++)
				expect[v * rows + r] = dot(cols, w + r * row_bytes, a ? a : (void *) (x + v * cols));
			free(a);
		}

		tl_pool_set_threads(1);
		ASSERT_OK(tl_quant_matmul(y1, w, type, rows, cols, x, n));
		tl_pool_set_threads(2);
		ASSERT_OK(tl_quant_matmul(y2, w, type, rows, cols, x, n));
		ASSERT_OK(tl_quant_matvec(yv, w, type, rows, cols, x + cols));
		tl_pool_set_threads(1);
		for (int64_t i = 0; i < n * rows; i++)
		{
			if (y1[i] != expect[i] || y2[i] != expect[i])
				fail_msg("%s matmul[%lld]: 1 thread %g, 2 threads %g, naive %g", tt->name,
						 (long long) i, (double) y1[i], (double) y2[i], (double) expect[i]);
		}
		/* one vector alone takes the single-vector dot */
		{
			void	   *a = tt->vec_dot_type == TL_QT_F32
				? NULL : quantize_row(tt->vec_dot_type, x + cols, cols);

			for (int64_t r = 0; r < rows; r++)
				assert_true(yv[r] == single(cols, w + r * row_bytes, a ? a : (void *) (x + cols)));
			free(a);
		}
		assert_true((dot == single) == (tt->vec_dot_batch == NULL));

		/* and the whole approximates W x in float */
		for (int64_t v = 0; v < n; v++)
			for (int64_t r = 0; r < rows; r++)
			{
				double		exact = 0;

				for (int64_t c = 0; c < cols; c++)
					exact += (double) xf[r * cols + c] * x[v * cols + c];
				if (!(fabs(y1[v * rows + r] - exact) < dot_tolerance(type, cols)))
					fail_msg("%s matmul[%lld][%lld] = %g, float %g", tt->name, (long long) v,
							 (long long) r, (double) y1[v * rows + r], exact);
			}
		free(w);
		free(xf);
		free(x);
		free(expect);
		free(y1);
		free(y2);
		free(yv);
	}
}

static void
test_matmul_bad_args(void **state)
{
	float		x[512] = {0},
				y[64] = {0};
	uint8_t		w[4096] __attribute__((aligned(64))) = {0};

	/* cols not whole blocks */
	ASSERT_FAILS(TL_ERR_SHAPE, tl_quant_matvec(y, w, TL_QT_Q4_1, 4, 48, x));
	ASSERT_FAILS(TL_ERR_SHAPE, tl_quant_matvec(y, w, TL_QT_Q6_K, 1, 128, x));
	ASSERT_FAILS(TL_ERR_SHAPE, tl_quant_matvec(y, w, TL_QT_Q8_0, 1, 31, x));
	/* empty extents */
	ASSERT_FAILS(TL_ERR_SHAPE, tl_quant_matvec(y, w, TL_QT_Q4_0, 0, 32, x));
	ASSERT_FAILS(TL_ERR_SHAPE, tl_quant_matvec(y, w, TL_QT_Q4_0, 2, 0, x));
	ASSERT_FAILS(TL_ERR_SHAPE, tl_quant_matmul(y, w, TL_QT_Q4_0, 2, 32, x, 0));
	ASSERT_FAILS(TL_ERR_SHAPE, tl_quant_matmul(y, w, TL_QT_Q4_0, -1, 32, x, 1));
	/* overflowing extents */
	ASSERT_FAILS(TL_ERR_SHAPE, tl_quant_matmul(y, w, TL_QT_Q8_0, INT64_MAX / 32, 64, x, 1));
	/* missing pointers, unknown types, misaligned weights */
	ASSERT_FAILS(TL_ERR_ARG, tl_quant_matvec(NULL, w, TL_QT_Q4_0, 1, 32, x));
	ASSERT_FAILS(TL_ERR_ARG, tl_quant_matvec(y, NULL, TL_QT_Q4_0, 1, 32, x));
	ASSERT_FAILS(TL_ERR_ARG, tl_quant_matvec(y, w, TL_QT_Q4_0, 1, 32, NULL));
	ASSERT_FAILS(TL_ERR_ARG, tl_quant_matvec(y, w, (tl_qtype) 4, 1, 32, x));	/* Q4_2: gone */
	ASSERT_FAILS(TL_ERR_UNAVAILABLE, tl_quant_matvec(y, w, (tl_qtype) 9, 1, 32, x));	/* Q8_1: storage only */
	ASSERT_FAILS(TL_ERR_ARG, tl_quant_matvec(y, w, (tl_qtype) -1, 1, 32, x));
	ASSERT_FAILS(TL_ERR_ARG, tl_quant_matvec(y, w, TL_QT_LIMIT, 1, 32, x));
	ASSERT_FAILS(TL_ERR_ARG, tl_quant_matvec(y, w + 1, TL_QT_Q4_0, 1, 32, x));
	ASSERT_FAILS(TL_ERR_ARG, tl_quant_matvec(y, w + 2, TL_QT_Q8_K, 1, 256, x));
	assert_true(strstr(tl_last_error(), "misaligned") != NULL);
	/* and a good call after all that */
	ASSERT_OK(tl_quant_matvec(y, w, TL_QT_Q4_0, 64, 32, x));

	/* the traits agree with the GGUF sizes */
	assert_null(tl_qtype_info(4));
	assert_null(tl_qtype_info(31));
	assert_int_equal(tl_qtype_row_size(TL_QT_Q4_0, 33), 0);
	assert_int_equal(tl_qtype_row_size(TL_QT_Q4_1, 576), 18 * 20);
	assert_int_equal(tl_qtype_row_size(TL_QT_Q6_K, 512), 2 * 210);
	assert_int_equal(tl_qtype_row_size(TL_QT_BF16, 7), 14);
	assert_string_equal(traits(TL_QT_Q5_K)->name, "Q5_K");
	assert_int_equal(traits(TL_QT_Q8_K)->type_size, 292);
	assert_int_equal(traits(TL_QT_Q4_K)->vec_dot_type, TL_QT_Q8_K);
	assert_int_equal(traits(TL_QT_Q4_1)->vec_dot_type, TL_QT_Q8_1);
	assert_int_equal(traits(TL_QT_Q5_1)->vec_dot_type, TL_QT_Q8_1);
	assert_int_equal(traits(TL_QT_Q4_0)->vec_dot_type, TL_QT_Q8_0);
	assert_int_equal(traits(TL_QT_F16)->vec_dot_type, TL_QT_F16);
}

/*
 * The AVX2 conversions from float give the scalar ones' bytes exactly
 * (activations quantized either way must dot to the same sums), and the
 * half-precision round trip agrees with the scalar conversions.
 */
static void
test_avx2_from_float(void **state)
{
	static const tl_qtype types[] = {TL_QT_F16, TL_QT_Q8_0, TL_QT_Q8_1};
	tl_rng		rng;

	if (!tl_quant_simd_active())
	{
		print_message("  skipped: no AVX2+FMA+F16C on this CPU (or TL_QUANT_SCALAR set)\n");
		skip();
	}
	tl_rng_seed(&rng, 29);
	for (size_t k = 0; k < sizeof(types) / sizeof(types[0]); k++)
	{
		const tl_qtype_traits *t = traits(types[k]);

		assert_non_null(t->from_float_avx2);
		assert_ptr_equal(tl_quant_from_float(types[k]), t->from_float_avx2);
		for (int rep = 0; rep < 40; rep++)
		{
			int64_t		n = 32 * (1 + rep % 9) + (t->block_size == 1 ? rep % 7 : 0);
			float	   *x = normal_row(&rng, n, rep % 3 == 0 ? 1e-3f : 3.0f);
			size_t		bytes = tl_qtype_row_size(types[k], n);
			uint8_t    *a = calloc(1, bytes),
					   *b = calloc(1, bytes);

			if (rep % 5 == 0)
				memset(x, 0, sizeof(float) * 32);	/* an all-zero block */
			if (rep % 4 == 1)
				x[3] = x[7] = 1.5f;		/* ties in the largest magnitude */
			t->from_float(x, a, n);
			t->from_float_avx2(x, b, n);
			if (memcmp(a, b, bytes) != 0)
				fail_msg("%s rep %d: AVX2 from_float differs from the reference", t->name, rep);
			free(x);
			free(a);
			free(b);
		}
	}
	{
		float		x[37],
					y[37];

		for (int i = 0; i < 37; i++)
			x[i] = y[i] = tl_rng_normal(&rng) * (i % 2 ? 1e4f : 1e-4f);
		tl_quant_round_half(x, 37);
		for (int i = 0; i < 37; i++)
			assert_true(x[i] == tl_fp16_to_f32(tl_f32_to_fp16(y[i])));
	}
}

/*
 * The lane sums' trees, on values where the order shows: 2^24 + 1 rounds
 * back to 2^24, so only the stated pairing keeps the ones.
 */
static void
test_f16_lanes_sum(void **state)
{
	float		l[32] = {0};

	/* TILED: ((0+4)+(2+6)) + ((1+5)+(3+7)) */
	l[0] = 0x1p24f;
	l[4] = 1.0f;
	l[2] = -0x1p24f;
	l[6] = 1.0f;
	assert_true(tl_quant_f16_lanes_sum(l, 1, TL_F16_TILED) == 1.0f);
	/* VEC: a_i = (l_i + l_i+16) + (l_i+8 + l_i+24), then ((a0+a4)+(a1+a5)) + ... */
	memset(l, 0, sizeof(l));
	l[0] = 0x1p24f;
	l[16] = 1.0f;				/* lost: l_0 + l_16 rounds to 2^24 */
	l[8] = -0x1p24f;
	l[24] = 1.0f;				/* kept: l_8 + l_24 = 1 - 2^24 exactly */
	assert_true(tl_quant_f16_lanes_sum(l, 1, TL_F16_VEC) == 1.0f);	/* (l0+l8)+(l16+l24) = 2 */
	memset(l, 0, sizeof(l));
	l[1] = 0x1p24f;
	l[5] = -0x1p24f;
	l[2] = 1.0f;
	l[6] = 1.0f;
	assert_true(tl_quant_f16_lanes_sum(l, 1, TL_F16_VEC) == 2.0f);
	/* a stride walks a column of lanes */
	for (int i = 0; i < 32; i++)
		l[i] = (float) i;
	assert_true(tl_quant_f16_lanes_sum(l, 2, TL_F16_TILED) == 56.0f);
}

/*
 * The attention kernels over a half-precision cache, in both summation
 * orders: the dispatched (AVX2) scores and value mixes against plain
 * double-precision sums, and against the scalar kernels bit for bit, for
 * the common head sizes, odd ones (80 leaves a VEC remainder), several
 * heads sharing rows, and a lane offset that does not start at 0.
 */
static void
test_f16_attention_kernels(void **state)
{
	static const int dims[] = {64, 128, 80, 24, 13};
	static const tl_f16_order orders[] = {TL_F16_TILED, TL_F16_VEC};
	tl_rng		rng;

	tl_rng_seed(&rng, 31);
	for (size_t oi = 0; oi < 2; oi++)
		for (size_t di = 0; di < sizeof(dims) / sizeof(dims[0]); di++)
		{
			tl_f16_order order = orders[oi];
			int			D = dims[di],
						H = 3,
						P = 37,
						first = 5,
						L = tl_f16_lanes(order);
			size_t		stride = (size_t) D * 2 + 3;	/* rows inside a wider cache row */
			uint16_t   *kv = calloc((size_t) P * stride, sizeof(uint16_t));
			float	   *q = normal_row(&rng, (int64_t) H * D, 1.0f);
			float	   *prob = normal_row(&rng, (int64_t) H * P, 1.0f);
			float	   *out = calloc((size_t) H * P, sizeof(float));
			float	   *out_ref = calloc((size_t) H * P, sizeof(float));
			float	   *lanes = calloc((size_t) H * L * D, sizeof(float));
			float	   *lanes_ref = calloc((size_t) H * L * D, sizeof(float));

			for (size_t i = 0; i < (size_t) P * stride; i++)
				kv[i] = tl_f32_to_fp16(tl_rng_normal(&rng));
			tl_quant_f16_scores() (D, H, q, kv, stride, P, out, (size_t) P, order);
			tl_quant_f16_mix() (D, H, prob, (size_t) P, kv, stride, P, first, lanes, order);
			tl_quant_force_scalar(true);
			tl_quant_f16_scores() (D, H, q, kv, stride, P, out_ref, (size_t) P, order);
			tl_quant_f16_mix() (D, H, prob, (size_t) P, kv, stride, P, first, lanes_ref, order);
			tl_quant_force_scalar(false);
			assert_memory_equal(out, out_ref, sizeof(float) * (size_t) H * P);
			assert_memory_equal(lanes, lanes_ref, sizeof(float) * (size_t) H * L * D);
			for (int h = 0; h < H; h++)
				for (int p = 0; p < P; p++)
				{
					double		ref = 0,
								mag = 0;

					for (int d = 0; d < D; d++)
					{
						double		t = (double) tl_fp16_to_f32(kv[(size_t) p * stride + d]) * q[h * D + d];

						ref += t;
						mag += fabs(t);
					}
					if (fabs(out[h * P + p] - ref) > 1e-6 * mag + 1e-7)
						fail_msg("order %d D %d head %d position %d: score %.9g, expected %.9g",
								 (int) order, D, h, p, out[h * P + p], ref);
				}
			for (int h = 0; h < H; h++)
				for (int lane = 0; lane < L; lane++)
					for (int d = 0; d < D; d++)
					{
						double		ref = 0,
									mag = 0;

						for (int p = 0; p < P; p++)
							if ((first + p) % L == lane)
							{
								double		t = (double) prob[h * P + p] * tl_fp16_to_f32(kv[(size_t) p * stride + d]);

								ref += t;
								mag += fabs(t);
							}
						if (fabs(lanes[((size_t) h * L + lane) * D + d] - ref) > 1e-6 * mag + 1e-7)
							fail_msg("order %d D %d head %d lane %d dim %d: %.9g, expected %.9g",
									 (int) order, D, h, lane, d, lanes[((size_t) h * L + lane) * D + d], ref);
					}
			free(kv);
			free(q);
			free(prob);
			free(out);
			free(out_ref);
			free(lanes);
			free(lanes_ref);
		}
}

/*
 * Q8_1, the activation format of Q4_1 and Q5_1: it quantizes as ggml
 * does (scale amax/127, round half to even) and keeps s = d * sum(q) in
 * half precision; as weights it has no dot product.
 */
static void
test_q8_1_activations(void **state)
{
	tl_rng		rng;
	float	   *x,
			   *y;
	tl_block_q8_1 *q;
	float		amax = 0.0f;

	tl_rng_seed(&rng, 81);
	x = normal_row(&rng, 64, 2.0f);
	x[5] = -7.5f;				/* the first block's largest magnitude */
	q = quantize_row(TL_QT_Q8_1, x, 64);
	y = dequantize_row(TL_QT_Q8_1, q, 64);
	assert_int_equal(q[0].d, tl_f32_to_fp16(7.5f / 127.0f));
	assert_int_equal(q[0].qs[5], -127);
	for (int b = 0; b < 2; b++)
	{
		int			sum = 0;

		amax = 0.0f;
		for (int j = 0; j < 32; j++)
			amax = fmaxf(amax, fabsf(x[32 * b + j]));
		for (int j = 0; j < 32; j++)
		{
			sum += q[b].qs[j];
			assert_int_equal(q[b].qs[j], (int) lrintf(x[32 * b + j] * (127.0f / amax)));
			assert_true(fabsf(y[32 * b + j] - x[32 * b + j]) <= 0.51f * tl_fp16_to_f32(q[b].d) + 1e-3f);
		}
		assert_int_equal(q[b].s, tl_f32_to_fp16(amax / 127.0f * (float) sum));
	}
	assert_null(traits(TL_QT_Q8_1)->vec_dot);
	assert_null(tl_quant_vec_dot(TL_QT_Q8_1));
	{
		float		out[2];

		ASSERT_FAILS(TL_ERR_UNAVAILABLE, tl_quant_matvec(out, q, TL_QT_Q8_1, 2, 32, x));
	}
	free(x);
	free(y);
	free(q);
}

/*
 * Storage-only types: in the table with GGUF's geometry and names, no
 * functions, and refused by the dispatcher and the matrix products.  Every
 * code in the table is either computable (all of its functions present),
 * storage-only (none) or Q8_1, and is in one of the lists above.
 */
static void
test_storage_only(void **state)
{
	static const struct
	{
		tl_qtype	type;
		const char *name;
		int32_t		block,
					bytes;
	}			expect[] = {
		{TL_QT_Q2_K, "Q2_K", 256, 84},
		{TL_QT_Q3_K, "Q3_K", 256, 110},
	};
	float	   *x = calloc(512, sizeof(float));
	float	   *y = calloc(4, sizeof(float));
	uint8_t    *w = calloc(4, 256);
	int			listed = 0;

	assert_true(x && y && w);
	assert_int_equal(N_STORAGE_TYPES, sizeof(expect) / sizeof(expect[0]));
	for (size_t k = 0; k < sizeof(expect) / sizeof(expect[0]); k++)
	{
		const tl_qtype_traits *t = traits(expect[k].type);

		assert_int_equal(storage_types[k], expect[k].type);
		assert_string_equal(t->name, expect[k].name);
		assert_string_equal(tl_qtype_name((int) expect[k].type), expect[k].name);
		assert_int_equal(t->block_size, expect[k].block);
		assert_int_equal(t->type_size, expect[k].bytes);
		assert_int_equal(tl_qtype_row_size(expect[k].type, 2 * expect[k].block), 2 * expect[k].bytes);
		assert_int_equal(tl_qtype_row_size(expect[k].type, expect[k].block + 1), 0);
		assert_null(t->to_float);
		assert_null(t->from_float);
		assert_null(t->vec_dot);
		assert_null(t->vec_dot_avx2);
		assert_null(tl_quant_vec_dot(expect[k].type));
		tl_quant_force_scalar(true);
		assert_null(tl_quant_vec_dot(expect[k].type));
		tl_quant_force_scalar(false);

		/* a well-formed call is still refused, and says why */
		ASSERT_FAILS(TL_ERR_UNAVAILABLE, tl_quant_matvec(y, w, expect[k].type, 2, 2 * expect[k].block, x));
		assert_true(strstr(tl_last_error(), "storage-only") != NULL);
		assert_true(strstr(tl_last_error(), expect[k].name) != NULL);
		ASSERT_FAILS(TL_ERR_UNAVAILABLE, tl_quant_matmul(y, w, expect[k].type, 1, expect[k].block, x, 2));
	}

	/* the whole table: computable or storage-only, nothing in between */
	for (int code = -1; code <= TL_QT_LIMIT; code++)
	{
		const tl_qtype_traits *t = tl_qtype_info(code);
		bool		computable = false,
					storage = false;

		if (!t)
		{
			assert_string_equal(tl_qtype_name(code), "unknown");
			continue;
		}
		listed++;
		if (code == TL_QT_Q8_1)
			continue;			/* test_q8_1_activations */
		for (int i = 0; i < N_TYPES; i++)
			computable |= (int) all_types[i] == code;
		for (int i = 0; i < N_STORAGE_TYPES; i++)
			storage |= (int) storage_types[i] == code;
		if (computable == storage)
			fail_msg("type %d (%s) is in %s of the type lists", code, t->name, computable ? "both" : "neither");
		if (computable)
		{
			assert_non_null(t->to_float);
			assert_non_null(t->from_float);
			assert_non_null(t->vec_dot);
			assert_non_null(tl_quant_vec_dot((tl_qtype) code));
			assert_non_null(tl_qtype_info((int) t->vec_dot_type));
			assert_non_null(tl_qtype_info((int) t->vec_dot_type)->from_float);
		}
	}
	assert_int_equal(listed, N_TYPES + N_STORAGE_TYPES + 1);
	free(x);
	free(y);
	free(w);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fp16_edges),
		cmocka_unit_test(test_bf16_edges),
		cmocka_unit_test(test_known_float_formats),
		cmocka_unit_test(test_known_blocks_32),
		cmocka_unit_test(test_known_blocks_k),
		cmocka_unit_test(test_roundtrip_error),
		cmocka_unit_test(test_roundtrip_special_rows),
		cmocka_unit_test(test_vec_dot_reference),
		cmocka_unit_test(test_vec_dot_vs_float),
		cmocka_unit_test(test_vec_dot_simd),
		cmocka_unit_test(test_matmul_pool),
		cmocka_unit_test(test_matmul_bad_args),
		cmocka_unit_test(test_avx2_from_float),
		cmocka_unit_test(test_f16_lanes_sum),
		cmocka_unit_test(test_f16_attention_kernels),
		cmocka_unit_test(test_q8_1_activations),
		cmocka_unit_test(test_storage_only),
	};

	return cmocka_run_group_tests_name("quantized formats", tests, NULL, NULL);
}
