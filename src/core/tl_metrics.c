/*
 * tl_metrics.c -- AUC, accuracy, RMSE, log loss and calibration error
 * of binary predictions.
 */
#include <math.h>
#include <string.h>

#include "tl_alloc.h"
#include "tl_metrics.h"

#define TL_ECE_BINS 10
#define TL_LOG_LOSS_EPS 1e-7

/* Bits per radix-sort pass; three passes cover the 31-bit keys. */
#define TL_RADIX_BITS 11
#define TL_RADIX_SIZE (1 << TL_RADIX_BITS)

/* Reject a NaN or a value outside [0, 1], naming the array and position. */
static tl_status
check_unit_interval(const float *x, int64_t n, const char *what)
{
	for (int64_t i = 0; i < n; i++)
	{
		/* written so that NaN fails the test */
		if (!(x[i] >= 0.0f && x[i] <= 1.0f))
			return tl_fail(TL_ERR_ARG, "%s[%lld] = %g is not a number in [0, 1]",
						   what, (long long) i, (double) x[i]);
	}
	return TL_OK;
}

/*
 * The sort key of one prediction: the bit pattern of prob shifted left,
 * with the class in the low bit.  For non-negative floats the integer
 * order of the bit patterns is the numeric order, and prob <= 1.0f keeps
 * the pattern below 2^30, so the key fits in 31 bits.  -0.0 is mapped to
 * +0.0 first, since its pattern would sort it last.
 */
static inline uint32_t
ranking_key(float prob, int positive)
{
	uint32_t	bits = 0;

	if (prob != 0.0f)
		memcpy(&bits, &prob, sizeof(bits));
	return (bits << 1) | (uint32_t) (positive != 0);
}

/*
 * Sort keys ascending with a least-significant-digit radix sort through
 * scratch (n entries).  Linear in n and free of recursion, which matters
 * at ten million predictions; the result ends up back in keys.
 */
static void
radix_sort_keys(uint32_t *keys, uint32_t *scratch, int64_t n)
{
	uint32_t   *src = keys;
	uint32_t   *dst = scratch;
	int			passes = 0;

	for (int shift = 0; shift < 31; shift += TL_RADIX_BITS)
	{
		int64_t		offsets[TL_RADIX_SIZE];
		int64_t		total = 0;
		uint32_t   *swap;

		memset(offsets, 0, sizeof(offsets));
		for (int64_t i = 0; i < n; i++)
			offsets[(src[i] >> shift) & (TL_RADIX_SIZE - 1)]++;
		/* counts -> start offsets of each digit's run */
		for (int d = 0; d < TL_RADIX_SIZE; d++)
		{
			int64_t		count = offsets[d];

			offsets[d] = total;
			total += count;
		}
		for (int64_t i = 0; i < n; i++)
			dst[offsets[(src[i] >> shift) & (TL_RADIX_SIZE - 1)]++] = src[i];
		swap = src;
		src = dst;
		dst = swap;
		passes++;
	}
	/* an odd number of passes leaves the sorted keys in scratch */
	if (passes % 2 == 1)
		memcpy(keys, scratch, sizeof(uint32_t) * (size_t) n);
}

/*
 * ROC AUC from the Mann-Whitney rank sum: rank all predictions together
 * (tied predictions share the average of their ranks), sum the ranks of
 * the positives, and subtract the smallest sum they could have had.
 * The caller guarantees both classes are present.
 */
static tl_status
rank_sum_auc(const float *prob, const float *label, int64_t n,
			 int64_t n_pos, int64_t n_neg, double *auc)
{
	uint32_t   *keys = tl_alloc((size_t) n, sizeof(uint32_t));
	uint32_t   *scratch = tl_alloc((size_t) n, sizeof(uint32_t));
	double		pos_rank_sum = 0.0;
	int64_t		start = 0;

	if (!keys || !scratch)
	{
		tl_free(keys);
		tl_free(scratch);
		return tl_fail(TL_ERR_NOMEM, "cannot allocate AUC ranking for %lld predictions",
					   (long long) n);
	}
	for (int64_t i = 0; i < n; i++)
		keys[i] = ranking_key(prob[i], label[i] >= 0.5f);
	radix_sort_keys(keys, scratch, n);

	/* walk runs of equal prob; 1-based ranks start+1 .. end share their mean */
	while (start < n)
	{
		uint32_t	value = keys[start] >> 1;
		int64_t		end = start;
		int64_t		positives = 0;

		while (end < n && (keys[end] >> 1) == value)
		{
			positives += keys[end] & 1;
			end++;
		}
		pos_rank_sum += (double) positives * ((double) start + (double) (end - start + 1) / 2.0);
		start = end;
	}
	tl_free(keys);
	tl_free(scratch);

	/*
	 * Ranks are half-integers and the sums stay below 2^53 for any n that
	 * fits in memory, so these doubles are exact.
	 */
	*auc = (pos_rank_sum - (double) n_pos * ((double) n_pos + 1.0) / 2.0) /
		((double) n_pos * (double) n_neg);
	return TL_OK;
}

/* Fill *out with every figure; see tl_metrics.h for the definitions. */
tl_status
tl_binary_metrics_compute(const float *prob, const float *label, int64_t n,
						  tl_binary_metrics *out)
{
	double		sq_error = 0.0;
	double		log_loss = 0.0;
	double		bin_prob[TL_ECE_BINS] = {0};
	double		bin_label[TL_ECE_BINS] = {0};
	int64_t		bin_count[TL_ECE_BINS] = {0};
	int64_t		agree = 0;
	int64_t		n_pos = 0;
	double		ece = 0.0;
	double		auc;

	if (!prob || !label || !out)
		return tl_fail(TL_ERR_ARG, "binary metrics need prob, label and out");
	if (n <= 0)
		return tl_fail(TL_ERR_ARG, "binary metrics need at least one prediction, got %lld",
					   (long long) n);
	TL_TRY(check_unit_interval(prob, n, "prob"));
	TL_TRY(check_unit_interval(label, n, "label"));

	for (int64_t i = 0; i < n; i++)
	{
		double		p = prob[i];
		double		y = label[i];
		double		pc = fmin(fmax(p, TL_LOG_LOSS_EPS), 1.0 - TL_LOG_LOSS_EPS);
		/* p * 10 is exact in double for a float p, so the bin edges are too */
		int			bin = (int) (p * TL_ECE_BINS);

		if (bin >= TL_ECE_BINS)
			bin = TL_ECE_BINS - 1;	/* p == 1 joins the last bin */
		n_pos += y >= 0.5;
		agree += (p >= 0.5) == (y >= 0.5);
		sq_error += (p - y) * (p - y);
		log_loss -= y * log(pc) + (1.0 - y) * log1p(-pc);
		bin_prob[bin] += p;
		bin_label[bin] += y;
		bin_count[bin]++;
	}
	for (int b = 0; b < TL_ECE_BINS; b++)
	{
		/* count/n * |sum_p/count - sum_y/count| == |sum_p - sum_y| / n */
		if (bin_count[b] > 0)
			ece += fabs(bin_prob[b] - bin_label[b]) / (double) n;
	}

	/* no positive/negative pair to rank when one class is missing */
	auc = NAN;
	if (n_pos > 0 && n_pos < n)
		TL_TRY(rank_sum_auc(prob, label, n, n_pos, n - n_pos, &auc));

	/* *out is written only on success */
	memset(out, 0, sizeof(*out));
	out->n = n;
	out->auc = auc;
	out->accuracy = (double) agree / (double) n;
	out->rmse = sqrt(sq_error / (double) n);
	out->log_loss = log_loss / (double) n;
	out->ece = ece;
	return TL_OK;
}
