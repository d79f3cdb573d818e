/*
 * tl_gguf.c -- the GGUF reader: mapping, validation, lookups.  See
 * tl_gguf.h for the layout and for what is rejected beyond the
 * specification.
 */
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tl_bytes.h"
#include "tl_alloc.h"
#include "tl_gguf.h"

#define GGUF_HEADER_SIZE 24

/*
 * The fewest bytes one entry can take, used to cap a claimed count by
 * what the rest of the file could hold before anything is allocated.
 * A key/value: key length, a 1-byte key, the type, a 1-byte value.  A
 * tensor info: name length, a 1-byte name, n_dims, one dimension, the
 * type and the offset.
 */
#define GGUF_MIN_KV_BYTES (8 + 1 + 4 + 1)
#define GGUF_MIN_TENSOR_INFO_BYTES (8 + 1 + 4 + 8 + 4 + 8)

/* ----------------------------------------------------------- type tables */

/*
 * Tensor types come from tl_quant's table (tl_qtype_info): a code it does
 * not list is unknown to this reader.
 */

/* Names and encoded sizes of metadata value types; 0: variable size. */
static const struct
{
	const char *name;
	size_t		size;
}			tl_gguf_vtypes[TL_GGUF_VTYPE_COUNT] = {
	[TL_GGUF_U8] = {"u8", 1},
	[TL_GGUF_I8] = {"i8", 1},
	[TL_GGUF_U16] = {"u16", 2},
	[TL_GGUF_I16] = {"i16", 2},
	[TL_GGUF_U32] = {"u32", 4},
	[TL_GGUF_I32] = {"i32", 4},
	[TL_GGUF_F32] = {"f32", 4},
	[TL_GGUF_BOOL] = {"bool", 1},
	[TL_GGUF_STRING] = {"string", 0},
	[TL_GGUF_ARRAY] = {"array", 0},
	[TL_GGUF_U64] = {"u64", 8},
	[TL_GGUF_I64] = {"i64", 8},
	[TL_GGUF_F64] = {"f64", 8},
};

const char *
tl_gguf_vtype_name(uint32_t vtype)
{
	return vtype < TL_GGUF_VTYPE_COUNT ? tl_gguf_vtypes[vtype].name : "unknown";
}

static bool
vtype_is_unsigned(tl_gguf_vtype t)
{
	return t == TL_GGUF_U8 || t == TL_GGUF_U16 || t == TL_GGUF_U32 || t == TL_GGUF_U64;
}

static bool
vtype_is_signed(tl_gguf_vtype t)
{
	return t == TL_GGUF_I8 || t == TL_GGUF_I16 || t == TL_GGUF_I32 || t == TL_GGUF_I64;
}

static bool
vtype_is_float(tl_gguf_vtype t)
{
	return t == TL_GGUF_F32 || t == TL_GGUF_F64;
}

/* ------------------------------------------------------------ byte access */

/* A fixed-size scalar of type t at p, already known to be in bounds. */
static tl_gguf_value
decode_scalar(tl_gguf_vtype t, const uint8_t *p)
{
	tl_gguf_value v;
	uint64_t	u64;
	double		d;

	memset(&v, 0, sizeof(v));
	switch (t)
	{
		case TL_GGUF_U8:
			v.u = p[0];
			break;
		case TL_GGUF_I8:
			v.i = (int8_t) p[0];
			break;
		case TL_GGUF_U16:
			v.u = tl_load_u16(p);
			break;
		case TL_GGUF_I16:
			v.i = (int16_t) tl_load_u16(p);
			break;
		case TL_GGUF_U32:
			v.u = tl_load_u32(p);
			break;
		case TL_GGUF_I32:
			v.i = (int32_t) tl_load_u32(p);
			break;
		case TL_GGUF_F32:
			v.f = tl_bits_f32(tl_load_u32(p));
			break;
		case TL_GGUF_BOOL:
			v.b = p[0] != 0;
			break;
		case TL_GGUF_U64:
			v.u = tl_load_u64(p);
			break;
		case TL_GGUF_I64:
			u64 = tl_load_u64(p);
			memcpy(&v.i, &u64, sizeof(v.i));
			break;
		case TL_GGUF_F64:
			u64 = tl_load_u64(p);
			memcpy(&d, &u64, sizeof(d));
			v.f = d;
			break;
		default:
			break;
	}
	return v;
}

/* Printable text of a file string for messages: '?' for odd bytes, "..." if cut. */
static const char *
str_text(char *buf, size_t cap, tl_gguf_str s)
{
	size_t		n = s.len < cap - 4 ? s.len : cap - 4;
	size_t		k;

	for (k = 0; k < n; k++)
	{
		unsigned char ch = (unsigned char) s.ptr[k];

		buf[k] = (ch >= 0x20 && ch < 0x7F) ? (char) ch : '?';
	}
	if (n < s.len)
	{
		memcpy(buf + k, "...", 3);
		k += 3;
	}
	buf[k] = '\0';
	return buf;
}

bool
tl_gguf_str_eq(tl_gguf_str s, const char *text)
{
	size_t		n = strlen(text);

	return s.len == n && (n == 0 || memcmp(s.ptr, text, n) == 0);
}

/* Byte-wise order of two file strings, shorter first on a common prefix. */
static int
str_cmp(tl_gguf_str a, tl_gguf_str b)
{
	size_t		n = a.len < b.len ? a.len : b.len;
	int			c = n ? memcmp(a.ptr, b.ptr, n) : 0;

	if (c != 0)
		return c;
	return (a.len > b.len) - (a.len < b.len);
}

/* ----------------------------------------------------------------- parser */

/*
 * A bounded read position.  what names the entry being read ("tensor
 * 7 \"blk.0.attn_q.weight\""), so every message says where it happened.
 */
typedef struct gguf_parser
{
	const uint8_t *base;
	size_t		size;
	size_t		pos;
	char		what[128];
} gguf_parser;

static tl_status parse_fail(const gguf_parser *ps, size_t at, const char *fmt,...)
			__attribute__((format(printf, 3, 4)));

/* "GGUF <entry>, byte <at>: <problem>" */
static tl_status
parse_fail(const gguf_parser *ps, size_t at, const char *fmt,...)
{
	char		msg[384];
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return tl_fail(TL_ERR_ARG, "GGUF %s, byte %zu: %s", ps->what, at, msg);
}

static size_t
remaining(const gguf_parser *ps)
{
	return ps->size - ps->pos;
}

/* The one bounds check: n more bytes, where n comes from the file. */
static tl_status
need(const gguf_parser *ps, uint64_t n, const char *field)
{
	if (n > (uint64_t) remaining(ps))
		return parse_fail(ps, ps->pos, "%s needs %llu bytes but the file ends %zu bytes later",
						  field, (unsigned long long) n, remaining(ps));
	return TL_OK;
}

static tl_status
read_u32(gguf_parser *ps, const char *field, uint32_t *v)
{
	TL_TRY(need(ps, 4, field));
	*v = tl_load_u32(ps->base + ps->pos);
	ps->pos += 4;
	return TL_OK;
}

static tl_status
read_u64(gguf_parser *ps, const char *field, uint64_t *v)
{
	TL_TRY(need(ps, 8, field));
	*v = tl_load_u64(ps->base + ps->pos);
	ps->pos += 8;
	return TL_OK;
}

/* A u64 length and that many bytes; the length is checked before use. */
static tl_status
read_str(gguf_parser *ps, const char *field, tl_gguf_str *s)
{
	size_t		at = ps->pos;
	uint64_t	len;

	TL_TRY(read_u64(ps, field, &len));
	if (len > (uint64_t) remaining(ps))
		return parse_fail(ps, at, "%s claims %llu bytes but only %zu remain in the file",
						  field, (unsigned long long) len, remaining(ps));
	s->ptr = (const char *) ps->base + ps->pos;
	s->len = (size_t) len;
	ps->pos += (size_t) len;
	return TL_OK;
}

/*
 * An array value: element type, count, elements.  Fixed-size elements
 * are one bounds check (count capped by division, so it cannot wrap);
 * strings are walked one by one, their offsets indexed.
 */
static tl_status
parse_array(gguf_parser *ps, tl_gguf_kv *kv)
{
	size_t		at = ps->pos;
	uint32_t	elem;
	uint64_t	count;
	size_t		esize;

	TL_TRY(read_u32(ps, "the array element type", &elem));
	if (elem >= TL_GGUF_VTYPE_COUNT)
		return parse_fail(ps, at, "unknown array element type %u", elem);
	if (elem == TL_GGUF_ARRAY)
		return parse_fail(ps, at, "arrays of arrays are not supported");
	at = ps->pos;
	TL_TRY(read_u64(ps, "the array length", &count));
	kv->elem_type = (tl_gguf_vtype) elem;
	kv->data = ps->base + ps->pos;

	esize = tl_gguf_vtypes[elem].size;
	if (esize > 0)
	{
		if (count > (uint64_t) (remaining(ps) / esize))
			return parse_fail(ps, at, "an array of %llu %s values cannot fit in the %zu bytes left",
							  (unsigned long long) count, tl_gguf_vtypes[elem].name, remaining(ps));
		kv->count = (size_t) count;
		if (elem == TL_GGUF_BOOL)
			for (size_t k = 0; k < kv->count; k++)
				if (kv->data[k] > 1)
					return parse_fail(ps, ps->pos + k, "bool element %zu is %u, not 0 or 1",
									  k, kv->data[k]);
		ps->pos += kv->count * esize;
		return TL_OK;
	}

	/* Strings: each takes at least its 8-byte length. */
	if (count > (uint64_t) (remaining(ps) / 8))
		return parse_fail(ps, at, "an array of %llu strings cannot fit in the %zu bytes left",
						  (unsigned long long) count, remaining(ps));
	kv->count = (size_t) count;
	if (kv->count == 0)
		return TL_OK;
	kv->str_offsets = tl_alloc(kv->count, sizeof(size_t));
	if (!kv->str_offsets)
		return tl_fail(TL_ERR_NOMEM, "GGUF %s: cannot index an array of %zu strings",
					   ps->what, kv->count);
	for (size_t k = 0; k < kv->count; k++)
	{
		tl_gguf_str s;

		kv->str_offsets[k] = (size_t) (ps->base + ps->pos - kv->data);
		TL_TRY(read_str(ps, "a string element", &s));
	}
	return TL_OK;
}

/* Keys: 1..65535 bytes of printable ASCII (the specification asks for ASCII). */
static tl_status
check_key(const gguf_parser *ps, size_t at, tl_gguf_str key)
{
	if (key.len == 0)
		return parse_fail(ps, at, "the key is empty");
	if (key.len > TL_GGUF_MAX_KEY_LEN)
		return parse_fail(ps, at, "the key is %zu bytes long, more than %d",
						  key.len, TL_GGUF_MAX_KEY_LEN);
	for (size_t k = 0; k < key.len; k++)
	{
		unsigned char ch = (unsigned char) key.ptr[k];

		if (ch < 0x20 || ch >= 0x7F)
			return parse_fail(ps, at + 8 + k, "the key holds byte 0x%02X, not printable ASCII", ch);
	}
	return TL_OK;
}

static tl_status
parse_kv(gguf_parser *ps, size_t index, tl_gguf_kv *kv)
{
	size_t		at = ps->pos;
	uint32_t	type;
	size_t		size;
	char		key_text[72];

	snprintf(ps->what, sizeof(ps->what), "metadata entry %zu", index);
	kv->offset = at;
	TL_TRY(read_str(ps, "the key", &kv->key));
	TL_TRY(check_key(ps, at, kv->key));
	snprintf(ps->what, sizeof(ps->what), "metadata entry %zu \"%s\"",
			 index, str_text(key_text, sizeof(key_text), kv->key));

	at = ps->pos;
	TL_TRY(read_u32(ps, "the value type", &type));
	if (type >= TL_GGUF_VTYPE_COUNT)
		return parse_fail(ps, at, "unknown value type %u", type);
	kv->type = (tl_gguf_vtype) type;
	if (type == TL_GGUF_STRING)
		return read_str(ps, "the string value", &kv->v.s);
	if (type == TL_GGUF_ARRAY)
		return parse_array(ps, kv);

	size = tl_gguf_vtypes[type].size;
	TL_TRY(need(ps, size, "the value"));
	if (type == TL_GGUF_BOOL && ps->base[ps->pos] > 1)
		return parse_fail(ps, ps->pos, "bool value is %u, not 0 or 1", ps->base[ps->pos]);
	kv->v = decode_scalar(kv->type, ps->base + ps->pos);
	ps->pos += size;
	return TL_OK;
}

/*
 * One tensor info.  Checks that need only the info itself happen here;
 * placement in the data section is checked once its start is known.
 */
static tl_status
parse_tensor_info(gguf_parser *ps, size_t index, uint32_t alignment, tl_gguf_tensor *t)
{
	size_t		at = ps->pos;
	uint32_t	n_dims,
				type;
	uint64_t	n = 1,
				rows;
	const tl_qtype_traits *traits;
	uint64_t	block,
				bytes;
	char		name_text[72];

	snprintf(ps->what, sizeof(ps->what), "tensor %zu", index);
	t->info_offset = at;
	TL_TRY(read_str(ps, "the name", &t->name));
	if (t->name.len == 0)
		return parse_fail(ps, at, "the name is empty");
	if (t->name.len > TL_GGUF_MAX_NAME_LEN)
		return parse_fail(ps, at, "the name is %zu bytes long, more than %d",
						  t->name.len, TL_GGUF_MAX_NAME_LEN);
	snprintf(ps->what, sizeof(ps->what), "tensor %zu \"%s\"",
			 index, str_text(name_text, sizeof(name_text), t->name));

	at = ps->pos;
	TL_TRY(read_u32(ps, "the dimension count", &n_dims));
	if (n_dims < 1 || n_dims > TL_GGUF_MAX_DIMS)
		return parse_fail(ps, at, "%u dimensions, expected 1 to %d", n_dims, TL_GGUF_MAX_DIMS);
	t->n_dims = n_dims;
	for (uint32_t d = 0; d < TL_GGUF_MAX_DIMS; d++)
		t->dims[d] = 1;
	for (uint32_t d = 0; d < n_dims; d++)
	{
		at = ps->pos;
		TL_TRY(read_u64(ps, "a dimension", &t->dims[d]));
		if (t->dims[d] == 0)
			return parse_fail(ps, at, "dimension %u is 0", d);
		/* the element count must fit in int64, as ggml counts */
		if (t->dims[d] > (uint64_t) INT64_MAX / n)
			return parse_fail(ps, at, "the element count overflows at dimension %u (%llu)",
							  d, (unsigned long long) t->dims[d]);
		n *= t->dims[d];
	}
	t->n_elements = n;

	at = ps->pos;
	TL_TRY(read_u32(ps, "the type", &type));
	traits = type < TL_QT_LIMIT ? tl_qtype_info((int) type) : NULL;
	if (!traits)
		return parse_fail(ps, at, "type %u is unknown to this reader", type);
	t->type = (tl_qtype) type;
	block = (uint64_t) traits->block_size;
	bytes = (uint64_t) traits->type_size;
	if (t->dims[0] % block != 0)
		return parse_fail(ps, at, "row length %llu is not a multiple of the %s block size %llu",
						  (unsigned long long) t->dims[0], traits->name, (unsigned long long) block);
	/* 4 bytes per F32 element: even an int64 element count can wrap */
	if (t->dims[0] / block > UINT64_MAX / bytes)
		return parse_fail(ps, at, "the row size overflows (%llu %s elements)",
						  (unsigned long long) t->dims[0], traits->name);
	t->row_size = t->dims[0] / block * bytes;
	rows = n / t->dims[0];
	if (rows > UINT64_MAX / t->row_size)
		return parse_fail(ps, at, "the data size overflows (%llu rows of %llu bytes)",
						  (unsigned long long) rows, (unsigned long long) t->row_size);
	t->size = rows * t->row_size;

	at = ps->pos;
	TL_TRY(read_u64(ps, "the data offset", &t->offset));
	if (t->offset % alignment != 0)
		return parse_fail(ps, at, "data offset %llu is not a multiple of the alignment %u",
						  (unsigned long long) t->offset, alignment);
	return TL_OK;
}

/* qsort orders (no state: the pointers carry the strings). */
static int
kv_key_order(const void *a, const void *b)
{
	return str_cmp((*(const tl_gguf_kv *const *) a)->key, (*(const tl_gguf_kv *const *) b)->key);
}

static int
tensor_name_order(const void *a, const void *b)
{
	return str_cmp((*(const tl_gguf_tensor *const *) a)->name,
				   (*(const tl_gguf_tensor *const *) b)->name);
}

static int
tensor_offset_order(const void *a, const void *b)
{
	uint64_t	x = (*(const tl_gguf_tensor *const *) a)->offset;
	uint64_t	y = (*(const tl_gguf_tensor *const *) b)->offset;

	return (x > y) - (x < y);
}

/* general.alignment: absent means 32; else a u32 power of two, at least 8. */
static tl_status
read_alignment(const tl_gguf *g, uint32_t *alignment)
{
	const tl_gguf_kv *kv = tl_gguf_find(g, "general.alignment");

	*alignment = TL_GGUF_DEFAULT_ALIGNMENT;
	if (!kv)
		return TL_OK;
	if (kv->type != TL_GGUF_U32)
		return tl_fail(TL_ERR_ARG, "GGUF metadata \"general.alignment\", byte %zu: a %s, expected u32",
					   kv->offset, tl_gguf_vtype_name(kv->type));
	if (kv->v.u < 8 || (kv->v.u & (kv->v.u - 1)) != 0)
		return tl_fail(TL_ERR_ARG, "GGUF metadata \"general.alignment\", byte %zu: %llu is not a power of two of at least 8",
					   kv->offset, (unsigned long long) kv->v.u);
	*alignment = (uint32_t) kv->v.u;
	return TL_OK;
}

/* Where each tensor's data lies: aligned, inside the file, no overlap. */
static tl_status
place_tensors(tl_gguf *g)
{
	size_t		room;
	char		a_text[72],
				b_text[72];

	room = g->size - g->data_offset;
	for (size_t k = 0; k < g->n_tensors; k++)
	{
		tl_gguf_tensor *t = &g->tensors[k];

		if (t->offset > (uint64_t) room || t->size > (uint64_t) room - t->offset)
			return tl_fail(TL_ERR_ARG, "GGUF tensor %zu \"%s\", byte %zu: data [%llu, +%llu) runs past the %zu-byte data section",
						   k, str_text(a_text, sizeof(a_text), t->name), t->info_offset,
						   (unsigned long long) t->offset, (unsigned long long) t->size, room);
		t->data = g->base + g->data_offset + (size_t) t->offset;
	}

	/* Overlap: sort by offset (the name index is rebuilt afterwards). */
	for (size_t k = 0; k < g->n_tensors; k++)
		g->tensors_sorted[k] = &g->tensors[k];
	qsort(g->tensors_sorted, g->n_tensors, sizeof(*g->tensors_sorted), tensor_offset_order);
	for (size_t k = 1; k < g->n_tensors; k++)
	{
		const tl_gguf_tensor *a = g->tensors_sorted[k - 1];
		const tl_gguf_tensor *b = g->tensors_sorted[k];

		if (a->offset + a->size > b->offset)
			return tl_fail(TL_ERR_ARG, "GGUF tensors \"%s\" (byte %zu) and \"%s\" (byte %zu) overlap in the data section",
						   str_text(a_text, sizeof(a_text), a->name), a->info_offset,
						   str_text(b_text, sizeof(b_text), b->name), b->info_offset);
	}
	return TL_OK;
}

/* The header's magic and version, with a word for the usual mistakes. */
static tl_status
check_header(const uint8_t *p, size_t size, uint32_t *version)
{
	uint32_t	v;
	uint32_t	swapped;

	if (size < GGUF_HEADER_SIZE)
		return tl_fail(TL_ERR_ARG, "GGUF file of %zu bytes is shorter than its %d-byte header",
					   size, GGUF_HEADER_SIZE);
	if (memcmp(p, "GGUF", 4) != 0)
	{
		char		magic[8];
		tl_gguf_str s = {(const char *) p, 4};

		return tl_fail(TL_ERR_ARG, "not a GGUF file: bytes 0-3 are \"%s\", expected \"GGUF\"",
					   str_text(magic, sizeof(magic), s));
	}
	v = tl_load_u32(p + 4);
	swapped = (v >> 24) | ((v >> 8) & 0xFF00u) | ((v << 8) & 0xFF0000u) | (v << 24);
	if (v == 2 || v == 3)
	{
		*version = v;
		return TL_OK;
	}
	if (v == 1)
		return tl_fail(TL_ERR_ARG, "GGUF version 1 (32-bit counts) is not supported, byte 4: only versions 2 and 3 are");
	if (swapped >= 1 && swapped <= 3)
		return tl_fail(TL_ERR_ARG, "GGUF file is big-endian (version %u byte-swapped at byte 4): not supported",
					   swapped);
	return tl_fail(TL_ERR_ARG, "GGUF version %u at byte 4 is not supported: only versions 2 and 3 are", v);
}

/* The whole parse; on failure the caller closes *g. */
static tl_status
parse(tl_gguf *g)
{
	gguf_parser ps;
	uint64_t	n_tensors,
				n_kv;
	uint64_t	data_offset;

	memset(&ps, 0, sizeof(ps));
	ps.base = g->base;
	ps.size = g->size;
	snprintf(ps.what, sizeof(ps.what), "header");
	TL_TRY(check_header(g->base, g->size, &g->version));
	ps.pos = 8;
	TL_TRY(read_u64(&ps, "the tensor count", &n_tensors));
	TL_TRY(read_u64(&ps, "the metadata count", &n_kv));
	if (n_kv > (uint64_t) (remaining(&ps) / GGUF_MIN_KV_BYTES))
		return parse_fail(&ps, 16, "%llu metadata entries cannot fit in the %zu bytes left",
						  (unsigned long long) n_kv, remaining(&ps));
	if (n_tensors > (uint64_t) (remaining(&ps) / GGUF_MIN_TENSOR_INFO_BYTES))
		return parse_fail(&ps, 8, "%llu tensors cannot fit in the %zu bytes left",
						  (unsigned long long) n_tensors, remaining(&ps));

	/* Metadata.  Both counts are now bounded by the file size. */
	g->n_kv = (size_t) n_kv;
	g->kv = tl_alloc(g->n_kv, sizeof(*g->kv));
	g->kv_sorted = tl_alloc(g->n_kv, sizeof(*g->kv_sorted));
	if (!g->kv || !g->kv_sorted)
		return tl_fail(TL_ERR_NOMEM, "GGUF: cannot allocate %zu metadata entries", g->n_kv);
	for (size_t k = 0; k < g->n_kv; k++)
	{
		TL_TRY(parse_kv(&ps, k, &g->kv[k]));
		g->kv_sorted[k] = &g->kv[k];
	}
	qsort(g->kv_sorted, g->n_kv, sizeof(*g->kv_sorted), kv_key_order);
	for (size_t k = 1; k < g->n_kv; k++)
		if (str_cmp(g->kv_sorted[k - 1]->key, g->kv_sorted[k]->key) == 0)
		{
			char		key_text[72];

			return tl_fail(TL_ERR_ARG, "GGUF metadata key \"%s\" appears twice (bytes %zu and %zu)",
						   str_text(key_text, sizeof(key_text), g->kv_sorted[k]->key),
						   g->kv_sorted[k - 1]->offset, g->kv_sorted[k]->offset);
		}
	TL_TRY(read_alignment(g, &g->alignment));

	/* Tensor infos: the count is checked again against what is left. */
	snprintf(ps.what, sizeof(ps.what), "header");
	if (n_tensors > (uint64_t) (remaining(&ps) / GGUF_MIN_TENSOR_INFO_BYTES))
		return parse_fail(&ps, 8, "%llu tensors cannot fit in the %zu bytes left after the metadata",
						  (unsigned long long) n_tensors, remaining(&ps));
	g->n_tensors = (size_t) n_tensors;
	g->tensors = tl_alloc(g->n_tensors, sizeof(*g->tensors));
	g->tensors_sorted = tl_alloc(g->n_tensors, sizeof(*g->tensors_sorted));
	if (!g->tensors || !g->tensors_sorted)
		return tl_fail(TL_ERR_NOMEM, "GGUF: cannot allocate %zu tensor infos", g->n_tensors);
	for (size_t k = 0; k < g->n_tensors; k++)
		TL_TRY(parse_tensor_info(&ps, k, g->alignment, &g->tensors[k]));

	/* The data section starts at the next multiple of the alignment. */
	data_offset = (uint64_t) ps.pos + (g->alignment - ps.pos % g->alignment) % g->alignment;
	if (data_offset > g->size)
	{
		if (g->n_tensors > 0)
			return tl_fail(TL_ERR_ARG, "GGUF data section would start at byte %llu, past the end of the %zu-byte file",
						   (unsigned long long) data_offset, g->size);
		data_offset = g->size;	/* no tensors: the padding may be missing */
	}
	g->data_offset = (size_t) data_offset;
	TL_TRY(place_tensors(g));

	for (size_t k = 0; k < g->n_tensors; k++)
		g->tensors_sorted[k] = &g->tensors[k];
	qsort(g->tensors_sorted, g->n_tensors, sizeof(*g->tensors_sorted), tensor_name_order);
	for (size_t k = 1; k < g->n_tensors; k++)
		if (str_cmp(g->tensors_sorted[k - 1]->name, g->tensors_sorted[k]->name) == 0)
		{
			char		name_text[72];

			return tl_fail(TL_ERR_ARG, "GGUF tensor name \"%s\" appears twice (bytes %zu and %zu)",
						   str_text(name_text, sizeof(name_text), g->tensors_sorted[k]->name),
						   g->tensors_sorted[k - 1]->info_offset, g->tensors_sorted[k]->info_offset);
		}
	return TL_OK;
}

tl_status
tl_gguf_open_memory(tl_gguf *g, const void *data, size_t size)
{
	tl_status	rc;

	memset(g, 0, sizeof(*g));
	if (!data && size > 0)
		return tl_fail(TL_ERR_ARG, "GGUF: NULL buffer of %zu bytes", size);
	g->base = data;
	g->size = data ? size : 0;
	rc = parse(g);
	if (rc != TL_OK)
		tl_gguf_close(g);
	return rc;
}

/* Re-record the last message with the path in front of it. */
static tl_status
fail_with_path(tl_status rc, const char *path)
{
	char		msg[512];

	snprintf(msg, sizeof(msg), "%s", tl_last_error());
	return tl_fail(rc, "%s: %s", path, msg);
}

tl_status
tl_gguf_open(tl_gguf *g, const char *path)
{
	struct stat st;
	int			fd;
	void	   *map;
	tl_status	rc;

	memset(g, 0, sizeof(*g));
	if (!path)
		return tl_fail(TL_ERR_ARG, "GGUF: NULL path");
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return tl_fail(TL_ERR_ARG, "%s: cannot open: %s", path, strerror(errno));
	if (fstat(fd, &st) != 0)
	{
		int			e = errno;

		close(fd);
		return tl_fail(TL_ERR_ARG, "%s: cannot stat: %s", path, strerror(e));
	}
	if (!S_ISREG(st.st_mode))
	{
		close(fd);
		return tl_fail(TL_ERR_ARG, "%s: not a regular file", path);
	}
	if (st.st_size < GGUF_HEADER_SIZE || (uint64_t) st.st_size > (uint64_t) SIZE_MAX)
	{
		close(fd);
		return tl_fail(TL_ERR_ARG, "%s: a GGUF file of %lld bytes is impossible",
					   path, (long long) st.st_size);
	}
	/* Shared and read-only: backends that open the same model share pages. */
	map = mmap(NULL, (size_t) st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);					/* the mapping keeps the file */
	if (map == MAP_FAILED)
		return tl_fail(TL_ERR_NOMEM, "%s: cannot map %lld bytes: %s",
					   path, (long long) st.st_size, strerror(errno));

	g->map = map;
	g->map_size = (size_t) st.st_size;
	g->base = map;
	g->size = (size_t) st.st_size;
	rc = parse(g);
	if (rc != TL_OK)
	{
		rc = fail_with_path(rc, path);
		tl_gguf_close(g);
	}
	return rc;
}

void
tl_gguf_close(tl_gguf *g)
{
	if (g->kv)
		for (size_t k = 0; k < g->n_kv; k++)
			tl_free(g->kv[k].str_offsets);
	tl_free(g->kv);
	tl_free(g->kv_sorted);
	tl_free(g->tensors);
	tl_free(g->tensors_sorted);
	if (g->map)
		munmap(g->map, g->map_size);
	memset(g, 0, sizeof(*g));
}

/* ----------------------------------------------------------------- lookup */

const tl_gguf_kv *
tl_gguf_find(const tl_gguf *g, const char *key)
{
	tl_gguf_str probe = {key, strlen(key)};
	size_t		lo = 0,
				hi = g->n_kv;

	if (!g->kv_sorted)
		return NULL;
	while (lo < hi)
	{
		size_t		mid = lo + (hi - lo) / 2;
		int			c = str_cmp(g->kv_sorted[mid]->key, probe);

		if (c == 0)
			return g->kv_sorted[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

const tl_gguf_tensor *
tl_gguf_find_tensor(const tl_gguf *g, const char *name)
{
	tl_gguf_str probe = {name, strlen(name)};
	size_t		lo = 0,
				hi = g->n_tensors;

	if (!g->tensors_sorted)
		return NULL;
	while (lo < hi)
	{
		size_t		mid = lo + (hi - lo) / 2;
		int			c = str_cmp(g->tensors_sorted[mid]->name, probe);

		if (c == 0)
			return g->tensors_sorted[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static tl_status
find_kv(const tl_gguf *g, const char *key, const tl_gguf_kv **kv)
{
	*kv = tl_gguf_find(g, key);
	if (!*kv)
		return tl_fail(TL_ERR_ARG, "GGUF metadata key \"%s\" is missing", key);
	return TL_OK;
}

static tl_status
wrong_type(const tl_gguf_kv *kv, const char *key, const char *expected)
{
	if (kv->type == TL_GGUF_ARRAY)
		return tl_fail(TL_ERR_ARG, "GGUF metadata \"%s\" is an array of %s, expected %s",
					   key, tl_gguf_vtype_name(kv->elem_type), expected);
	return tl_fail(TL_ERR_ARG, "GGUF metadata \"%s\" is a %s, expected %s",
				   key, tl_gguf_vtype_name(kv->type), expected);
}

/*
 * An integer value as a range check sees it: negative, or its magnitude
 * as u64.  False if the type is not an integer.
 */
static bool
int_value(tl_gguf_vtype t, tl_gguf_value v, bool *negative, uint64_t *magnitude)
{
	if (vtype_is_unsigned(t))
	{
		*negative = false;
		*magnitude = v.u;
		return true;
	}
	if (vtype_is_signed(t))
	{
		*negative = v.i < 0;
		*magnitude = v.i < 0 ? (uint64_t) 0 - (uint64_t) v.i : (uint64_t) v.i;
		return true;
	}
	return false;
}

/* The integer of key within [-neg_limit, pos_limit], as int64 or u64. */
static tl_status
get_int(const tl_gguf *g, const char *key, uint64_t neg_limit, uint64_t pos_limit,
		const char *target, bool *negative, uint64_t *magnitude)
{
	const tl_gguf_kv *kv;

	TL_TRY(find_kv(g, key, &kv));
	if (!int_value(kv->type, kv->v, negative, magnitude))
		return wrong_type(kv, key, "an integer");
	if (*magnitude > (*negative ? neg_limit : pos_limit))
	{
		if (*negative)
			return tl_fail(TL_ERR_ARG, "GGUF metadata \"%s\" is -%llu, out of range for %s",
						   key, (unsigned long long) *magnitude, target);
		return tl_fail(TL_ERR_ARG, "GGUF metadata \"%s\" is %llu, out of range for %s",
					   key, (unsigned long long) *magnitude, target);
	}
	return TL_OK;
}

tl_status
tl_gguf_get_u32(const tl_gguf *g, const char *key, uint32_t *out)
{
	bool		negative = false;
	uint64_t	m = 0;

	TL_TRY(get_int(g, key, 0, UINT32_MAX, "u32", &negative, &m));
	*out = (uint32_t) m;
	return TL_OK;
}

tl_status
tl_gguf_get_i32(const tl_gguf *g, const char *key, int32_t *out)
{
	bool		negative = false;
	uint64_t	m = 0;

	TL_TRY(get_int(g, key, (uint64_t) INT32_MAX + 1, INT32_MAX, "i32", &negative, &m));
	*out = negative ? (int32_t) (-(int64_t) m) : (int32_t) m;
	return TL_OK;
}

tl_status
tl_gguf_get_u64(const tl_gguf *g, const char *key, uint64_t *out)
{
	bool		negative = false;
	uint64_t	m = 0;

	TL_TRY(get_int(g, key, 0, UINT64_MAX, "u64", &negative, &m));
	*out = m;
	return TL_OK;
}

/* A double as float: out of float range is an error, NaN and Inf pass. */
static tl_status
narrow_float(double d, const char *what, float *out)
{
	if (isfinite(d) && fabs(d) > FLT_MAX)
		return tl_fail(TL_ERR_ARG, "GGUF %s holds %g, out of range for f32", what, d);
	*out = (float) d;
	return TL_OK;
}

tl_status
tl_gguf_get_f32(const tl_gguf *g, const char *key, float *out)
{
	const tl_gguf_kv *kv;
	char		what[96];

	TL_TRY(find_kv(g, key, &kv));
	if (!vtype_is_float(kv->type))
		return wrong_type(kv, key, "f32 or f64");
	snprintf(what, sizeof(what), "metadata \"%s\"", key);
	return narrow_float(kv->v.f, what, out);
}

tl_status
tl_gguf_get_bool(const tl_gguf *g, const char *key, bool *out)
{
	const tl_gguf_kv *kv;

	TL_TRY(find_kv(g, key, &kv));
	if (kv->type != TL_GGUF_BOOL)
		return wrong_type(kv, key, "bool");
	*out = kv->v.b;
	return TL_OK;
}

tl_status
tl_gguf_get_string(const tl_gguf *g, const char *key, tl_gguf_str *out)
{
	const tl_gguf_kv *kv;

	TL_TRY(find_kv(g, key, &kv));
	if (kv->type != TL_GGUF_STRING)
		return wrong_type(kv, key, "string");
	*out = kv->v.s;
	return TL_OK;
}

/* key must be an array whose element type passes accept. */
static tl_status
get_array(const tl_gguf *g, const char *key, bool (*accept) (tl_gguf_vtype),
		  const char *expected, const tl_gguf_kv **kv)
{
	TL_TRY(find_kv(g, key, kv));
	if ((*kv)->type != TL_GGUF_ARRAY || !accept((*kv)->elem_type))
	{
		tl_status	rc = wrong_type(*kv, key, expected);

		*kv = NULL;
		return rc;
	}
	return TL_OK;
}

static bool
vtype_is_string(tl_gguf_vtype t)
{
	return t == TL_GGUF_STRING;
}

static bool
vtype_is_int(tl_gguf_vtype t)
{
	return vtype_is_unsigned(t) || vtype_is_signed(t);
}

tl_status
tl_gguf_get_strings(const tl_gguf *g, const char *key, const tl_gguf_kv **kv)
{
	return get_array(g, key, vtype_is_string, "an array of strings", kv);
}

tl_status
tl_gguf_get_ints(const tl_gguf *g, const char *key, const tl_gguf_kv **kv)
{
	return get_array(g, key, vtype_is_int, "an array of integers", kv);
}

tl_status
tl_gguf_get_floats(const tl_gguf *g, const char *key, const tl_gguf_kv **kv)
{
	return get_array(g, key, vtype_is_float, "an array of floats", kv);
}

/* Element i of an array of a kind accept passes. */
static tl_status
check_element(const tl_gguf_kv *kv, size_t i, bool (*accept) (tl_gguf_vtype), const char *expected)
{
	char		key_text[72];

	if (kv->type != TL_GGUF_ARRAY || !accept(kv->elem_type))
		return tl_fail(TL_ERR_ARG, "GGUF metadata \"%s\" is not %s",
					   str_text(key_text, sizeof(key_text), kv->key), expected);
	if (i >= kv->count)
		return tl_fail(TL_ERR_ARG, "GGUF metadata \"%s\": index %zu is past its %zu elements",
					   str_text(key_text, sizeof(key_text), kv->key), i, kv->count);
	return TL_OK;
}

tl_status
tl_gguf_array_string(const tl_gguf_kv *kv, size_t i, tl_gguf_str *out)
{
	const uint8_t *p;

	TL_TRY(check_element(kv, i, vtype_is_string, "an array of strings"));
	/* the parser checked each length against the file */
	p = kv->data + kv->str_offsets[i];
	out->len = (size_t) tl_load_u64(p);
	out->ptr = (const char *) p + 8;
	return TL_OK;
}

tl_status
tl_gguf_array_int(const tl_gguf_kv *kv, size_t i, int64_t *out)
{
	tl_gguf_value v;
	char		key_text[72];

	TL_TRY(check_element(kv, i, vtype_is_int, "an array of integers"));
	v = decode_scalar(kv->elem_type, kv->data + i * tl_gguf_vtypes[kv->elem_type].size);
	if (vtype_is_unsigned(kv->elem_type))
	{
		if (v.u > (uint64_t) INT64_MAX)
			return tl_fail(TL_ERR_ARG, "GGUF metadata \"%s\" element %zu is %llu, out of range for i64",
						   str_text(key_text, sizeof(key_text), kv->key), i,
						   (unsigned long long) v.u);
		*out = (int64_t) v.u;
	}
	else
		*out = v.i;
	return TL_OK;
}

tl_status
tl_gguf_array_float(const tl_gguf_kv *kv, size_t i, double *out)
{
	TL_TRY(check_element(kv, i, vtype_is_float, "an array of floats"));
	*out = decode_scalar(kv->elem_type, kv->data + i * tl_gguf_vtypes[kv->elem_type].size).f;
	return TL_OK;
}

/* The whole array must be wanted: n == count. */
static tl_status
check_copy(const tl_gguf_kv *kv, size_t n, bool (*accept) (tl_gguf_vtype), const char *expected)
{
	char		key_text[72];

	if (kv->type != TL_GGUF_ARRAY || !accept(kv->elem_type))
		return tl_fail(TL_ERR_ARG, "GGUF metadata \"%s\" is not %s",
					   str_text(key_text, sizeof(key_text), kv->key), expected);
	if (n != kv->count)
		return tl_fail(TL_ERR_ARG, "GGUF metadata \"%s\" holds %zu elements, %zu expected",
					   str_text(key_text, sizeof(key_text), kv->key), kv->count, n);
	return TL_OK;
}

tl_status
tl_gguf_copy_i32(const tl_gguf_kv *kv, int32_t *out, size_t n)
{
	size_t		esize;
	char		key_text[72];

	TL_TRY(check_copy(kv, n, vtype_is_int, "an array of integers"));
	esize = tl_gguf_vtypes[kv->elem_type].size;
	for (size_t k = 0; k < n; k++)
	{
		tl_gguf_value v = decode_scalar(kv->elem_type, kv->data + k * esize);
		bool		negative = false;
		uint64_t	m = 0;

		int_value(kv->elem_type, v, &negative, &m);
		if (m > (negative ? (uint64_t) INT32_MAX + 1 : (uint64_t) INT32_MAX))
			return tl_fail(TL_ERR_ARG, "GGUF metadata \"%s\" element %zu is out of range for i32",
						   str_text(key_text, sizeof(key_text), kv->key), k);
		out[k] = negative ? (int32_t) (-(int64_t) m) : (int32_t) m;
	}
	return TL_OK;
}

tl_status
tl_gguf_copy_f32(const tl_gguf_kv *kv, float *out, size_t n)
{
	size_t		esize;
	char		key_text[72];

	TL_TRY(check_copy(kv, n, vtype_is_float, "an array of floats"));
	esize = tl_gguf_vtypes[kv->elem_type].size;
	for (size_t k = 0; k < n; k++)
	{
		double		d = decode_scalar(kv->elem_type, kv->data + k * esize).f;

		/* an F32 element comes back exactly; an F64 one must fit */
		if (isfinite(d) && fabs(d) > FLT_MAX)
			return tl_fail(TL_ERR_ARG, "GGUF metadata \"%s\" element %zu holds %g, out of range for f32",
						   str_text(key_text, sizeof(key_text), kv->key), k, d);
		out[k] = (float) d;
	}
	return TL_OK;
}
