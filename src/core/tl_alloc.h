/*
 * tl_alloc.h -- the one allocator of the compute core.
 *
 * Standalone builds use malloc.  Inside PostgreSQL the glue installs an
 * allocator backed by a memory context, so an ERROR raised between two
 * core calls (cancel, statement_timeout) frees everything the core held.
 * Allocation returns NULL on failure; it never throws.  Only the calling
 * (backend) thread may allocate: worker threads of the core never do.
 */
#ifndef TL_ALLOC_H
#define TL_ALLOC_H

#include <stddef.h>

#include "tl_status.h"

typedef struct tl_allocator
{
	void	   *(*alloc) (size_t bytes, void *arg);	/* zeroed memory or NULL */
	void		(*release) (void *ptr, void *arg);
	void	   *arg;
} tl_allocator;

/* Install an allocator; NULL restores malloc/free. */
void		tl_set_allocator(const tl_allocator *allocator);

/* Zero-filled allocation of count * size bytes; NULL on overflow or OOM. */
void	   *tl_alloc(size_t count, size_t size);
void		tl_free(void *ptr);

/*
 * A set of buffers allocated or freed together: a model lists its
 * buffers once (slot, element count, element size) and uses the list for
 * both, so the two can never disagree.
 */
typedef struct tl_buffer
{
	void	  **slot;			/* where the pointer goes */
	size_t		count;			/* elements */
	size_t		size;			/* bytes per element */
} tl_buffer;

#define TL_BUFFER(ptr, n) ((tl_buffer) {(void **) &(ptr), (size_t) (n), sizeof(*(ptr))})

/* Allocate all (zeroed), or none: on failure the ones done are freed. */
tl_status	tl_alloc_buffers(const tl_buffer *buffers, int n, const char *what);
/* Free all and set their slots to NULL; safe on slots already NULL. */
void		tl_free_buffers(const tl_buffer *buffers, int n);

#endif							/* TL_ALLOC_H */
