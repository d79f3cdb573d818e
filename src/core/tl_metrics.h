/*
 * tl_metrics.h -- quality figures for binary predictions.
 *
 * A model predicts the probability that a student answers correctly;
 * these figures compare such predictions with what was observed.  They
 * are the usual knowledge-tracing report: ranking quality (AUC),
 * thresholded agreement (accuracy), probability error (RMSE, log loss)
 * and calibration (ECE).  All sums are taken in double.
 */
#ifndef TL_METRICS_H
#define TL_METRICS_H

#include <stdint.h>

#include "tl_status.h"

typedef struct tl_binary_metrics
{
	double		auc;			/* ROC AUC; NAN when every label is of one class */
	double		accuracy;		/* share where (prob >= 0.5) == (label >= 0.5) */
	double		rmse;			/* sqrt(mean((prob - label)^2)) */
	double		log_loss;		/* mean binary cross-entropy, prob clamped to [1e-7, 1 - 1e-7] */
	double		ece;			/* expected calibration error, 10 equal-width bins */
	int64_t		n;				/* number of predictions */
} tl_binary_metrics;

/*
 * Compute every figure for n predictions.
 *
 * prob[i] is the predicted probability of a correct answer and label[i]
 * the observed correctness; both must lie in [0, 1] (labels may be
 * fractional, e.g. partial credit).  A NaN or out-of-range value, n <= 0
 * or a NULL pointer fails with TL_ERR_ARG and names the position.
 *
 * AUC counts label >= 0.5 as positive and is the Mann-Whitney rank-sum
 * statistic with average ranks for tied predictions, i.e. the chance
 * that a random positive is ranked above a random negative, ties
 * counting one half.  When all labels fall in one class the AUC is
 * undefined and reported as NAN; the other figures are still filled.
 * The ranking needs 8 bytes of scratch per prediction (TL_ERR_NOMEM if
 * that cannot be allocated); the sort is a radix sort, linear in n.
 *
 * ECE puts prob in bins [0, 0.1), [0.1, 0.2), ..., [0.9, 1.0] and sums
 * (bin count / n) * |mean prob - mean label| over the non-empty bins.
 */
tl_status	tl_binary_metrics_compute(const float *prob, const float *label, int64_t n,
									  tl_binary_metrics *out);

#endif							/* TL_METRICS_H */
