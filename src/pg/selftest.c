/*
 * selftest.c -- tutor.selftest(): train the core's small Transformer on
 * the reverse task inside this backend and report the loss as rows.
 *
 * It proves the whole path (settings, allocator, BLAS threads, forward,
 * backward, AdamW, cancellation) on any installation without needing a
 * model file or data.
 */
#include "tutor_llm.h"

#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "portability/instr_time.h"
#include "utils/memutils.h"
#include "utils/tuplestore.h"

#include "tl_seqlm.h"

PG_FUNCTION_INFO_V1(tutor_selftest);

#define SELFTEST_MAX_STEPS 100000
#define SELFTEST_BATCH 32
#define SELFTEST_DIGITS 6		/* sequences of 2*6+1 = 13 tokens */

/* Mean loss on a fixed held-out batch, without dropout. */
static float
selftest_eval(tl_seqlm *model, int32 *tokens, int32 *targets)
{
	tl_rng		rng;
	float		loss;

	tl_rng_seed(&rng, 0x5eed);	/* the same batch at every report */
	tl_reverse_task_batch(&rng, SELFTEST_BATCH, SELFTEST_DIGITS, tokens, targets);
	TUTOR_CHECK(tl_seqlm_forward(model, tokens, targets, SELFTEST_BATCH, 2 * SELFTEST_DIGITS + 1,
								 false, 0, &loss), "selftest evaluation");
	return loss;
}

/*
 * selftest(steps int, seed bigint) RETURNS TABLE(step int, train_loss
 * float8, held_out_loss float8, elapsed_ms float8): about ten report rows.
 */
Datum
tutor_selftest(PG_FUNCTION_ARGS)
{
	int32		steps = PG_GETARG_INT32(0);
	int64		seed = PG_GETARG_INT64(1);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	const int64 seq = 2 * SELFTEST_DIGITS + 1;
	tl_seqlm_config cfg = {
		.vocab = TL_REVERSE_VOCAB, .max_seq = seq, .d_model = 32, .heads = 4, .d_ff = 64,
		.layers = 2, .dropout = 0.0f, .max_batch = SELFTEST_BATCH,
		.lr = 3e-3f, .weight_decay = 0.01f, .clip_norm = 1.0f,
	};
	int			report_every;
	MemoryContext work,
				old;
	tl_seqlm	model;
	tl_rng		data_rng;
	int32	   *tokens,
			   *targets;
	instr_time	start,
				now;

	if (steps < 1 || steps > SELFTEST_MAX_STEPS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("steps must be between 1 and %d, got %d", SELFTEST_MAX_STEPS, steps)));
	if (seed < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("seed must not be negative, got " INT64_FORMAT, seed)));

	if (tutor_begin_compute() == TL_DEVICE_CUDA)
		ereport(NOTICE,
				(errmsg("selftest trains on the CPU"),
				 errdetail("This version runs only forward ops on CUDA.")));
	InitMaterializedSRF(fcinfo, 0);
	report_every = Max(1, steps / 10);

	/* every core allocation goes here; an ERROR or cancel frees it all */
	work = AllocSetContextCreate(CurrentMemoryContext, "tutor selftest", ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(work);
	TUTOR_CHECK(tl_seqlm_create(&model, &cfg, (uint64) seed), "selftest model creation");
	tokens = palloc(sizeof(int32) * SELFTEST_BATCH * seq);
	targets = palloc(sizeof(int32) * SELFTEST_BATCH * seq);
	tl_rng_seed(&data_rng, (uint64) seed + 1);

	INSTR_TIME_SET_CURRENT(start);
	for (int32 step = 1; step <= steps; step++)
	{
		float		train_loss;

		CHECK_FOR_INTERRUPTS();
		tl_reverse_task_batch(&data_rng, SELFTEST_BATCH, SELFTEST_DIGITS, tokens, targets);
		TUTOR_CHECK(tl_seqlm_train_step(&model, tokens, targets, SELFTEST_BATCH, seq,
										(uint64) seed + step, &train_loss),
					"selftest training");
		if (step % report_every == 0 || step == steps)
		{
			Datum		values[4];
			bool		nulls[4] = {0};

			values[0] = Int32GetDatum(step);
			values[1] = Float8GetDatum(train_loss);
			values[2] = Float8GetDatum(selftest_eval(&model, tokens, targets));
			INSTR_TIME_SET_CURRENT(now);
			INSTR_TIME_SUBTRACT(now, start);
			values[3] = Float8GetDatum(INSTR_TIME_GET_MILLISEC(now));
			MemoryContextSwitchTo(old);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
			MemoryContextSwitchTo(work);
		}
	}
	MemoryContextSwitchTo(old);
	MemoryContextDelete(work);
	return (Datum) 0;
}
