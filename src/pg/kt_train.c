/*
 * kt_train.c -- tutor.train_kt() and tutor.evaluate_kt().
 *
 * Training reads the source once (as the caller), packs students' answers
 * into arrays, splits students into training and validation sets, and
 * runs epochs of AdamW over length-bucketed windows.  Every batch checks
 * for interrupts, so cancel and statement_timeout land within one batch;
 * the model row is written only after training succeeds, in the same
 * transaction, so a cancelled run leaves nothing behind.
 */
#include "kt_data.h"

#include <math.h>

#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "portability/instr_time.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "options.h"
#include "tl_alloc.h"
#include "tl_metrics.h"
#include "tutor_llm.h"

PG_FUNCTION_INFO_V1(tutor_train_kt);
PG_FUNCTION_INFO_V1(tutor_evaluate_kt);

#define KT_WARMUP_STEPS 100		/* linear learning-rate warm-up, at most one epoch */
#define KT_DEFAULT_EPOCHS 30
#define KT_MIN_STEPS 2000		/* the default trains at least this many steps... */
#define KT_MAX_DEFAULT_EPOCHS 400	/* ...within this many epochs; early stopping ends it sooner */
#define KT_DEFAULT_PATIENCE 4
#define KT_MIN_PATIENCE_STEPS 300	/* and waits at least this many steps for a better epoch */
#define PFA_BATCH 512

static const char *const train_options[] = {
	"kind", "d_model", "layers", "heads", "window", "epochs", "lr", "batch_size",
	"valid_fraction", "seed", "time_budget", "device", "columns", "dropout",
	"weight_decay", "patience", "item_lr_scale", NULL
};
static const char *const kinds[] = {"transformer", "pfa", NULL};
static const char *const devices[] = {"auto", "cpu", "cuda", NULL};

typedef struct kt_train_options
{
	bool		epochs_given;	/* false: the default may grow for small sources */
	bool		patience_given; /* likewise */
	tutor_kt_kind kind;
	int64		d_model;
	int64		layers;
	int64		heads;
	int64		window;
	int64		epochs;
	double		lr;
	int64		batch_size;
	double		valid_fraction;
	int64		seed;
	double		time_budget;	/* seconds, 0 = none */
	char	   *device;
	double		dropout;
	double		weight_decay;
	int64		patience;
	double		item_lr_scale;
	Jsonb	   *columns;
} kt_train_options;

/* Options with defaults; each default is what most schools should use. */
static void
parse_train_options(Jsonb *o, kt_train_options *opt)
{
	tutor_options_check(o, train_options, "options");
	opt->kind = strcmp(tutor_option_choice(o, "kind", "transformer", kinds), "pfa") == 0
		? KT_KIND_PFA : KT_KIND_TRANSFORMER;
	opt->d_model = tutor_option_int(o, "d_model", 128, 8, 1024);
	opt->heads = tutor_option_int(o, "heads", 8, 1, 64);
	opt->layers = tutor_option_int(o, "layers", 2, 1, 8);
	opt->window = tutor_option_int(o, "window", 200, 2, 1024);
	opt->epochs_given = tutor_option(o, "epochs", &(JsonbValue) {0}) != NULL;
	opt->epochs = tutor_option_int(o, "epochs", KT_DEFAULT_EPOCHS, 1, 1000);
	opt->lr = tutor_option_float(o, "lr", opt->kind == KT_KIND_PFA ? 0.01 : 3e-4, 1e-6, 1.0);
	opt->batch_size = tutor_option_int(o, "batch_size", 32, 1, 4096);
	opt->valid_fraction = tutor_option_float(o, "valid_fraction", 0.1, 0.0, 0.5);
	opt->seed = tutor_option_int(o, "seed", 42, 0, PG_INT64_MAX);
	opt->time_budget = tutor_option_float(o, "time_budget", 0.0, 0.0, 7 * 86400.0);
	opt->device = tutor_option_choice(o, "device", tl_device_kind_name((tl_device_kind) tutor_device), devices);
	opt->dropout = tutor_option_float(o, "dropout", 0.1, 0.0, 0.9);
	opt->weight_decay = tutor_option_float(o, "weight_decay", 0.01, 0.0, 10.0);
	opt->patience_given = tutor_option(o, "patience", &(JsonbValue) {0}) != NULL;
	opt->patience = tutor_option_int(o, "patience", KT_DEFAULT_PATIENCE, 1, 1000);
	opt->item_lr_scale = tutor_option_float(o, "item_lr_scale", 1.0, 1e-4, 10.0);
	opt->columns = tutor_option_object(o, "columns");
	if (opt->d_model % opt->heads != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("d_model %lld is not a multiple of heads %lld",
						(long long) opt->d_model, (long long) opt->heads)));
	if (opt->batch_size * opt->window > (1 << 20))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("batch_size x window is %lld answers per batch; the limit is %d",
						(long long) (opt->batch_size * opt->window), 1 << 20)));
}

/* Resolve the device for a computation named by an option value. */
static void
check_device(const char *device)
{
	int			saved = tutor_device;
	tl_device_kind resolved;

	tutor_device = strcmp(device, "cuda") == 0 ? TL_DEVICE_CUDA : strcmp(device, "cpu") == 0 ? TL_DEVICE_CPU : TL_DEVICE_AUTO;
	PG_TRY();
	{
		resolved = tutor_begin_compute();
	}
	PG_FINALLY();
	{
		tutor_device = saved;
	}
	PG_END_TRY();
	if (resolved == TL_DEVICE_CUDA)
		ereport(NOTICE,
				(errmsg("knowledge tracing trains on the CPU"),
				 errdetail("This version runs only forward ops on CUDA.")));
}

/* Fisher-Yates with the core's seeded generator. */
static void
shuffle_int64(int64 *a, int64 n, tl_rng *rng)
{
	for (int64 i = n - 1; i > 0; i--)
	{
		int64		j = (int64) tl_rng_below(rng, (uint64) i + 1),
					t = a[i];

		a[i] = a[j];
		a[j] = t;
	}
}

static void
shuffle_windows(kt_window *w, int64 n, tl_rng *rng)
{
	for (int64 i = n - 1; i > 0; i--)
	{
		int64		j = (int64) tl_rng_below(rng, (uint64) i + 1);
		kt_window	t = w[i];

		w[i] = w[j];
		w[j] = t;
	}
}

/* A window with its position, so sorting by length keeps ties in order. */
typedef struct keyed_window
{
	kt_window	w;
	int64		pos;
} keyed_window;

static int
keyed_window_cmp(const void *a, const void *b)
{
	const keyed_window *x = a,
			   *y = b;

	if (x->w.len != y->w.len)
		return (x->w.len > y->w.len) - (x->w.len < y->w.len);
	return (x->pos > y->pos) - (x->pos < y->pos);
}

/*
 * Sort windows by length, ties in their current order: batches then hold
 * windows of similar length, so little compute goes to padding, and a
 * shuffle before the sort still varies which windows share a batch.
 */
static void
sort_windows_by_length(kt_window *w, int64 n)
{
	keyed_window *k = palloc_extended(sizeof(keyed_window) * Max(n, 1), MCXT_ALLOC_HUGE);

	for (int64 i = 0; i < n; i++)
	{
		k[i].w = w[i];
		k[i].pos = i;
	}
	qsort(k, n, sizeof(keyed_window), keyed_window_cmp);
	for (int64 i = 0; i < n; i++)
		w[i] = k[i].w;
	pfree(k);
}

/* Collect a source into a dataset (training: grows the vocabularies). */
static void
read_dataset(const tutor_kt_source *src, kt_dataset *d, tutor_kt_scan_stats *stats)
{
	tutor_kt_scan(src, NULL, kt_dataset_add_student, d, stats);
}

/* Predictions for the scored positions of eval windows; returns the count. */
static int64
predict_windows(tl_kt *m, const kt_dataset *d, kt_window *w, int64 n_windows,
				float *probs, float *labels)
{
	int64		n_batches,
			   *starts,
				out = 0;
	kt_batch_buf buf = {0};
	float	   *p = NULL;
	int64		p_cap = 0;

	sort_windows_by_length(w, n_windows);
	starts = kt_make_batches(w, n_windows, m->cfg.max_tokens, m->cfg.max_tokens, &n_batches);
	for (int64 b = 0; b < n_batches; b++)
	{
		tl_kt_batch batch;
		float		loss;

		CHECK_FOR_INTERRUPTS();
		kt_fill_batch(d, w, starts[b], starts[b + 1], &buf, &batch);
		TUTOR_CHECK(tl_kt_forward(m, &batch, false, 0, &loss), "knowledge-tracing prediction");
		if (batch.batch * batch.seq > p_cap)
		{
			p_cap = batch.batch * batch.seq;
			p = p ? repalloc_huge(p, sizeof(float) * p_cap) : palloc_extended(sizeof(float) * p_cap, MCXT_ALLOC_HUGE);
		}
		tl_kt_probabilities(m, p);
		for (int64 i = 0; i < batch.batch * batch.seq; i++)
			if (batch.weight[i] > 0.0f)
			{
				probs[out] = p[i];
				labels[out] = batch.correct[i];
				out++;
			}
	}
	return out;
}

/* PFA observations of the given students, in order. */
static tl_pfa_obs *
pfa_observations(const kt_dataset *d, const int64 *students, int64 n_students, int64 *n_obs)
{
	int64		total = 0,
				k = 0;
	tl_pfa_obs *obs;
	float	   *counts = palloc0(sizeof(float) * 2 * Max(d->skills->count, 1));

	for (int64 s = 0; s < n_students; s++)
		total += d->len[students[s]];
	obs = palloc_extended(sizeof(tl_pfa_obs) * Max(total, 1), MCXT_ALLOC_HUGE);
	for (int64 s = 0; s < n_students; s++)
	{
		int64		st = students[s];

		TUTOR_CHECK(tl_pfa_sequence_obs(d->item + d->start[st], d->skill + d->start[st],
										d->correct + d->start[st], d->len[st], d->skills->count,
										counts, obs + k), "PFA features");
		k += d->len[st];
	}
	pfree(counts);
	*n_obs = total;
	return obs;
}

static double
pfa_auc(const tl_pfa *m, const tl_pfa_obs *obs, int64 n, tl_binary_metrics *metrics)
{
	float	   *p = palloc_extended(sizeof(float) * Max(n, 1), MCXT_ALLOC_HUGE);
	float	   *y = palloc_extended(sizeof(float) * Max(n, 1), MCXT_ALLOC_HUGE);

	for (int64 i = 0; i < n; i++)
	{
		p[i] = 1.0f / (1.0f + expf(-tl_pfa_logit(m, &obs[i])));
		y[i] = obs[i].correct;
	}
	TUTOR_CHECK(tl_binary_metrics_compute(p, y, n, metrics), "metrics");
	pfree(p);
	pfree(y);
	return metrics->auc;
}

/* Early stopping on the validation AUC, keeping the best parameters. */
typedef struct kt_best
{
	double		auc;			/* best validation AUC; -1 before any */
	int64		epoch;			/* the epoch that reached it */
	int64		since;			/* epochs since then */
	float	   *params;			/* copy of the best parameter values */
} kt_best;

/*
 * Close an epoch: keep the parameters if the validation AUC improved (or
 * always, without validation), report, and say whether to stop.
 */
static bool
kt_epoch_end(kt_best *best, const tl_params *params, int64 epoch, int64 epochs, int64 patience,
			 double loss, double auc, double seconds)
{
	if (isnan(auc) || auc > best->auc + 1e-5)
	{
		if (!isnan(auc))
			best->auc = auc;
		best->epoch = epoch;
		best->since = 0;
		memcpy(best->params, params->value, sizeof(float) * params->total);
	}
	else
		best->since++;
	tutor_progress_valid(auc, best->auc < 0 ? NAN : best->auc);
	ereport(NOTICE,
			(errmsg("epoch %lld/%lld: loss %.4f, validation AUC %.4f, %.2f s",
					(long long) epoch, (long long) epochs, loss, auc, seconds)));
	return best->since >= patience;
}

/* Add "key": number to a JSON report, with null for NaN. */
static void
json_number(StringInfo s, const char *key, double v)
{
	if (isnan(v) || isinf(v))
		appendStringInfo(s, ", \"%s\": null", key);
	else
		appendStringInfo(s, ", \"%s\": %.6g", key, v);
}

Datum
tutor_train_kt(PG_FUNCTION_ARGS)
{
	char	   *name,
			   *source_text;
	Jsonb	   *options;
	kt_train_options opt;
	tutor_kt_source src;
	tutor_vocab items,
				skills;
	kt_dataset	data = {0};
	tutor_kt_scan_stats stats;
	MemoryContext work,
				old;
	instr_time	start;
	int64	   *order,
				n_valid,
				n_train,
				epochs_run = 0,
				steps = 0;
	kt_best		best = {-1.0, 0, 0, NULL};
	double		last_loss = NAN,
				last_auc = NAN,
				train_seconds = 0.0;
	const tl_params *params;
	tl_kt		kt = {0};
	tl_pfa		pfa = {0};
	tl_kt_config kcfg = {0};
	tl_pfa_config pcfg = {0};
	tl_rng		rng;
	StringInfoData report,
				opts;
	tutor_kt_trained trained;
	int32		version;
	bool		deployed,
				stopped_by_budget = false;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("model_name and source must not be NULL")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	source_text = text_to_cstring(PG_GETARG_TEXT_PP(1));
	options = PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2);
	parse_train_options(options, &opt);
	check_device(opt.device);
	INSTR_TIME_SET_CURRENT(start);

	work = AllocSetContextCreate(CurrentMemoryContext, "tutor train_kt", ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(work);
	SPI_connect();
	tutor_kt_check_owner(name, false);	/* fail before the work, not after */
	tutor_kt_source_resolve(&src, source_text, opt.columns);

	tutor_progress_begin(name, tutor_kt_kind_name(opt.kind));
	PG_TRY();
	{
		/* ---- read ---- */
		tutor_vocab_init(&items, 1 << 24);
		tutor_vocab_init(&skills, 1 << 24);
		data.items = &items;
		data.skills = &skills;
		data.add_vocab = true;
		data.min_answers = 2;
		data.cxt = work;
		read_dataset(&src, &data, &stats);
		tutor_progress_scan(stats.rows_read, data.n_students, data.n);
		if (data.n_students == 0)
			ereport(ERROR,
					(errcode(ERRCODE_NO_DATA_FOUND),
					 errmsg("the source has no student with at least 2 answers"),
					 errdetail("Rows read: %lld, skipped: %lld, students skipped: %lld.",
							   (long long) stats.rows_read, (long long) stats.rows_skipped,
							   (long long) data.students_skipped)));
		/* item-only data: each item is its own skill */
		if (skills.count == 1)
		{
			data.skill_from_item = true;
			memcpy(data.skill, data.item, sizeof(int32) * data.n);
			data.skills = &items;
			for (int32 i = 0; i < items.count; i++)
				data.item_skill[i] = i;
		}
		if (data.item_skill == NULL)	/* skill-only data: no items */
			data.item_skill = palloc0(sizeof(int32));
		for (int32 i = 0; i < items.count; i++)
			data.item_skill[i] = Max(data.item_skill[i], 0);

		/* ---- split students ---- */
		tl_rng_seed(&rng, (uint64) opt.seed);
		order = palloc_extended(sizeof(int64) * data.n_students, MCXT_ALLOC_HUGE);
		for (int64 s = 0; s < data.n_students; s++)
			order[s] = s;
		shuffle_int64(order, data.n_students, &rng);
		n_valid = (int64) floor(opt.valid_fraction * data.n_students);
		if (n_valid >= data.n_students)
			n_valid = data.n_students - 1;
		n_train = data.n_students - n_valid;

		tutor_progress_phase("training");
		if (opt.kind == KT_KIND_TRANSFORMER)
		{
			int64		n_train_w,
						n_valid_w,
						n_batches,
						warmup,
					   *batch_starts,
					   *batch_order;
			kt_window  *train_w,
					   *valid_w;
			kt_batch_buf buf = {0};
			float	   *vp = NULL,
					   *vy = NULL;

			kcfg = (tl_kt_config) {
				.n_items = items.count, .n_skills = data.skills->count,
					.d_model = opt.d_model, .heads = opt.heads, .layers = opt.layers,
					.d_ff = 4 * opt.d_model, .dropout = (float) opt.dropout, .window = opt.window,
					.max_tokens = opt.batch_size * opt.window, .lr = (float) opt.lr,
					.weight_decay = (float) opt.weight_decay, .clip_norm = 1.0f,
					.item_lr_scale = (float) opt.item_lr_scale,
			};
			TUTOR_CHECK(tl_kt_create(&kt, &kcfg, (uint64) opt.seed), "model creation");
			params = &kt.params;
			best.params = palloc_extended(sizeof(float) * params->total, MCXT_ALLOC_HUGE);
			memcpy(best.params, params->value, sizeof(float) * params->total);
			train_w = kt_train_windows(&data, order + n_valid, n_train, (int32) opt.window, &n_train_w);
			/*
			 * A small school has few batches per epoch: without an explicit
			 * "epochs", run enough epochs for KT_MIN_STEPS optimiser steps
			 * (the batch count does not depend on the shuffle, only on lengths).
			 */
			if (!opt.epochs_given || !opt.patience_given)
			{
				sort_windows_by_length(train_w, n_train_w);
				pfree(kt_make_batches(train_w, n_train_w, opt.batch_size, kcfg.max_tokens, &n_batches));
				if (!opt.epochs_given)
					opt.epochs = Min(KT_MAX_DEFAULT_EPOCHS,
									 Max(KT_DEFAULT_EPOCHS, (KT_MIN_STEPS + n_batches - 1) / n_batches));
				if (!opt.patience_given)
					opt.patience = Max(KT_DEFAULT_PATIENCE, (KT_MIN_PATIENCE_STEPS + n_batches - 1) / n_batches);
			}
			valid_w = kt_eval_windows(&data, order, n_valid, (int32) opt.window, &n_valid_w);
			if (n_valid > 0)
			{
				int64		n_scored = 0;

				for (int64 s = 0; s < n_valid; s++)
					n_scored += data.len[order[s]];
				vp = palloc_extended(sizeof(float) * n_scored, MCXT_ALLOC_HUGE);
				vy = palloc_extended(sizeof(float) * n_scored, MCXT_ALLOC_HUGE);
			}

			for (int64 epoch = 1; epoch <= opt.epochs && !stopped_by_budget; epoch++)
			{
				double		loss_sum = 0.0;
				int64		done = 0;
				double		epoch_start = tutor_seconds_since(start);

				shuffle_windows(train_w, n_train_w, &rng);
				sort_windows_by_length(train_w, n_train_w);
				batch_starts = kt_make_batches(train_w, n_train_w, opt.batch_size, kcfg.max_tokens, &n_batches);
				batch_order = palloc(sizeof(int64) * n_batches);
				for (int64 b = 0; b < n_batches; b++)
					batch_order[b] = b;
				shuffle_int64(batch_order, n_batches, &rng);
				tutor_progress_epoch((int32) epoch, (int32) opt.epochs, n_batches);

				for (int64 b = 0; b < n_batches; b++)
				{
					tl_kt_batch batch;
					float		loss;
					int64		bi = batch_order[b];

					CHECK_FOR_INTERRUPTS();
					if (opt.time_budget > 0 && tutor_seconds_since(start) > opt.time_budget)
					{
						stopped_by_budget = true;
						break;
					}
					kt_fill_batch(&data, train_w, batch_starts[bi], batch_starts[bi + 1], &buf, &batch);
					steps++;
					warmup = Min(KT_WARMUP_STEPS, n_batches);
					kt.opt.lr = (float) opt.lr * (steps < warmup ? (float) steps / warmup : 1.0f);
					TUTOR_CHECK(tl_kt_train_step(&kt, &batch, (uint64) opt.seed * 1000003 + steps, &loss),
								"training");
					loss_sum += loss;
					done++;
					tutor_progress_batch(done, loss_sum / done);
				}
				pfree(batch_starts);
				pfree(batch_order);
				/* out of time mid-epoch: keep the best complete epoch, skip validating a partial one */
				if (done == 0 || (stopped_by_budget && best.epoch > 0))
					break;
				epochs_run = epoch;
				last_loss = loss_sum / done;

				if (n_valid > 0)
				{
					tl_binary_metrics mt;
					int64		n = predict_windows(&kt, &data, valid_w, n_valid_w, vp, vy);

					TUTOR_CHECK(tl_binary_metrics_compute(vp, vy, n, &mt), "validation metrics");
					last_auc = mt.auc;
				}
				if (kt_epoch_end(&best, params, epoch, opt.epochs, opt.patience, last_loss, last_auc,
								 tutor_seconds_since(start) - epoch_start))
					break;
			}
			memcpy(kt.params.value, best.params, sizeof(float) * params->total);
		}
		else
		{
			int64		n_obs_train,
						n_obs_valid;
			tl_pfa_obs *obs_valid = pfa_observations(&data, order, n_valid, &n_obs_valid);
			tl_pfa_obs *obs_train = pfa_observations(&data, order + n_valid, n_train, &n_obs_train);
			int64		n_batches = (n_obs_train + PFA_BATCH - 1) / PFA_BATCH;
			int64	   *batch_order = palloc_extended(sizeof(int64) * Max(n_batches, 1), MCXT_ALLOC_HUGE);

			pcfg = (tl_pfa_config) {items.count, data.skills->count, (float) opt.lr, (float) opt.weight_decay};
			TUTOR_CHECK(tl_pfa_create(&pfa, &pcfg), "model creation");
			params = &pfa.params;
			best.params = palloc(sizeof(float) * params->total);
			memcpy(best.params, params->value, sizeof(float) * params->total);
			/* batches of consecutive observations, visited in random order */
			for (int64 epoch = 1; epoch <= opt.epochs && !stopped_by_budget; epoch++)
			{
				double		loss_sum = 0.0,
							epoch_start = tutor_seconds_since(start);
				int64		done = 0;

				for (int64 b = 0; b < n_batches; b++)
					batch_order[b] = b;
				shuffle_int64(batch_order, n_batches, &rng);
				tutor_progress_epoch((int32) epoch, (int32) opt.epochs, n_batches);
				for (int64 b = 0; b < n_batches; b++)
				{
					int64		first = batch_order[b] * PFA_BATCH;
					float		loss;

					CHECK_FOR_INTERRUPTS();
					if (opt.time_budget > 0 && tutor_seconds_since(start) > opt.time_budget)
					{
						stopped_by_budget = true;
						break;
					}
					TUTOR_CHECK(tl_pfa_train_batch(&pfa, obs_train + first,
												   Min(PFA_BATCH, n_obs_train - first), &loss), "training");
					loss_sum += loss;
					done++;
					tutor_progress_batch(done, loss_sum / done);
				}
				if (done == 0 || (stopped_by_budget && best.epoch > 0))
					break;
				epochs_run = epoch;
				last_loss = loss_sum / done;
				if (n_obs_valid > 0)
				{
					tl_binary_metrics mt;

					last_auc = pfa_auc(&pfa, obs_valid, n_obs_valid, &mt);
				}
				if (kt_epoch_end(&best, params, epoch, opt.epochs, opt.patience, last_loss, last_auc,
								 tutor_seconds_since(start) - epoch_start))
					break;
			}
			memcpy(pfa.params.value, best.params, sizeof(float) * params->total);
		}
		train_seconds = tutor_seconds_since(start);

		/* ---- save ---- */
		tutor_progress_phase("saving");
		initStringInfo(&opts);
		appendStringInfo(&opts, "{\"kind\": \"%s\", \"d_model\": %lld, \"heads\": %lld, \"layers\": %lld, "
						 "\"window\": %lld, \"epochs\": %lld, \"lr\": %g, \"batch_size\": %lld, "
						 "\"valid_fraction\": %g, \"seed\": %lld, \"time_budget\": %g, \"dropout\": %g, "
						 "\"weight_decay\": %g, \"patience\": %lld}",
						 tutor_kt_kind_name(opt.kind), (long long) opt.d_model, (long long) opt.heads,
						 (long long) opt.layers, (long long) opt.window, (long long) opt.epochs, opt.lr,
						 (long long) opt.batch_size, opt.valid_fraction, (long long) opt.seed,
						 opt.time_budget, opt.dropout, opt.weight_decay, (long long) opt.patience);
		initStringInfo(&report);
		appendStringInfo(&report, "{\"model\": ");
		escape_json(&report, name);
		appendStringInfo(&report, ", \"kind\": \"%s\", \"epochs\": %lld, \"best_epoch\": %lld",
						 tutor_kt_kind_name(opt.kind), (long long) epochs_run, (long long) best.epoch);
		json_number(&report, "best_valid_auc", best.auc < 0 ? NAN : best.auc);
		json_number(&report, "train_loss", last_loss);
		appendStringInfo(&report, ", \"stopped_by_time_budget\": %s, \"students\": %lld, "
						 "\"students_skipped\": %lld, \"train_students\": %lld, \"valid_students\": %lld, "
						 "\"interactions\": %lld, \"rows_read\": %lld, \"rows_skipped\": %lld, "
						 "\"items\": %d, \"skills\": %d, \"parameters\": %lld",
						 stopped_by_budget ? "true" : "false", (long long) data.n_students,
						 (long long) data.students_skipped, (long long) n_train, (long long) n_valid,
						 (long long) data.n, (long long) stats.rows_read, (long long) stats.rows_skipped,
						 items.count - 1, data.skill_from_item ? 0 : skills.count - 1,
						 (long long) params->total);
		json_number(&report, "seconds", train_seconds);
		json_number(&report, "seconds_per_epoch", epochs_run ? train_seconds / epochs_run : NAN);

		trained = (tutor_kt_trained) {
			.name = name, .kind = opt.kind, .source = &src, .items = &items,
				.skills = data.skills, .item_skill = data.item_skill,
				.skill_from_item = data.skill_from_item,
				.kt_config = &kcfg, .pfa_config = &pcfg, .params = params,
				.options_json = opts.data, .metrics_json = psprintf("%s}", report.data),
		};
		version = tutor_kt_save(&trained, &deployed);
		appendStringInfo(&report, ", \"version\": %d, \"deployed\": %s}", version, deployed ? "true" : "false");
	}
	PG_FINALLY();
	{
		tutor_progress_end();
	}
	PG_END_TRY();
	SPI_finish();
	MemoryContextSwitchTo(old);
	{
		Datum		result = DirectFunctionCall1(jsonb_in, CStringGetDatum(report.data));

		MemoryContextDelete(work);
		PG_RETURN_DATUM(result);
	}
}

/* ---- evaluation ------------------------------------------------------------- */

static const char *const eval_options[] = {"columns", NULL};

Datum
tutor_evaluate_kt(PG_FUNCTION_ARGS)
{
	char	   *name,
			   *source_text;
	Jsonb	   *options;
	tutor_kt_model *m;
	tutor_kt_source src;
	kt_dataset	data = {0};
	tutor_kt_scan_stats stats;
	MemoryContext work,
				old;
	instr_time	start;
	int64	   *all,
				n_pred = 0;
	float	   *probs,
			   *labels;
	tl_binary_metrics mt;
	StringInfoData report;
	Datum		result;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("model_name and source must not be NULL")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	source_text = text_to_cstring(PG_GETARG_TEXT_PP(1));
	options = PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2);
	tutor_options_check(options, eval_options, "options");
	tutor_begin_compute();
	INSTR_TIME_SET_CURRENT(start);

	work = AllocSetContextCreate(CurrentMemoryContext, "tutor evaluate_kt", ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(work);
	SPI_connect();
	m = tutor_kt_load(name);
	/* the evaluation source may name its columns differently from the training one */
	tutor_kt_source_resolve(&src, source_text, tutor_option_object(options, "columns"));

	data.items = &m->items;
	data.skills = &m->skills;
	data.add_vocab = false;
	data.skill_from_item = m->skill_from_item;
	data.min_answers = 1;
	data.cxt = work;
	read_dataset(&src, &data, &stats);
	if (data.n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("the source has no answers to evaluate")));
	all = palloc_extended(sizeof(int64) * data.n_students, MCXT_ALLOC_HUGE);
	for (int64 s = 0; s < data.n_students; s++)
		all[s] = s;
	probs = palloc_extended(sizeof(float) * data.n, MCXT_ALLOC_HUGE);
	labels = palloc_extended(sizeof(float) * data.n, MCXT_ALLOC_HUGE);

	if (m->kind == KT_KIND_TRANSFORMER)
	{
		int64		n_windows;
		kt_window  *w = kt_eval_windows(&data, all, data.n_students, (int32) m->kt.cfg.window, &n_windows);

		n_pred = predict_windows(&m->kt, &data, w, n_windows, probs, labels);
	}
	else
	{
		tl_pfa_obs *obs = pfa_observations(&data, all, data.n_students, &n_pred);

		for (int64 i = 0; i < n_pred; i++)
		{
			if ((i & 0xffff) == 0)
				CHECK_FOR_INTERRUPTS();
			probs[i] = 1.0f / (1.0f + expf(-tl_pfa_logit(&m->pfa, &obs[i])));
			labels[i] = obs[i].correct;
		}
	}
	TUTOR_CHECK(tl_binary_metrics_compute(probs, labels, n_pred, &mt), "metrics");

	initStringInfo(&report);
	appendStringInfo(&report, "{\"model\": ");
	escape_json(&report, m->name);
	appendStringInfo(&report, ", \"version\": %d, \"kind\": \"%s\", \"n\": %lld",
					 m->version, tutor_kt_kind_name(m->kind), (long long) n_pred);
	json_number(&report, "auc", mt.auc);
	json_number(&report, "accuracy", mt.accuracy);
	json_number(&report, "rmse", mt.rmse);
	json_number(&report, "log_loss", mt.log_loss);
	json_number(&report, "ece", mt.ece);
	appendStringInfo(&report, ", \"students\": %lld, \"rows_read\": %lld, \"rows_skipped\": %lld, "
					 "\"unknown_items\": %lld, \"unknown_skills\": %lld",
					 (long long) data.n_students, (long long) stats.rows_read, (long long) stats.rows_skipped,
					 (long long) data.unknown_items, (long long) data.unknown_skills);
	json_number(&report, "seconds", tutor_seconds_since(start));
	appendStringInfoString(&report, "}");
	SPI_finish();
	MemoryContextSwitchTo(old);
	result = DirectFunctionCall1(jsonb_in, CStringGetDatum(report.data));
	MemoryContextDelete(work);
	PG_RETURN_DATUM(result);
}
