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

#endif							/* TL_ALLOC_H */
