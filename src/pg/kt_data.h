/*
 * kt_data.h -- answers collected from a source scan into compact arrays,
 * and the windows and batches cut from them.  Shared by training,
 * evaluation and batch scoring.
 */
#ifndef TUTOR_KT_DATA_H
#define TUTOR_KT_DATA_H

#include "kt.h"

typedef struct kt_dataset
{
	/* answers of kept students, grouped by student, oldest first */
	int64		n;
	int64		cap;
	int32	   *item;			/* n item indexes (0 = unknown or none) */
	int32	   *skill;			/* n skill indexes */
	float	   *correct;		/* n */
	int64		n_students;
	int64		cap_students;
	int64	   *start;			/* n_students */
	int32	   *len;			/* n_students */
	tutor_vocab *items;			/* vocabularies: grown when add_vocab */
	tutor_vocab *skills;
	int32	   *item_skill;		/* training: each item's first-seen skill */
	int32		item_skill_cap;
	bool		add_vocab;
	bool		skill_from_item;	/* lookups map skill := item (item-only models) */
	int32		min_answers;	/* students with fewer are skipped */
	int64		students_skipped;
	int64		unknown_items;	/* answers whose item is not in the vocabulary */
	int64		unknown_skills;
	MemoryContext cxt;			/* owns the arrays */
} kt_dataset;

/* A run of one student's answers: [start, start+len), scored from score_from. */
typedef struct kt_window
{
	int64		student;
	int32		start;
	int32		len;
	int32		score_from;
} kt_window;

/* Scan callback that appends a student to a kt_dataset (arg). */
extern void kt_dataset_add_student(const tutor_kt_student *st, void *arg);

/* Non-overlapping windows of the given students (training). */
extern kt_window *kt_train_windows(const kt_dataset *d, const int64 *students, int64 n_students,
								   int32 window, int64 *n_windows);
/*
 * Windows that score every answer exactly once, each with at least
 * window/2 earlier answers of context once a history is that long.
 */
extern kt_window *kt_eval_windows(const kt_dataset *d, const int64 *students, int64 n_students,
								  int32 window, int64 *n_windows);

/* A batch laid out for tl_kt, with its own buffers. */
typedef struct kt_batch_buf
{
	int32	   *items;
	int32	   *skills;
	float	   *correct;
	uint8	   *valid;
	float	   *weight;
	int64		cap;
} kt_batch_buf;

/*
 * Group windows (in the given order, which the caller sorts by length)
 * into batches of at most max_windows windows and max_tokens = B * T
 * answers: returns the start of each batch in the windows array and the
 * count; batch b is [starts[b], starts[b+1]).
 */
extern int64 *kt_make_batches(const kt_window *w, int64 n_windows, int64 max_windows,
							  int64 max_tokens, int64 *n_batches);
/* Fill buf with windows [first, last) and describe them in *batch. */
extern void kt_fill_batch(const kt_dataset *d, const kt_window *w, int64 first, int64 last,
						  kt_batch_buf *buf, tl_kt_batch *batch);

#endif							/* TUTOR_KT_DATA_H */
