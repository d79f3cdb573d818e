/*
 * tl_blob.c -- the model container: writer, validating reader, CRC-32C
 * and the parameter section.  See tl_blob.h for the layout.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "tl_alloc.h"
#include "tl_blob.h"
#include "tl_bytes.h"

#define TL_BLOB_HEADER_SIZE 24
#define TL_BLOB_SECTION_HEADER_SIZE 16
#define TL_BLOB_TRAILER_SIZE 8

/* Offsets of header fields. */
#define TL_BLOB_OFF_VERSION 8
#define TL_BLOB_OFF_KIND 12
#define TL_BLOB_OFF_SECTION_COUNT 16
#define TL_BLOB_OFF_RESERVED 20

static const uint8_t tl_blob_magic[8] = {'T', 'U', 'T', 'O', 'R', 'L', 'L', 'M'};
static const uint8_t tl_blob_end_magic[4] = {'T', 'E', 'N', 'D'};

/*
 * CRC-32C lookup table for the reflected polynomial 0x82F63B78: entry i
 * is the CRC register after shifting byte i through eight rounds.
 * Generated once offline; constant, so threads share it freely.
 */
static const uint32_t tl_crc32c_table[256] = {
	0x00000000, 0xF26B8303, 0xE13B70F7, 0x1350F3F4,
	0xC79A971F, 0x35F1141C, 0x26A1E7E8, 0xD4CA64EB,
	0x8AD958CF, 0x78B2DBCC, 0x6BE22838, 0x9989AB3B,
	0x4D43CFD0, 0xBF284CD3, 0xAC78BF27, 0x5E133C24,
	0x105EC76F, 0xE235446C, 0xF165B798, 0x030E349B,
	0xD7C45070, 0x25AFD373, 0x36FF2087, 0xC494A384,
	0x9A879FA0, 0x68EC1CA3, 0x7BBCEF57, 0x89D76C54,
	0x5D1D08BF, 0xAF768BBC, 0xBC267848, 0x4E4DFB4B,
	0x20BD8EDE, 0xD2D60DDD, 0xC186FE29, 0x33ED7D2A,
	0xE72719C1, 0x154C9AC2, 0x061C6936, 0xF477EA35,
	0xAA64D611, 0x580F5512, 0x4B5FA6E6, 0xB93425E5,
	0x6DFE410E, 0x9F95C20D, 0x8CC531F9, 0x7EAEB2FA,
	0x30E349B1, 0xC288CAB2, 0xD1D83946, 0x23B3BA45,
	0xF779DEAE, 0x05125DAD, 0x1642AE59, 0xE4292D5A,
	0xBA3A117E, 0x4851927D, 0x5B016189, 0xA96AE28A,
	0x7DA08661, 0x8FCB0562, 0x9C9BF696, 0x6EF07595,
	0x417B1DBC, 0xB3109EBF, 0xA0406D4B, 0x522BEE48,
	0x86E18AA3, 0x748A09A0, 0x67DAFA54, 0x95B17957,
	0xCBA24573, 0x39C9C670, 0x2A993584, 0xD8F2B687,
	0x0C38D26C, 0xFE53516F, 0xED03A29B, 0x1F682198,
	0x5125DAD3, 0xA34E59D0, 0xB01EAA24, 0x42752927,
	0x96BF4DCC, 0x64D4CECF, 0x77843D3B, 0x85EFBE38,
	0xDBFC821C, 0x2997011F, 0x3AC7F2EB, 0xC8AC71E8,
	0x1C661503, 0xEE0D9600, 0xFD5D65F4, 0x0F36E6F7,
	0x61C69362, 0x93AD1061, 0x80FDE395, 0x72966096,
	0xA65C047D, 0x5437877E, 0x4767748A, 0xB50CF789,
	0xEB1FCBAD, 0x197448AE, 0x0A24BB5A, 0xF84F3859,
	0x2C855CB2, 0xDEEEDFB1, 0xCDBE2C45, 0x3FD5AF46,
	0x7198540D, 0x83F3D70E, 0x90A324FA, 0x62C8A7F9,
	0xB602C312, 0x44694011, 0x5739B3E5, 0xA55230E6,
	0xFB410CC2, 0x092A8FC1, 0x1A7A7C35, 0xE811FF36,
	0x3CDB9BDD, 0xCEB018DE, 0xDDE0EB2A, 0x2F8B6829,
	0x82F63B78, 0x709DB87B, 0x63CD4B8F, 0x91A6C88C,
	0x456CAC67, 0xB7072F64, 0xA457DC90, 0x563C5F93,
	0x082F63B7, 0xFA44E0B4, 0xE9141340, 0x1B7F9043,
	0xCFB5F4A8, 0x3DDE77AB, 0x2E8E845F, 0xDCE5075C,
	0x92A8FC17, 0x60C37F14, 0x73938CE0, 0x81F80FE3,
	0x55326B08, 0xA759E80B, 0xB4091BFF, 0x466298FC,
	0x1871A4D8, 0xEA1A27DB, 0xF94AD42F, 0x0B21572C,
	0xDFEB33C7, 0x2D80B0C4, 0x3ED04330, 0xCCBBC033,
	0xA24BB5A6, 0x502036A5, 0x4370C551, 0xB11B4652,
	0x65D122B9, 0x97BAA1BA, 0x84EA524E, 0x7681D14D,
	0x2892ED69, 0xDAF96E6A, 0xC9A99D9E, 0x3BC21E9D,
	0xEF087A76, 0x1D63F975, 0x0E330A81, 0xFC588982,
	0xB21572C9, 0x407EF1CA, 0x532E023E, 0xA145813D,
	0x758FE5D6, 0x87E466D5, 0x94B49521, 0x66DF1622,
	0x38CC2A06, 0xCAA7A905, 0xD9F75AF1, 0x2B9CD9F2,
	0xFF56BD19, 0x0D3D3E1A, 0x1E6DCDEE, 0xEC064EED,
	0xC38D26C4, 0x31E6A5C7, 0x22B65633, 0xD0DDD530,
	0x0417B1DB, 0xF67C32D8, 0xE52CC12C, 0x1747422F,
	0x49547E0B, 0xBB3FFD08, 0xA86F0EFC, 0x5A048DFF,
	0x8ECEE914, 0x7CA56A17, 0x6FF599E3, 0x9D9E1AE0,
	0xD3D3E1AB, 0x21B862A8, 0x32E8915C, 0xC083125F,
	0x144976B4, 0xE622F5B7, 0xF5720643, 0x07198540,
	0x590AB964, 0xAB613A67, 0xB831C993, 0x4A5A4A90,
	0x9E902E7B, 0x6CFBAD78, 0x7FAB5E8C, 0x8DC0DD8F,
	0xE330A81A, 0x115B2B19, 0x020BD8ED, 0xF0605BEE,
	0x24AA3F05, 0xD6C1BC06, 0xC5914FF2, 0x37FACCF1,
	0x69E9F0D5, 0x9B8273D6, 0x88D28022, 0x7AB90321,
	0xAE7367CA, 0x5C18E4C9, 0x4F48173D, 0xBD23943E,
	0xF36E6F75, 0x0105EC76, 0x12551F82, 0xE03E9C81,
	0x34F4F86A, 0xC69F7B69, 0xD5CF889D, 0x27A40B9E,
	0x79B737BA, 0x8BDCB4B9, 0x988C474D, 0x6AE7C44E,
	0xBE2DA0A5, 0x4C4623A6, 0x5F16D052, 0xAD7D5351,
};

/* CRC-32C of len bytes, one table lookup per byte. */
uint32_t
tl_crc32c(const void *data, size_t len)
{
	const uint8_t *p = data;
	uint32_t	crc = 0xFFFFFFFFu;

	for (size_t i = 0; i < len; i++)
		crc = tl_crc32c_table[(crc ^ p[i]) & 0xFFu] ^ (crc >> 8);
	return crc ^ 0xFFFFFFFFu;
}

/* Little-endian stores and loads, byte by byte so any host reads any blob. */
static void
store_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t) v;
	p[1] = (uint8_t) (v >> 8);
	p[2] = (uint8_t) (v >> 16);
	p[3] = (uint8_t) (v >> 24);
}

static void
store_u64(uint8_t *p, uint64_t v)
{
	store_u32(p, (uint32_t) v);
	store_u32(p + 4, (uint32_t) (v >> 32));
}

/* A tag as printable text for messages; odd bytes show as '?'. */
typedef struct tl_tag_text
{
	char		s[5];
} tl_tag_text;

static tl_tag_text
tag_text(uint32_t tag)
{
	tl_tag_text t;

	for (int i = 0; i < 4; i++)
	{
		uint8_t		ch = (uint8_t) (tag >> (8 * i));

		t.s[i] = (ch >= 0x20 && ch < 0x7F) ? (char) ch : '?';
	}
	t.s[4] = '\0';
	return t;
}

/* Bytes of padding after n payload bytes to reach a multiple of 8. */
static size_t
padding_after(uint64_t n)
{
	return (size_t) ((8 - (n & 7)) & 7);
}

/* ---------------------------------------------------------------- writer */

/*
 * Record the writer's first error: it sticks, so every later call
 * reports the same code and message instead of writing a broken blob.
 */
static tl_status writer_fail(tl_blob_writer *w, tl_status code, const char *fmt,...)
			__attribute__((format(printf, 3, 4)));

static tl_status
writer_fail(tl_blob_writer *w, tl_status code, const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(w->error_message, sizeof(w->error_message), fmt, ap);
	va_end(ap);
	w->error = code;
	return tl_fail(code, "%s", w->error_message);
}

/* Re-report a sticky error, or TL_OK while the writer is healthy. */
static tl_status
writer_check(const tl_blob_writer *w)
{
	if (w->error != TL_OK)
		return tl_fail(w->error, "%s", w->error_message);
	return TL_OK;
}

/*
 * Make room for extra more bytes, doubling the buffer, within the bytea
 * limit.  Bytes past len are always zero (tl_alloc zeroes).
 */
static tl_status
writer_reserve(tl_blob_writer *w, size_t extra)
{
	size_t		need,
				cap;
	uint8_t    *grown;

	TL_TRY(writer_check(w));
	if (extra > TL_BLOB_MAX_SIZE - w->len)
		return writer_fail(w, TL_ERR_ARG,
						   "model weights would exceed %zu bytes, the most a bytea holds",
						   TL_BLOB_MAX_SIZE);
	need = w->len + extra;
	if (need <= w->cap)
		return TL_OK;
	cap = w->cap ? w->cap : 256;
	while (cap < need)
		cap = cap > TL_BLOB_MAX_SIZE / 2 ? TL_BLOB_MAX_SIZE : cap * 2;
	grown = tl_alloc(cap, 1);
	if (!grown)
		return writer_fail(w, TL_ERR_NOMEM, "cannot grow model weights to %zu bytes", cap);
	if (w->len > 0)
		memcpy(grown, w->data, w->len);
	tl_free(w->data);
	w->data = grown;
	w->cap = cap;
	return TL_OK;
}

/* Append n bytes to the open section. */
static tl_status
writer_append(tl_blob_writer *w, const void *p, size_t n)
{
	TL_TRY(writer_check(w));
	if (!w->section_open)
		return writer_fail(w, TL_ERR_ARG, "a value was written outside a section of the model weights");
	TL_TRY(writer_reserve(w, n));
	if (n > 0)
		memcpy(w->data + w->len, p, n);
	w->len += n;
	return TL_OK;
}

/* Start a blob: the header, with the section count patched by finish. */
tl_status
tl_blob_writer_init(tl_blob_writer *w, uint32_t kind)
{
	memset(w, 0, sizeof(*w));
	TL_TRY(writer_reserve(w, TL_BLOB_HEADER_SIZE));
	memcpy(w->data, tl_blob_magic, sizeof(tl_blob_magic));
	store_u32(w->data + TL_BLOB_OFF_VERSION, TL_BLOB_VERSION);
	store_u32(w->data + TL_BLOB_OFF_KIND, kind);
	store_u32(w->data + TL_BLOB_OFF_SECTION_COUNT, 0);
	store_u32(w->data + TL_BLOB_OFF_RESERVED, 0);
	w->len = TL_BLOB_HEADER_SIZE;
	return TL_OK;
}

/* Open a section: its header, with the length patched by end_section. */
tl_status
tl_blob_begin_section(tl_blob_writer *w, uint32_t tag)
{
	uint8_t    *h;

	TL_TRY(writer_check(w));
	if (w->section_open)
		return writer_fail(w, TL_ERR_ARG, "section %s begun while section %s is open",
						   tag_text(tag).s, tag_text(w->section_tag).s);
	if (w->section_count == UINT32_MAX)
		return writer_fail(w, TL_ERR_ARG, "model weights have too many sections");
	TL_TRY(writer_reserve(w, TL_BLOB_SECTION_HEADER_SIZE));
	h = w->data + w->len;
	store_u32(h, tag);
	store_u32(h + 4, 0);
	store_u64(h + 8, 0);
	w->section_start = w->len;
	w->section_tag = tag;
	w->section_open = true;
	w->len += TL_BLOB_SECTION_HEADER_SIZE;
	return TL_OK;
}

/* Close the open section: patch its payload length, pad to 8 bytes. */
tl_status
tl_blob_end_section(tl_blob_writer *w)
{
	size_t		payload,
				pad;

	TL_TRY(writer_check(w));
	if (!w->section_open)
		return writer_fail(w, TL_ERR_ARG, "no section of the model weights is open");
	payload = w->len - w->section_start - TL_BLOB_SECTION_HEADER_SIZE;
	pad = padding_after(payload);
	TL_TRY(writer_reserve(w, pad));
	store_u64(w->data + w->section_start + 8, (uint64_t) payload);
	memset(w->data + w->len, 0, pad);
	w->len += pad;
	w->section_open = false;
	w->section_count++;
	return TL_OK;
}

tl_status
tl_blob_put_u32(tl_blob_writer *w, uint32_t v)
{
	uint8_t		b[4];

	store_u32(b, v);
	return writer_append(w, b, sizeof(b));
}

tl_status
tl_blob_put_u64(tl_blob_writer *w, uint64_t v)
{
	uint8_t		b[8];

	store_u64(b, v);
	return writer_append(w, b, sizeof(b));
}

/* Signed values as their two's complement bit patterns. */
tl_status
tl_blob_put_i32(tl_blob_writer *w, int32_t v)
{
	uint32_t	u;

	memcpy(&u, &v, sizeof(u));
	return tl_blob_put_u32(w, u);
}

tl_status
tl_blob_put_i64(tl_blob_writer *w, int64_t v)
{
	uint64_t	u;

	memcpy(&u, &v, sizeof(u));
	return tl_blob_put_u64(w, u);
}

tl_status
tl_blob_put_f32(tl_blob_writer *w, float v)
{
	return tl_blob_put_u32(w, tl_f32_bits(v));
}

tl_status
tl_blob_put_bytes(tl_blob_writer *w, const void *p, size_t n)
{
	TL_TRY(writer_check(w));
	if (n > 0 && !p)
		return writer_fail(w, TL_ERR_ARG, "NULL bytes written to the model weights");
	return writer_append(w, p, n);
}

/* A u32 length, then the bytes; the size check comes before any write. */
tl_status
tl_blob_put_string(tl_blob_writer *w, const char *s, size_t n)
{
	TL_TRY(writer_check(w));
	if (n > UINT32_MAX || n > TL_BLOB_MAX_SIZE)
		return writer_fail(w, TL_ERR_ARG, "a string of %zu bytes is too long for the model weights", n);
	if (n > 0 && !s)
		return writer_fail(w, TL_ERR_ARG, "NULL string written to the model weights");
	TL_TRY(writer_reserve(w, 4 + n));
	TL_TRY(tl_blob_put_u32(w, (uint32_t) n));
	return writer_append(w, s, n);
}

/* n floats; reserve once, then encode in place. */
tl_status
tl_blob_put_f32_array(tl_blob_writer *w, const float *p, size_t n)
{
	uint8_t    *dst;

	TL_TRY(writer_check(w));
	if (!w->section_open)
		return writer_fail(w, TL_ERR_ARG, "a value was written outside a section of the model weights");
	if (n > TL_BLOB_MAX_SIZE / 4)
		return writer_fail(w, TL_ERR_ARG,
						   "model weights would exceed %zu bytes, the most a bytea holds",
						   TL_BLOB_MAX_SIZE);
	if (n > 0 && !p)
		return writer_fail(w, TL_ERR_ARG, "NULL floats written to the model weights");
	TL_TRY(writer_reserve(w, n * 4));
	dst = w->data + w->len;
	for (size_t i = 0; i < n; i++)
		store_u32(dst + 4 * i, tl_f32_bits(p[i]));
	w->len += n * 4;
	return TL_OK;
}

/* Patch the section count, append CRC and end marker, hand the buffer over. */
tl_status
tl_blob_finish(tl_blob_writer *w, uint8_t **data, size_t *len)
{
	uint8_t    *t;

	*data = NULL;
	*len = 0;
	TL_TRY(writer_check(w));
	if (w->section_open)
		return writer_fail(w, TL_ERR_ARG, "section %s of the model weights is still open",
						   tag_text(w->section_tag).s);
	TL_TRY(writer_reserve(w, TL_BLOB_TRAILER_SIZE));
	store_u32(w->data + TL_BLOB_OFF_SECTION_COUNT, w->section_count);
	t = w->data + w->len;
	store_u32(t, tl_crc32c(w->data, w->len));
	memcpy(t + 4, tl_blob_end_magic, sizeof(tl_blob_end_magic));
	w->len += TL_BLOB_TRAILER_SIZE;

	*data = w->data;
	*len = w->len;
	w->data = NULL;
	w->len = w->cap = 0;
	/* spent: further use reports this rather than starting a headerless blob */
	w->error = TL_ERR_ARG;
	snprintf(w->error_message, sizeof(w->error_message), "the model weights writer was already finished");
	return TL_OK;
}

void
tl_blob_writer_free(tl_blob_writer *w)
{
	tl_free(w->data);
	memset(w, 0, sizeof(*w));
}

/* ---------------------------------------------------------------- reader */

/*
 * Validate everything that can be checked without knowing the sections'
 * contents.  The order gives the most useful message: foreign bytes,
 * then another format version, then damage (end marker, checksum), then
 * a structure that only a bad writer or a forged CRC can produce.
 */
tl_status
tl_blob_open(tl_blob_reader *r, const void *data, size_t len, uint32_t *kind)
{
	const uint8_t *p = data;
	size_t		pos,
				end;
	uint32_t	version,
				count;

	memset(r, 0, sizeof(*r));
	if (kind)
		*kind = 0;
	if (!p)
		return tl_fail(TL_ERR_ARG, "model weights are missing");
	if (memcmp(p, tl_blob_magic, len < sizeof(tl_blob_magic) ? len : sizeof(tl_blob_magic)) != 0)
		return tl_fail(TL_ERR_ARG, "these bytes are not tutor_llm model weights (bad magic)");
	if (len < TL_BLOB_HEADER_SIZE + TL_BLOB_TRAILER_SIZE)
		return tl_fail(TL_ERR_ARG, "model weights are truncated: %zu bytes, at least %d needed",
					   len, TL_BLOB_HEADER_SIZE + TL_BLOB_TRAILER_SIZE);
	version = tl_load_u32(p + TL_BLOB_OFF_VERSION);
	if (version != TL_BLOB_VERSION)
		return tl_fail(TL_ERR_ARG, "model weights have format version %u, but this build reads version %u",
					   version, (unsigned) TL_BLOB_VERSION);
	if (len > TL_BLOB_MAX_SIZE)
		return tl_fail(TL_ERR_ARG, "model weights are %zu bytes, more than the %zu a bytea holds",
					   len, TL_BLOB_MAX_SIZE);
	end = len - TL_BLOB_TRAILER_SIZE;
	if (memcmp(p + end + 4, tl_blob_end_magic, sizeof(tl_blob_end_magic)) != 0)
		return tl_fail(TL_ERR_ARG, "model weights are truncated or damaged: their end marker is missing");
	if (tl_load_u32(p + end) != tl_crc32c(p, end))
		return tl_fail(TL_ERR_ARG, "model weights fail their checksum");
	if (tl_load_u32(p + TL_BLOB_OFF_RESERVED) != 0)
		return tl_fail(TL_ERR_ARG, "model weights have a nonzero reserved field in their header");

	count = tl_load_u32(p + TL_BLOB_OFF_SECTION_COUNT);
	pos = TL_BLOB_HEADER_SIZE;
	for (uint32_t i = 0; i < count; i++)
	{
		uint32_t	tag;
		uint64_t	length;
		size_t		room,
					pad;

		if (end - pos < TL_BLOB_SECTION_HEADER_SIZE)
			return tl_fail(TL_ERR_ARG, "model weights declare %u sections but hold only %u",
						   count, i);
		tag = tl_load_u32(p + pos);
		length = tl_load_u64(p + pos + 8);
		room = end - pos - TL_BLOB_SECTION_HEADER_SIZE;
		if (tl_load_u32(p + pos + 4) != 0)
			return tl_fail(TL_ERR_ARG, "section %s of the model weights has a nonzero reserved field",
						   tag_text(tag).s);
		if (length > room)
			return tl_fail(TL_ERR_ARG, "section %s claims %llu bytes but only %zu remain in the model weights",
						   tag_text(tag).s, (unsigned long long) length, room);
		pad = padding_after(length);
		if (pad > room - (size_t) length)
			return tl_fail(TL_ERR_ARG, "section %s of the model weights is missing its padding",
						   tag_text(tag).s);
		pos += TL_BLOB_SECTION_HEADER_SIZE + (size_t) length;
		for (size_t k = 0; k < pad; k++)
			if (p[pos + k] != 0)
				return tl_fail(TL_ERR_ARG, "section %s of the model weights has nonzero padding",
							   tag_text(tag).s);
		pos += pad;
	}
	if (pos != end)
		return tl_fail(TL_ERR_ARG, "model weights declare %u sections but hold %zu more bytes after the last",
					   count, end - pos);

	r->data = p;
	r->len = len;
	r->kind = tl_load_u32(p + TL_BLOB_OFF_KIND);
	r->section_count = count;
	if (kind)
		*kind = r->kind;
	return TL_OK;
}

/* Walk the section table tl_blob_open validated; false if tag is absent. */
static bool
reader_locate(const tl_blob_reader *r, uint32_t tag, tl_blob_cursor *cursor)
{
	size_t		pos = TL_BLOB_HEADER_SIZE;

	if (!r->data)
		return false;
	for (uint32_t i = 0; i < r->section_count; i++)
	{
		uint32_t	this_tag = tl_load_u32(r->data + pos);
		size_t		length = (size_t) tl_load_u64(r->data + pos + 8);

		if (this_tag == tag)
		{
			cursor->pos = r->data + pos + TL_BLOB_SECTION_HEADER_SIZE;
			cursor->remaining = length;
			cursor->tag = tag;
			return true;
		}
		pos += TL_BLOB_SECTION_HEADER_SIZE + length + padding_after(length);
	}
	return false;
}

tl_status
tl_blob_find_section(const tl_blob_reader *r, uint32_t tag, tl_blob_cursor *cursor)
{
	memset(cursor, 0, sizeof(*cursor));
	cursor->tag = tag;
	if (!reader_locate(r, tag, cursor))
		return tl_fail(TL_ERR_ARG, "section %s is missing from the model weights", tag_text(tag).s);
	return TL_OK;
}

bool
tl_blob_has_section(const tl_blob_reader *r, uint32_t tag)
{
	tl_blob_cursor cursor;

	return reader_locate(r, tag, &cursor);
}

/* ---------------------------------------------------------------- cursor */

/* The one bounds check every getter goes through. */
static tl_status
cursor_need(const tl_blob_cursor *c, size_t n)
{
	if (n > c->remaining)
		return tl_fail(TL_ERR_ARG, "model weights are truncated in section %s: %zu bytes needed, %zu remain",
					   tag_text(c->tag).s, n, c->remaining);
	return TL_OK;
}

tl_status
tl_blob_get_bytes(tl_blob_cursor *c, size_t n, const uint8_t **p)
{
	TL_TRY(cursor_need(c, n));
	*p = c->pos;
	c->pos += n;
	c->remaining -= n;
	return TL_OK;
}

tl_status
tl_blob_get_u32(tl_blob_cursor *c, uint32_t *v)
{
	const uint8_t *b;

	TL_TRY(tl_blob_get_bytes(c, 4, &b));
	*v = tl_load_u32(b);
	return TL_OK;
}

tl_status
tl_blob_get_u64(tl_blob_cursor *c, uint64_t *v)
{
	const uint8_t *b;

	TL_TRY(tl_blob_get_bytes(c, 8, &b));
	*v = tl_load_u64(b);
	return TL_OK;
}

tl_status
tl_blob_get_i32(tl_blob_cursor *c, int32_t *v)
{
	uint32_t	u;

	TL_TRY(tl_blob_get_u32(c, &u));
	memcpy(v, &u, sizeof(*v));
	return TL_OK;
}

tl_status
tl_blob_get_i64(tl_blob_cursor *c, int64_t *v)
{
	uint64_t	u;

	TL_TRY(tl_blob_get_u64(c, &u));
	memcpy(v, &u, sizeof(*v));
	return TL_OK;
}

tl_status
tl_blob_get_f32(tl_blob_cursor *c, float *v)
{
	uint32_t	u;

	TL_TRY(tl_blob_get_u32(c, &u));
	*v = tl_bits_f32(u);
	return TL_OK;
}

/* Length and bytes together: on failure the cursor is where it was. */
tl_status
tl_blob_get_string(tl_blob_cursor *c, const char **s, size_t *n)
{
	tl_blob_cursor saved = *c;
	uint32_t	length;
	const uint8_t *bytes;
	tl_status	rc;

	TL_TRY(tl_blob_get_u32(c, &length));
	rc = tl_blob_get_bytes(c, length, &bytes);
	if (rc != TL_OK)
	{
		*c = saved;
		return rc;
	}
	*s = (const char *) bytes;
	*n = length;
	return TL_OK;
}

/* n floats; the division keeps n * 4 from wrapping for any n. */
tl_status
tl_blob_get_f32_array(tl_blob_cursor *c, float *out, size_t n)
{
	if (n > c->remaining / 4)
		return tl_fail(TL_ERR_ARG, "model weights are truncated in section %s: %zu floats needed, %zu bytes remain",
					   tag_text(c->tag).s, n, c->remaining);
	for (size_t i = 0; i < n; i++)
		out[i] = tl_bits_f32(tl_load_u32(c->pos + 4 * i));
	c->pos += n * 4;
	c->remaining -= n * 4;
	return TL_OK;
}

size_t
tl_blob_cursor_remaining(const tl_blob_cursor *c)
{
	return c->remaining;
}

tl_status
tl_blob_expect_end(const tl_blob_cursor *c)
{
	if (c->remaining != 0)
		return tl_fail(TL_ERR_ARG, "section %s of the model weights has %zu unexpected bytes at its end",
					   tag_text(c->tag).s, c->remaining);
	return TL_OK;
}

/* ------------------------------------------------------------ parameters */

/* The parameter section: count, then name and shape of each, then values. */
tl_status
tl_blob_put_params(tl_blob_writer *w, const tl_params *ps)
{
	TL_TRY(writer_check(w));
	if (!ps->value || ps->count <= 0)
		return writer_fail(w, TL_ERR_ARG, "parameters must be declared and allocated before they are saved");
	TL_TRY(tl_blob_begin_section(w, TL_BLOB_TAG_PARAMS));
	TL_TRY(tl_blob_put_u32(w, (uint32_t) ps->count));
	for (int i = 0; i < ps->count; i++)
	{
		const tl_param *p = &ps->items[i];

		TL_TRY(tl_blob_put_string(w, p->name, strnlen(p->name, sizeof(p->name))));
		TL_TRY(tl_blob_put_u32(w, (uint32_t) p->ndim));
		for (int d = 0; d < p->ndim; d++)
			TL_TRY(tl_blob_put_i64(w, p->shape[d]));
	}
	TL_TRY(tl_blob_put_f32_array(w, ps->value, (size_t) ps->total));
	return tl_blob_end_section(w);
}

/* A name from the blob, made printable and bounded for a message. */
static void
name_text(char *out, size_t outlen, const char *name, size_t n)
{
	size_t		shown = n < outlen - 4 ? n : outlen - 4;
	size_t		k;

	for (k = 0; k < shown; k++)
	{
		unsigned char ch = (unsigned char) name[k];

		out[k] = (ch >= 0x20 && ch < 0x7F && ch != '"') ? (char) ch : '?';
	}
	if (shown < n)
	{
		memcpy(out + k, "...", 3);
		k += 3;
	}
	out[k] = '\0';
}

/* "128 x 64", or "rank N" when the rank is out of range. */
static void
shape_text(char *out, size_t outlen, uint32_t ndim, const int64_t *shape)
{
	size_t		used = 0;

	out[0] = '\0';
	if (ndim < 1 || ndim > TL_MAX_DIMS)
	{
		snprintf(out, outlen, "rank %u", ndim);
		return;
	}
	for (uint32_t d = 0; d < ndim && used < outlen; d++)
	{
		int			wrote = snprintf(out + used, outlen - used, d ? " x %lld" : "%lld",
									 (long long) shape[d]);

		if (wrote < 0)
			break;
		used += (size_t) wrote;
	}
}

/* Does the stored description of parameter i equal the declared one? */
static bool
param_matches(const tl_param *p, const char *name, size_t name_len,
			  uint32_t ndim, const int64_t *shape)
{
	if (name_len != strnlen(p->name, sizeof(p->name)) || memcmp(name, p->name, name_len) != 0)
		return false;
	if (ndim != (uint32_t) p->ndim)
		return false;
	for (uint32_t d = 0; d < ndim; d++)
		if (shape[d] != p->shape[d])
			return false;
	return true;
}

/*
 * Check the stored parameter table against the declared one, then the
 * values for finiteness, and only then copy: a rejected blob leaves the
 * model as it was.
 */
tl_status
tl_blob_get_params(const tl_blob_reader *r, tl_params *ps)
{
	tl_blob_cursor c;
	uint32_t	count;
	const uint8_t *values;
	size_t		total;

	if (!ps->value || ps->count <= 0)
		return tl_fail(TL_ERR_ARG, "parameters must be declared and allocated before the weights are loaded");
	TL_TRY(tl_blob_find_section(r, TL_BLOB_TAG_PARAMS, &c));
	TL_TRY(tl_blob_get_u32(&c, &count));
	if (count != (uint32_t) ps->count)
		return tl_fail(TL_ERR_ARG, "the weights hold %u parameters but the model declares %d",
					   count, ps->count);
	for (int i = 0; i < ps->count; i++)
	{
		const tl_param *p = &ps->items[i];
		const char *name;
		size_t		name_len;
		uint32_t	ndim;
		int64_t		shape[TL_MAX_DIMS] = {0};

		TL_TRY(tl_blob_get_string(&c, &name, &name_len));
		TL_TRY(tl_blob_get_u32(&c, &ndim));
		if (ndim >= 1 && ndim <= TL_MAX_DIMS)
			for (uint32_t d = 0; d < ndim; d++)
				TL_TRY(tl_blob_get_i64(&c, &shape[d]));
		if (!param_matches(p, name, name_len, ndim, shape))
		{
			char		stored_name[72],
						stored_shape[96],
						declared_shape[96];

			name_text(stored_name, sizeof(stored_name), name, name_len);
			shape_text(stored_shape, sizeof(stored_shape), ndim, shape);
			shape_text(declared_shape, sizeof(declared_shape), (uint32_t) p->ndim, p->shape);
			return tl_fail(TL_ERR_ARG,
						   "parameter %d is \"%s\" (%s) in the weights but \"%s\" (%s) in the model",
						   i, stored_name, stored_shape, p->name, declared_shape);
		}
	}

	/* ps->total floats exist in memory, so the byte count cannot wrap */
	total = (size_t) ps->total;
	TL_TRY(tl_blob_get_bytes(&c, total * 4, &values));
	TL_TRY(tl_blob_expect_end(&c));
	for (int i = 0; i < ps->count; i++)
	{
		const tl_param *p = &ps->items[i];

		for (int64_t j = 0; j < p->numel; j++)
		{
			float		v = tl_bits_f32(tl_load_u32(values + 4 * (size_t) (p->offset + j)));

			if (!isfinite(v))
				return tl_fail(TL_ERR_ARG,
							   "parameter %d (\"%s\") holds %s at element %lld in the weights",
							   i, p->name, isnan(v) ? "NaN" : "an infinity", (long long) j);
		}
	}
	for (size_t k = 0; k < total; k++)
		ps->value[k] = tl_bits_f32(tl_load_u32(values + 4 * k));
	return TL_OK;
}
