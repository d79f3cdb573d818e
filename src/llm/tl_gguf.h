/*
 * tl_gguf.h -- a validating reader of GGUF model files (versions 2 and 3).
 *
 * src/llm is the language-model runtime: GGUF files here, later the
 * tokenizer and the Llama/Qwen2 forward pass.  Like the rest of the
 * compute core it never includes postgres.h, never prints and never
 * aborts.
 *
 * A GGUF file, all integers little-endian:
 *
 *	 header
 *	   4  magic "GGUF"
 *	   4  u32 version (2 or 3 here)
 *	   8  u64 tensor count
 *	   8  u64 metadata key/value count
 *	 metadata, kv count times
 *	   string key (u64 length, then that many bytes, no terminator)
 *	   4  u32 value type (tl_gguf_vtype)
 *	   value: a scalar, a string, or an array (u32 element type, u64
 *	   count, then the elements back to back)
 *	 tensor infos, tensor count times
 *	   string name
 *	   4  u32 number of dimensions
 *	   8  u64 per dimension, innermost (row length) first
 *	   4  u32 ggml type (tl_qtype, from tl_quant.h)
 *	   8  u64 offset of the data from the start of the data section
 *	 zero padding up to a multiple of general.alignment
 *	 data section: each tensor at its offset, aligned
 *
 * The reader treats its input as hostile.  Every length, count and
 * offset is checked against the bytes that remain before it is used; a
 * count is capped by what those bytes could possibly hold before
 * anything is allocated for it.  A bad file gives TL_ERR_ARG and a
 * one-line message naming what is wrong and its byte offset.
 *
 * Nothing large is copied: strings, arrays and tensor data are views
 * into the file's bytes (a read-only shared mapping for tl_gguf_open),
 * valid until tl_gguf_close.  The parser allocates only the key/value
 * and tensor tables, two sorted indexes for lookups, and one offset per
 * element of each array of strings.
 *
 * Decisions beyond the specification (see tl_gguf.c for the checks):
 *	 - version 1 (32-bit counts) and big-endian files are rejected;
 *	 - arrays of arrays are rejected (no model in use writes them);
 *	 - keys must be 1..65535 bytes of printable ASCII and unique; tensor
 *	   names 1..64 bytes and unique;
 *	 - a bool must be 0 or 1;
 *	 - general.alignment, when present, must be a u32 power of two >= 8
 *	   (the specification asks for a multiple of 8; ggml for a power
 *	   of two);
 *	 - a tensor has 1..4 dimensions, each >= 1, at most INT64_MAX
 *	   elements, a row length that is a multiple of its type's block
 *	   size, an aligned offset, data inside the file, and no overlap
 *	   with another tensor's data;
 *	 - strings are not checked to be UTF-8 (the tokenizer decides).
 */
#ifndef TL_GGUF_H
#define TL_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tl_quant.h"
#include "tl_status.h"

#define TL_GGUF_MAX_DIMS 4
#define TL_GGUF_DEFAULT_ALIGNMENT 32
#define TL_GGUF_MAX_KEY_LEN 65535
#define TL_GGUF_MAX_NAME_LEN 64

/* Metadata value types, numbered as in the file. */
typedef enum tl_gguf_vtype
{
	TL_GGUF_U8 = 0,
	TL_GGUF_I8 = 1,
	TL_GGUF_U16 = 2,
	TL_GGUF_I16 = 3,
	TL_GGUF_U32 = 4,
	TL_GGUF_I32 = 5,
	TL_GGUF_F32 = 6,
	TL_GGUF_BOOL = 7,
	TL_GGUF_STRING = 8,
	TL_GGUF_ARRAY = 9,
	TL_GGUF_U64 = 10,
	TL_GGUF_I64 = 11,
	TL_GGUF_F64 = 12,
	TL_GGUF_VTYPE_COUNT
} tl_gguf_vtype;

/*
 * Tensor element types are tl_quant's (tl_qtype, numbered as ggml numbers
 * them): its table gives each type's name and block geometry, and the
 * reader accepts exactly the types that table knows, storage-only ones
 * included (see tl_quant.h).
 */

/* The name of a metadata value type ("u32", "string"), or "unknown". */
const char *tl_gguf_vtype_name(uint32_t vtype);

/* A string inside the file: not NUL-terminated, may hold any bytes. */
typedef struct tl_gguf_str
{
	const char *ptr;
	size_t		len;
} tl_gguf_str;

/* Whether s holds exactly the bytes of the C string text. */
bool		tl_gguf_str_eq(tl_gguf_str s, const char *text);

/* A decoded scalar or string value. */
typedef union tl_gguf_value
{
	uint64_t	u;				/* U8, U16, U32, U64 */
	int64_t		i;				/* I8, I16, I32, I64 */
	double		f;				/* F32, F64 */
	bool		b;				/* BOOL */
	tl_gguf_str s;				/* STRING */
} tl_gguf_value;

/* One metadata key/value. */
typedef struct tl_gguf_kv
{
	tl_gguf_str key;
	tl_gguf_vtype type;
	size_t		offset;			/* of the key in the file, for messages */
	tl_gguf_value v;			/* scalars and strings */
	/* ARRAY only: */
	tl_gguf_vtype elem_type;
	size_t		count;			/* elements */
	const uint8_t *data;		/* the first element's bytes */
	size_t	   *str_offsets;	/* strings: element i's length is at data + [i] */
} tl_gguf_kv;

/* One tensor. */
typedef struct tl_gguf_tensor
{
	tl_gguf_str name;
	uint32_t	n_dims;
	uint64_t	dims[TL_GGUF_MAX_DIMS];	/* innermost first; 1 past n_dims */
	uint64_t	n_elements;
	tl_qtype	type;
	uint64_t	offset;			/* from the start of the data section */
	uint64_t	size;			/* bytes */
	uint64_t	row_size;		/* bytes of one row (dims[0] elements) */
	const void *data;			/* into the file's bytes */
	size_t		info_offset;	/* of the tensor info in the file, for messages */
} tl_gguf_tensor;

/* An open GGUF file.  Zero it (or call tl_gguf_close) before first use. */
typedef struct tl_gguf
{
	const uint8_t *base;		/* the file's bytes */
	size_t		size;
	void	   *map;			/* our mapping, NULL for a memory buffer */
	size_t		map_size;
	uint32_t	version;
	uint32_t	alignment;
	size_t		data_offset;	/* start of the data section in the file */
	size_t		n_kv;
	tl_gguf_kv *kv;				/* in file order */
	size_t		n_tensors;
	tl_gguf_tensor *tensors;	/* in file order */
	const tl_gguf_kv **kv_sorted;	/* by key, for lookups */
	const tl_gguf_tensor **tensors_sorted;	/* by name */
} tl_gguf;

/*
 * Map a file read-only and shared (processes that open the same model
 * share its pages) and validate it.  On failure *g is left zeroed and
 * the message starts with the path.  A file truncated by someone else
 * while it is mapped raises SIGBUS on access; the reader cannot help it.
 */
tl_status	tl_gguf_open(tl_gguf *g, const char *path);

/*
 * Validate a GGUF image in memory.  The bytes are not copied: they must
 * stay alive and unchanged until tl_gguf_close.
 */
tl_status	tl_gguf_open_memory(tl_gguf *g, const void *data, size_t size);

/* Free the tables and unmap; safe on a zeroed or already closed *g. */
void		tl_gguf_close(tl_gguf *g);

/* Metadata lookup; NULL if the key is absent. */
const tl_gguf_kv *tl_gguf_find(const tl_gguf *g, const char *key);

/*
 * Typed getters.  TL_ERR_ARG when the key is absent, when its type does
 * not fit, or when its value is out of the target's range.  Integer
 * getters accept any integer type whose value fits (writers disagree on
 * u32 against u64 for counts); the float getter accepts F32 and F64.
 */
tl_status	tl_gguf_get_u32(const tl_gguf *g, const char *key, uint32_t *out);
tl_status	tl_gguf_get_i32(const tl_gguf *g, const char *key, int32_t *out);
tl_status	tl_gguf_get_u64(const tl_gguf *g, const char *key, uint64_t *out);
tl_status	tl_gguf_get_f32(const tl_gguf *g, const char *key, float *out);
tl_status	tl_gguf_get_bool(const tl_gguf *g, const char *key, bool *out);
tl_status	tl_gguf_get_string(const tl_gguf *g, const char *key, tl_gguf_str *out);

/*
 * Arrays.  Each getter checks that key holds an array of the named kind
 * (strings; any integer type; F32 or F64) and hands back its kv, whose
 * count is the number of elements.
 */
tl_status	tl_gguf_get_strings(const tl_gguf *g, const char *key, const tl_gguf_kv **kv);
tl_status	tl_gguf_get_ints(const tl_gguf *g, const char *key, const tl_gguf_kv **kv);
tl_status	tl_gguf_get_floats(const tl_gguf *g, const char *key, const tl_gguf_kv **kv);

/* Element i of an array: TL_ERR_ARG for a wrong kind or index. */
tl_status	tl_gguf_array_string(const tl_gguf_kv *kv, size_t i, tl_gguf_str *out);
/* Integers as int64; a U64 element above INT64_MAX is TL_ERR_ARG. */
tl_status	tl_gguf_array_int(const tl_gguf_kv *kv, size_t i, int64_t *out);
tl_status	tl_gguf_array_float(const tl_gguf_kv *kv, size_t i, double *out);

/*
 * Copy a whole integer or float array into caller memory of n elements
 * (n must equal kv->count); integers must fit in int32.
 */
tl_status	tl_gguf_copy_i32(const tl_gguf_kv *kv, int32_t *out, size_t n);
tl_status	tl_gguf_copy_f32(const tl_gguf_kv *kv, float *out, size_t n);

/* Tensor lookup by name; NULL if absent. */
const tl_gguf_tensor *tl_gguf_find_tensor(const tl_gguf *g, const char *name);

#endif							/* TL_GGUF_H */
