/*
 * tl_alloc.c -- allocation through a replaceable allocator.
 */
#include <stdint.h>
#include <stdlib.h>

#include "tl_alloc.h"

static tl_allocator tl_current_allocator;	/* zero: use calloc/free */

void
tl_set_allocator(const tl_allocator *allocator)
{
	if (allocator)
		tl_current_allocator = *allocator;
	else
		tl_current_allocator = (tl_allocator) {0};
}

/* Zeroed count*size bytes, or NULL on overflow or exhaustion. */
void *
tl_alloc(size_t count, size_t size)
{
	if (count == 0 || size == 0)
		count = size = 1;		/* a valid, freeable pointer */
	if (count > SIZE_MAX / size)
		return NULL;
	if (tl_current_allocator.alloc)
		return tl_current_allocator.alloc(count * size, tl_current_allocator.arg);
	return calloc(count, size);
}

void
tl_free(void *ptr)
{
	if (!ptr)
		return;
	if (tl_current_allocator.release)
		tl_current_allocator.release(ptr, tl_current_allocator.arg);
	else
		free(ptr);
}

tl_status
tl_alloc_buffers(const tl_buffer *buffers, int n, const char *what)
{
	for (int i = 0; i < n; i++)
	{
		*buffers[i].slot = tl_alloc(buffers[i].count, buffers[i].size);
		if (!*buffers[i].slot)
		{
			tl_free_buffers(buffers, i);
			return tl_fail(TL_ERR_NOMEM, "cannot allocate %s (%zu x %zu bytes)",
						   what, buffers[i].count, buffers[i].size);
		}
	}
	return TL_OK;
}

void
tl_free_buffers(const tl_buffer *buffers, int n)
{
	for (int i = 0; i < n; i++)
	{
		tl_free(*buffers[i].slot);
		*buffers[i].slot = NULL;
	}
}
