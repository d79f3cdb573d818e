/*
 * vocab.c -- identifier to index maps.
 */
#include "vocab.h"

#include "common/hashfn.h"

void
tutor_vocab_init(tutor_vocab *v, int32 limit)
{
	memset(v, 0, sizeof(*v));
	v->capacity = 64;
	v->strings = palloc0(sizeof(char *) * v->capacity);
	v->lengths = palloc0(sizeof(int32) * v->capacity);
	v->count = 1;
	v->nslots = 128;
	v->slots = palloc0(sizeof(int32) * v->nslots);
	v->limit = limit;
}

/* Rebuild the hash table at twice the size. */
static void
vocab_grow_slots(tutor_vocab *v)
{
	uint32		nslots = v->nslots * 2;
	int32	   *slots = palloc0(sizeof(int32) * nslots);

	for (int32 i = 1; i < v->count; i++)
	{
		uint32		h = hash_bytes((const unsigned char *) v->strings[i], v->lengths[i]) & (nslots - 1);

		while (slots[h] != 0)
			h = (h + 1) & (nslots - 1);
		slots[h] = i;
	}
	pfree(v->slots);
	v->slots = slots;
	v->nslots = nslots;
}

int32
tutor_vocab_lookup(tutor_vocab *v, const char *s, int32 len, bool add, const char *what)
{
	uint32		h = hash_bytes((const unsigned char *) s, len) & (v->nslots - 1);
	int32		index;

	while ((index = v->slots[h]) != 0)
	{
		if (v->lengths[index] == len && memcmp(v->strings[index], s, len) == 0)
			return index;
		h = (h + 1) & (v->nslots - 1);
	}
	if (!add)
		return 0;
	if (v->count >= v->limit)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("more than %d distinct %s values", v->limit - 1, what)));
	if (v->count == v->capacity)
	{
		v->capacity *= 2;
		v->strings = repalloc(v->strings, sizeof(char *) * v->capacity);
		v->lengths = repalloc(v->lengths, sizeof(int32) * v->capacity);
	}
	index = v->count++;
	v->strings[index] = pnstrdup(s, len);
	v->lengths[index] = len;
	v->slots[h] = index;
	if ((uint32) v->count * 2 > v->nslots)
		vocab_grow_slots(v);
	return index;
}
