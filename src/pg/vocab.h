/*
 * vocab.h -- a map from identifiers (any SQL value, as text) to dense
 * indexes 1..n-1; index 0 is reserved for "unknown".
 *
 * Open addressing over palloc'd strings: ids of any length, O(1) lookups,
 * and the strings in index order for saving with a model.
 */
#ifndef TUTOR_VOCAB_H
#define TUTOR_VOCAB_H

#include "postgres.h"

typedef struct tutor_vocab
{
	char	  **strings;		/* count entries; strings[0] is NULL (unknown) */
	int32	   *lengths;		/* count */
	int32		count;			/* next index; starts at 1 */
	int32		capacity;		/* of strings/lengths */
	int32	   *slots;			/* hash table of indexes, 0 = empty */
	uint32		nslots;			/* power of two */
	int32		limit;			/* largest count allowed */
} tutor_vocab;

extern void tutor_vocab_init(tutor_vocab *v, int32 limit);
/* The index of s, adding it when add is true (else 0 when unknown). */
extern int32 tutor_vocab_lookup(tutor_vocab *v, const char *s, int32 len, bool add, const char *what);

#endif							/* TUTOR_VOCAB_H */
