/*
 * tl_blob.h -- a versioned, checked binary container for trained models.
 *
 * The PostgreSQL glue stores a model as one bytea holding this container.
 * Every integer is little-endian and encoded byte by byte, so a blob
 * written on one machine reads on any other; a float is stored as its
 * IEEE-754 bit pattern, little-endian.
 *
 *	 header (24 bytes)
 *	   8  magic "TUTORLLM"
 *	   4  u32 format version (TL_BLOB_VERSION)
 *	   4  u32 kind: the model kind, a code chosen by the caller
 *	   4  u32 section count
 *	   4  u32 reserved, 0
 *	 section, section_count times
 *	   4  u32 tag: four ASCII chars, TL_BLOB_TAG('P','A','R','M') reads "PARM"
 *	   4  u32 reserved, 0
 *	   8  u64 payload length
 *	   n  payload
 *	   p  zero padding up to a multiple of 8
 *	 trailer (8 bytes)
 *	   4  u32 CRC-32C (Castagnoli) of every byte before the trailer
 *	   4  end magic "TEND"
 *
 * The reader treats its input as hostile: tl_blob_open checks magic,
 * version, end marker, checksum and the whole section table before any
 * section is read, and every cursor getter checks the bytes left in its
 * section first.  A damaged or truncated blob gives TL_ERR_ARG with a
 * message; nothing is ever read outside the blob.
 */
#ifndef TL_BLOB_H
#define TL_BLOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tl_optim.h"
#include "tl_status.h"

#define TL_BLOB_VERSION 1

/*
 * The largest blob, trailer included: what fits in one bytea
 * (MaxAllocSize, 1 GiB - 1, less the 4-byte varlena header).
 */
#define TL_BLOB_MAX_SIZE ((size_t) 0x3FFFFFFF - 4)

/* A section tag from four ASCII chars; stored it reads as the chars in order. */
#define TL_BLOB_TAG(a, b, c, d) \
	((uint32_t) (uint8_t) (a) | ((uint32_t) (uint8_t) (b) << 8) | \
	 ((uint32_t) (uint8_t) (c) << 16) | ((uint32_t) (uint8_t) (d) << 24))

/* The section tl_blob_put_params writes. */
#define TL_BLOB_TAG_PARAMS TL_BLOB_TAG('P', 'A', 'R', 'M')

/* CRC-32C (Castagnoli, reflected 0x82F63B78, init and final xor ~0). */
uint32_t	tl_crc32c(const void *data, size_t len);

/*
 * Writer.  Values are appended to the open section; the buffer grows by
 * doubling.  The first error (out of memory, size limit, misuse) sticks:
 * every later call returns it with the same message, so a caller may
 * check only the final tl_blob_finish.
 */
typedef struct tl_blob_writer
{
	uint8_t    *data;			/* tl_alloc'd, cap bytes */
	size_t		len;			/* bytes written */
	size_t		cap;
	uint32_t	section_count;	/* closed sections */
	bool		section_open;
	uint32_t	section_tag;	/* of the open section */
	size_t		section_start;	/* offset of the open section's header */
	tl_status	error;			/* sticky; TL_OK while healthy */
	char		error_message[256];
} tl_blob_writer;

/* Start a blob for a model of the given kind; writes the header. */
tl_status	tl_blob_writer_init(tl_blob_writer *w, uint32_t kind);
/* Open a section; only one may be open at a time. */
tl_status	tl_blob_begin_section(tl_blob_writer *w, uint32_t tag);
/* Close the open section: patch its length and pad to 8 bytes. */
tl_status	tl_blob_end_section(tl_blob_writer *w);
tl_status	tl_blob_put_u32(tl_blob_writer *w, uint32_t v);
tl_status	tl_blob_put_u64(tl_blob_writer *w, uint64_t v);
tl_status	tl_blob_put_i32(tl_blob_writer *w, int32_t v);
tl_status	tl_blob_put_i64(tl_blob_writer *w, int64_t v);
tl_status	tl_blob_put_f32(tl_blob_writer *w, float v);
/* n raw bytes. */
tl_status	tl_blob_put_bytes(tl_blob_writer *w, const void *p, size_t n);
/* A u32 length, then n bytes (no terminator). */
tl_status	tl_blob_put_string(tl_blob_writer *w, const char *s, size_t n);
/* n floats, 4 bytes each. */
tl_status	tl_blob_put_f32_array(tl_blob_writer *w, const float *p, size_t n);

/*
 * Write the section count and trailer and hand the buffer over: *data
 * (tl_alloc'd, the caller tl_free's it) and *len.  On failure *data is
 * NULL.  The writer is spent afterwards; tl_blob_writer_free stays safe.
 */
tl_status	tl_blob_finish(tl_blob_writer *w, uint8_t **data, size_t *len);
/* Release whatever the writer still holds. */
void		tl_blob_writer_free(tl_blob_writer *w);

/* Reader: a validated view of a blob; it does not copy or own the bytes. */
typedef struct tl_blob_reader
{
	const uint8_t *data;
	size_t		len;
	uint32_t	kind;
	uint32_t	section_count;
} tl_blob_reader;

/* A bounded read position inside one section. */
typedef struct tl_blob_cursor
{
	const uint8_t *pos;
	size_t		remaining;		/* bytes left in the section */
	uint32_t	tag;			/* for messages */
} tl_blob_cursor;

/*
 * Validate a whole blob (magic, version, end marker, checksum, section
 * table) and return its model kind through *kind (may be NULL).  The
 * bytes must stay alive and unchanged while the reader is used.
 */
tl_status	tl_blob_open(tl_blob_reader *r, const void *data, size_t len, uint32_t *kind);
/* A cursor over the first section with this tag; TL_ERR_ARG if absent. */
tl_status	tl_blob_find_section(const tl_blob_reader *r, uint32_t tag, tl_blob_cursor *cursor);
/* Whether a section with this tag exists (for optional sections). */
bool		tl_blob_has_section(const tl_blob_reader *r, uint32_t tag);

/*
 * Cursor getters.  Each checks the bytes left first and on failure
 * returns TL_ERR_ARG and leaves the cursor where it was.
 */
tl_status	tl_blob_get_u32(tl_blob_cursor *c, uint32_t *v);
tl_status	tl_blob_get_u64(tl_blob_cursor *c, uint64_t *v);
tl_status	tl_blob_get_i32(tl_blob_cursor *c, int32_t *v);
tl_status	tl_blob_get_i64(tl_blob_cursor *c, int64_t *v);
tl_status	tl_blob_get_f32(tl_blob_cursor *c, float *v);
/* n raw bytes: *p points into the blob (no copy). */
tl_status	tl_blob_get_bytes(tl_blob_cursor *c, size_t n, const uint8_t **p);
/* A string as tl_blob_put_string wrote it: *s points into the blob, not NUL-terminated. */
tl_status	tl_blob_get_string(tl_blob_cursor *c, const char **s, size_t *n);
/* n floats decoded into caller memory. */
tl_status	tl_blob_get_f32_array(tl_blob_cursor *c, float *out, size_t n);
size_t		tl_blob_cursor_remaining(const tl_blob_cursor *c);
/* TL_ERR_ARG if the section holds bytes that were not read. */
tl_status	tl_blob_expect_end(const tl_blob_cursor *c);

/*
 * Parameters.  The 'PARM' section holds: u32 count; per parameter a
 * string name, u32 ndim and ndim i64 extents; then all ps->total values
 * as f32, in parameter order.
 */
tl_status	tl_blob_put_params(tl_blob_writer *w, const tl_params *ps);

/*
 * Load values into a parameter set that is already declared and
 * allocated (the model is rebuilt from its config first).  The count,
 * every name and shape must equal the declared ones, and every value
 * must be finite; otherwise TL_ERR_ARG names the first mismatch
 * (parameters are counted from 0, in declaration order) and ps->value
 * is left untouched.
 */
tl_status	tl_blob_get_params(const tl_blob_reader *r, tl_params *ps);

#endif							/* TL_BLOB_H */
