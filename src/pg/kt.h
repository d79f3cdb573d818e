/*
 * kt.h -- knowledge tracing in the glue: reading sources, the model
 * catalog, training, evaluation and inference.
 *
 *   kt_source.c   resolve a table/view/query, check its columns, stream
 *                 answers grouped by student through an SPI cursor
 *   kt_catalog.c  tutor.models: save, load (checked), deploy, ownership,
 *                 and a per-backend cache of loaded models
 *   kt_train.c    tutor.train_kt, tutor.evaluate_kt
 *   kt_infer.c    tutor.mastery, tutor.predict_correct, tutor.mastery_all
 *   progress.c    tutor.training_progress (shared memory)
 */
#ifndef TUTOR_KT_H
#define TUTOR_KT_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "utils/array.h"
#include "utils/jsonb.h"

#include "tl_kt.h"
#include "tl_pfa.h"
#include "vocab.h"

/* ---- sources --------------------------------------------------------------- */

/* Column roles of a source, with the default names. */
typedef enum tutor_kt_role
{
	KT_COL_STUDENT,				/* student_id */
	KT_COL_ITEM,				/* item_id */
	KT_COL_SKILL,				/* skill_id */
	KT_COL_CORRECT,				/* correct */
	KT_COL_TIME,				/* answered_at */
	KT_NCOLS
} tutor_kt_role;

extern const char *const tutor_kt_role_names[KT_NCOLS];

typedef struct tutor_kt_source
{
	char	   *text;			/* as given: a relation name or a query */
	char	   *from_sql;		/* "schema.rel" quoted, or "(query)" */
	char	   *column[KT_NCOLS];	/* column names; item or skill may be NULL (absent) */
	Oid			type[KT_NCOLS];	/* their types (InvalidOid when absent) */
	bool		time_is_timestamp;	/* answered_at converts to timestamptz */
} tutor_kt_source;

/*
 * Resolve `source` with the column mapping in `columns` (a jsonb object
 * of role -> column name or null, may be NULL) and check names and types.
 * Errors name the column.
 */
extern void tutor_kt_source_resolve(tutor_kt_source *src, const char *source, Jsonb *columns);

/* Serialize / restore a resolved source (for the model's config). */
extern void tutor_kt_source_to_config(const tutor_kt_source *src, StringInfo json);
extern void tutor_kt_source_from_config(tutor_kt_source *src, Jsonb *config);

/* One student's answers, oldest first, as delivered by a scan. */
typedef struct tutor_kt_student
{
	const char *id;				/* the student id as text */
	int32		n;				/* answers */
	const char *const *item_ids;	/* n, NULL entries for NULL values */
	const char *const *skill_ids;	/* n */
	const float *correct;		/* n, in [0, 1] */
	const TimestampTz *time;	/* n, or NULL when answered_at is not a time */
	const bool *time_null;		/* n */
} tutor_kt_student;

typedef void (*tutor_kt_student_fn) (const tutor_kt_student *student, void *arg);

typedef struct tutor_kt_scan_stats
{
	int64		rows_read;
	int64		rows_skipped;	/* NULL student or correctness, or no item and no skill */
} tutor_kt_scan_stats;

/*
 * Which answers a scan reads.  At most one of the student selectors is
 * set; `until` keeps answers at or before a time (needs a time column).
 */
typedef struct tutor_kt_filter
{
	Datum		student;		/* one student, a value of student_type ... */
	Oid			student_type;	/* ... or InvalidOid */
	const char *students_sql;	/* students in the first column of this FROM item */
	ArrayType  *students;		/* students whose ids (as text) are in this text[] */
	bool		until_set;
	TimestampTz until;
} tutor_kt_filter;

/*
 * Stream the source ordered by (student, answered_at) through an SPI
 * cursor in chunks, calling fn once per student with answers.  filter
 * may be NULL (everything).  The caller has done SPI_connect.
 */
extern void tutor_kt_scan(const tutor_kt_source *src, const tutor_kt_filter *filter,
						  tutor_kt_student_fn fn, void *arg, tutor_kt_scan_stats *stats);

/* "schema.rel" for a relation name, or "(query)" for SELECT/WITH/VALUES/TABLE text. */
extern char *tutor_source_from_sql(const char *source);

/* ---- models ---------------------------------------------------------------- */

typedef enum tutor_kt_kind
{
	KT_KIND_TRANSFORMER,
	KT_KIND_PFA
} tutor_kt_kind;

/* A loaded, ready-to-use model (cached per backend). */
typedef struct tutor_kt_model
{
	int64		model_id;
	TransactionId row_xmin;		/* the catalog row version it was loaded from */
	char	   *name;
	int32		version;
	tutor_kt_kind kind;
	tutor_kt_source source;
	tutor_vocab items;			/* item id text -> index */
	tutor_vocab skills;			/* skill id text -> index */
	int32	   *item_skill;		/* items.count: each item's main skill index */
	bool		skill_from_item;	/* trained on item-only data: skill = item */
	tl_kt		kt;				/* KT_KIND_TRANSFORMER */
	tl_pfa		pfa;			/* KT_KIND_PFA */
	float	   *skill_mu_avg;	/* skills.count */
	float	   *skill_bias_avg; /* skills.count */
	MemoryContext context;		/* owns everything above */
} tutor_kt_model;

/* Everything train_kt hands to the catalog. */
typedef struct tutor_kt_trained
{
	const char *name;
	tutor_kt_kind kind;
	const tutor_kt_source *source;
	const tutor_vocab *items;
	const tutor_vocab *skills;
	const int32 *item_skill;
	bool		skill_from_item;
	const tl_kt_config *kt_config;	/* KT_KIND_TRANSFORMER */
	const tl_pfa_config *pfa_config;	/* KT_KIND_PFA */
	const tl_params *params;
	const char *options_json;	/* the effective options */
	const char *metrics_json;	/* the training report */
} tutor_kt_trained;

extern const char *tutor_kt_kind_name(tutor_kt_kind kind);

/* Fail unless the current user may add versions of (or deploy) `name`. */
extern void tutor_kt_check_owner(const char *name, bool must_exist);
/* Insert a new version; returns it and whether it was deployed. */
extern int32 tutor_kt_save(const tutor_kt_trained *t, bool *deployed);
/* Load a model by name (NULL = the default deployed model) through the cache. */
extern tutor_kt_model *tutor_kt_load(const char *name);

/* ---- inference (kt_infer.c) ---------------------------------------------- */

/* One student's history as model indexes. */
typedef struct tutor_kt_history
{
	const tutor_kt_model *model;
	int32		n;
	int32	   *items;			/* n */
	int32	   *skills;			/* n */
	float	   *correct;		/* n */
	int32	   *attempts;		/* per skill */
	TimestampTz *last_seen;		/* per skill, 0 = never */
	bool	   *seen;			/* per skill */
} tutor_kt_history;

/* An empty history (a new student: predictions are the prior). */
extern void tutor_kt_history_init(tutor_kt_history *h, const tutor_kt_model *m);
/* Scan callback (arg = an initialised history): one student's answers as indexes. */
extern void tutor_kt_history_load(const tutor_kt_student *st, void *arg);
/* P(correct) for each of n questions after history h. */
extern void tutor_kt_predict(tutor_kt_model *m, const tutor_kt_history *h, const tl_kt_query *q,
							 int64 n, float *probs);
/*
 * Transformer copies for predicting many students: one per thread of the
 * core's pool, each sized for its share of TUTOR_KT_BATCH_TOKENS answers
 * (tl_kt_predict_many runs them side by side).  The cached model itself is
 * sized for one history at a time.  Free with tutor_kt_batch_instances_free.
 */
#define TUTOR_KT_BATCH_TOKENS 2048
extern tl_kt **tutor_kt_batch_instances(const tutor_kt_model *m, int *n);
extern void tutor_kt_batch_instances_free(const tutor_kt_model *m, tl_kt **kts, int n);
/* A value converted to another type through its text form (ids). */
extern Datum tutor_convert_datum(Datum value, Oid from, Oid to);

/* ---- progress (progress.c) ------------------------------------------------- */

extern void tutor_progress_shmem_init(void);
extern void tutor_progress_begin(const char *model_name, const char *kind);
extern void tutor_progress_phase(const char *phase);
extern void tutor_progress_scan(int64 rows_read, int64 students, int64 interactions);
extern void tutor_progress_epoch(int32 epoch, int32 epochs, int64 batches_per_epoch);
extern void tutor_progress_batch(int64 batches_done, double train_loss);
extern void tutor_progress_valid(double valid_auc, double best_valid_auc);
extern void tutor_progress_end(void);

#endif							/* TUTOR_KT_H */
