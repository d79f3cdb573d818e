/*
 * kt_data.c -- collecting scanned answers, cutting windows, batching.
 */
#include "kt_data.h"

#include "utils/memutils.h"

/* Grow an array to new_cap elements in cxt (huge: sources may be large). */
static void *
grow(MemoryContext cxt, void *p, Size elem, int64 new_cap)
{
	if (p == NULL)
		return MemoryContextAllocExtended(cxt, elem * new_cap, MCXT_ALLOC_HUGE);
	return repalloc_huge(p, elem * new_cap);
}

/* Index of an id, adding it when the dataset grows its vocabulary. */
static int32
lookup_id(kt_dataset *d, tutor_vocab *v, const char *id, const char *what, int64 *unknown)
{
	int32		index;

	if (id == NULL)
		return 0;
	index = tutor_vocab_lookup(v, id, strlen(id), d->add_vocab, what);
	if (index == 0)
		(*unknown)++;
	return index;
}

void
kt_dataset_add_student(const tutor_kt_student *st, void *arg)
{
	kt_dataset *d = arg;
	MemoryContext old;

	if (st->n < d->min_answers)
	{
		d->students_skipped++;
		return;
	}
	old = MemoryContextSwitchTo(d->cxt);
	if (d->n + st->n > d->cap)
	{
		int64		cap = Max(d->cap * 2, d->n + st->n + 1024);

		d->item = grow(d->cxt, d->item, sizeof(int32), cap);
		d->skill = grow(d->cxt, d->skill, sizeof(int32), cap);
		d->correct = grow(d->cxt, d->correct, sizeof(float), cap);
		d->cap = cap;
	}
	if (d->n_students == d->cap_students)
	{
		int64		cap = Max(d->cap_students * 2, 1024);

		d->start = grow(d->cxt, d->start, sizeof(int64), cap);
		d->len = grow(d->cxt, d->len, sizeof(int32), cap);
		d->cap_students = cap;
	}
	d->start[d->n_students] = d->n;
	d->len[d->n_students] = st->n;
	d->n_students++;
	for (int32 i = 0; i < st->n; i++)
	{
		int32		item = lookup_id(d, d->items, st->item_ids[i], "item_id", &d->unknown_items);
		int32		skill = d->skill_from_item ? item
			: lookup_id(d, d->skills, st->skill_ids[i], "skill_id", &d->unknown_skills);

		/* first-seen skill of each item: its skill when asked about it alone */
		if (d->add_vocab && item >= d->item_skill_cap)
		{
			int32		cap = Max(d->item_skill_cap * 2, item + 1024);

			d->item_skill = d->item_skill ? repalloc(d->item_skill, sizeof(int32) * cap)
				: palloc(sizeof(int32) * cap);
			memset(d->item_skill + d->item_skill_cap, -1, sizeof(int32) * (cap - d->item_skill_cap));
			d->item_skill_cap = cap;
		}
		/* item 0 stands for "no item": it keeps the unknown skill */
		if (d->add_vocab && item > 0 && d->item_skill[item] < 0)
			d->item_skill[item] = skill;
		d->item[d->n] = item;
		d->skill[d->n] = skill;
		d->correct[d->n] = st->correct[i];
		d->n++;
	}
	MemoryContextSwitchTo(old);
}

kt_window *
kt_train_windows(const kt_dataset *d, const int64 *students, int64 n_students, int32 window,
				 int64 *n_windows)
{
	int64		count = 0,
				k = 0;
	kt_window  *w;

	for (int64 s = 0; s < n_students; s++)
		count += (d->len[students[s]] + window - 1) / window;
	w = palloc_extended(sizeof(kt_window) * Max(count, 1), MCXT_ALLOC_HUGE);
	for (int64 s = 0; s < n_students; s++)
		for (int32 start = 0; start < d->len[students[s]]; start += window)
		{
			w[k].student = students[s];
			w[k].start = start;
			w[k].len = Min(window, d->len[students[s]] - start);
			w[k].score_from = 0;
			k++;
		}
	*n_windows = k;
	return w;
}

kt_window *
kt_eval_windows(const kt_dataset *d, const int64 *students, int64 n_students, int32 window,
				int64 *n_windows)
{
	int64		count = 0,
				k = 0;
	int32		stride = Max(1, window / 2);
	kt_window  *w;

	for (int64 s = 0; s < n_students; s++)
		count += 1 + Max(0, d->len[students[s]] - window + stride - 1) / stride;
	w = palloc_extended(sizeof(kt_window) * Max(count, 1), MCXT_ALLOC_HUGE);
	for (int64 s = 0; s < n_students; s++)
	{
		int32		n = d->len[students[s]],
					scored = 0,
					start = 0;

		while (scored < n)
		{
			Assert(k < count);
			w[k].student = students[s];
			w[k].start = start;
			w[k].len = Min(window, n - start);
			w[k].score_from = scored - start;
			scored = start + w[k].len;
			k++;
			start = scored - (window - stride);
		}
	}
	*n_windows = k;
	return w;
}

int64 *
kt_make_batches(const kt_window *w, int64 n_windows, int64 max_windows, int64 max_tokens,
				int64 *n_batches)
{
	int64	   *starts = palloc_extended(sizeof(int64) * (n_windows + 1), MCXT_ALLOC_HUGE);
	int64		nb = 0,
				first = 0;

	while (first < n_windows)
	{
		int64		last = first + 1;
		int32		longest = w[first].len;

		/* windows come sorted by length: the batch's T is its last window's */
		while (last < n_windows && last - first < max_windows &&
			   (last - first + 1) * (int64) Max(longest, w[last].len) <= max_tokens)
		{
			longest = Max(longest, w[last].len);
			last++;
		}
		starts[nb++] = first;
		first = last;
	}
	starts[nb] = n_windows;
	*n_batches = nb;
	return starts;
}

void
kt_fill_batch(const kt_dataset *d, const kt_window *w, int64 first, int64 last,
			  kt_batch_buf *buf, tl_kt_batch *batch)
{
	int64		B = last - first,
				T = 0;

	for (int64 k = first; k < last; k++)
		T = Max(T, w[k].len);
	if (B * T > buf->cap)
	{
		buf->cap = B * T;
		buf->items = grow(CurrentMemoryContext, buf->items, sizeof(int32), buf->cap);
		buf->skills = grow(CurrentMemoryContext, buf->skills, sizeof(int32), buf->cap);
		buf->correct = grow(CurrentMemoryContext, buf->correct, sizeof(float), buf->cap);
		buf->valid = grow(CurrentMemoryContext, buf->valid, sizeof(uint8), buf->cap);
		buf->weight = grow(CurrentMemoryContext, buf->weight, sizeof(float), buf->cap);
	}
	for (int64 b = 0; b < B; b++)
	{
		const kt_window *win = &w[first + b];
		int64		base = d->start[win->student] + win->start;

		for (int64 t = 0; t < T; t++)
		{
			int64		idx = b * T + t;
			bool		real = t < win->len;

			buf->items[idx] = real ? d->item[base + t] : 0;
			buf->skills[idx] = real ? d->skill[base + t] : 0;
			buf->correct[idx] = real ? d->correct[base + t] : 0.0f;
			buf->valid[idx] = real;
			buf->weight[idx] = real && t >= win->score_from ? 1.0f : 0.0f;
		}
	}
	*batch = (tl_kt_batch) {B, T, buf->items, buf->skills, buf->correct, buf->valid, buf->weight};
}
