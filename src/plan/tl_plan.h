/*
 * tl_plan.h -- the learning planner: from one student's predicted mastery
 * and memory to an ordered list of steps over the next days.
 *
 * Pure C like the rest of the core (no postgres.h), deterministic (ties
 * break by index), and allocation-free per student once a tl_plan has
 * grown: the glue reuses one tl_plan across a whole batch.
 *
 * Inputs are indexes: skills 0..n_skills-1 and items 0..n_items-1.  The
 * glue maps ids to indexes, asks the knowledge-tracing model for every
 * P(correct), derives memory from the student's answer times
 * (tl_memory_*), and turns the steps back into rows and sentences.
 *
 * What a plan is made of, per day d = 0 .. horizon_days-1, until that
 * day's budget (items and/or minutes) is spent:
 *   1. review   mastered skills whose predicted recall on day d falls
 *               below `retention` (most forgotten first);
 *   2. assess   skills whose mastery is within `assess_margin` below the
 *               threshold (once per plan);
 *   3. learn / practice   unlocked, unmastered skills ranked by expected
 *               learning gain toward the goals: value[s] * p(1-p), the
 *               slope of a logistic ability curve (one practised item
 *               moves P(correct) by about learn_rate * p(1-p));
 *               at most one such step per skill per day;
 *   4. assess   when nothing else is left: mastered skills, least
 *               recently confirmed first ("confirm mastery").
 * A skill is unlocked when every direct prerequisite's mastery is at
 * least the threshold (current estimates, never projected ones).
 * Value: value[s] = max(goal[s], prerequisite_decay * value[c]) over the
 * skills c that list s as a prerequisite (transitively), so the way to a
 * goal is worth almost as much as the goal; when no skill has a goal
 * weight, every skill counts as a goal of weight 1.
 * Practice items are those whose P(correct) lies in [band_lo, band_hi]
 * (closest to the band's middle first, then nearest outside the band);
 * learn steps start with the easiest items.  An item is never planned
 * within item_spacing_days of when it was last seen or planned.
 * Planned practice raises the skill's projected logit by learn_rate per
 * item, so later days see diminishing gain and a skill that nears the
 * threshold gets its assessment.
 */
#ifndef TL_PLAN_H
#define TL_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#include "tl_status.h"

/* ---- memory: an FSRS-style stability estimate per skill --------------------- */

/*
 * Recall after t days at stability S follows the power curve of FSRS,
 * R(t) = (1 + t / (9 S))^-1, so R(S) = 0.9: stability is the interval
 * at which recall falls to 90%.  A successful review at low recall
 * grows S more than one at high recall (the spacing effect); a failure
 * shrinks it.  Answers on the same skill within one sitting add nothing.
 */
typedef struct tl_memory
{
	float		stability;		/* days; 0 = never practised */
	double		last_day;		/* time of the last answer, in days */
} tl_memory;

/* Fold one answer (time in days, correctness in [0, 1]) into m, oldest first. */
void		tl_memory_update(tl_memory *m, double day, float correct);
/* Predicted recall at `day`; 0 when never practised. */
float		tl_memory_recall(const tl_memory *m, double day);
/* The day recall falls to `retention` (0 < retention < 1). */
double		tl_memory_due(const tl_memory *m, float retention);

/* ---- the problem ---------------------------------------------------------- */

typedef enum tl_plan_activity
{
	TL_PLAN_LEARN,
	TL_PLAN_PRACTICE,
	TL_PLAN_REVIEW,
	TL_PLAN_ASSESS
} tl_plan_activity;

/* Why a step is there; `about` and `value` of the step fill the sentence. */
typedef enum tl_plan_reason
{
	TL_REASON_GOAL,				/* learn/practice a goal skill; value = mastery now */
	TL_REASON_PREREQUISITE,		/* learn/practice a prerequisite of goal `about`; value = mastery */
	TL_REASON_START,			/* a new student starts on a root skill; value = prior mastery */
	TL_REASON_REVIEW,			/* recall predicted to fall to value by the step's day */
	TL_REASON_NEAR_MASTERY,		/* assess: value = mastery, just below the threshold */
	TL_REASON_CONFIRM			/* assess a mastered skill; value = mastery */
} tl_plan_reason;

typedef struct tl_plan_skill
{
	float		mastery;		/* P(correct) on a typical item now, in [0, 1] */
	int32_t		attempts;		/* answers on the skill so far */
	tl_memory	memory;			/* from the student's answers, in days */
	float		goal;			/* goal weight, 0 = not a goal */
} tl_plan_skill;

typedef struct tl_plan_item
{
	int32_t		skill;			/* 0 .. n_skills-1 */
	float		p;				/* predicted P(correct) now */
	float		minutes;		/* > 0 */
	double		last_seen;		/* day last answered; NaN = never */
	bool		active;			/* inactive items are never planned */
} tl_plan_item;

typedef struct tl_plan_options
{
	double		today;			/* as_of, in days (same clock as the memories) */
	int32_t		horizon_days;	/* >= 1 */
	int32_t		budget_items;	/* per day; 0 = no item limit */
	float		budget_minutes; /* per day; 0 = no minute limit (not both 0) */
	int32_t		items_per_step; /* >= 1 */
	float		mastery;		/* threshold, in (0, 1) */
	float		assess_margin;	/* >= 0, < mastery */
	float		band_lo;		/* practice band, 0 <= lo <= hi <= 1 */
	float		band_hi;
	float		retention;		/* review below this recall, in (0, 1) */
	float		item_spacing_days;	/* >= 0 */
	float		learn_rate;		/* projected logit gain per practised item, >= 0 */
	float		prerequisite_decay; /* value of a prerequisite relative to what it unlocks, in [0, 1] */
} tl_plan_options;

/* Defaults the glue starts from (documented in README.md). */
void		tl_plan_default_options(tl_plan_options *opt);

typedef struct tl_plan_problem
{
	int32_t		n_skills;
	const tl_plan_skill *skills;	/* n_skills */
	int32_t		n_items;
	const tl_plan_item *items;	/* n_items */
	/* direct prerequisites of skill s: prereq[prereq_start[s] .. prereq_start[s+1]) */
	const int32_t *prereq_start;	/* n_skills + 1 */
	const int32_t *prereq;
	tl_plan_options opt;
} tl_plan_problem;

/*
 * Check a prerequisite graph once per request: indexes in range and no
 * cycle.  On a cycle, *skill is a skill on it and TL_ERR_ARG is returned.
 */
tl_status	tl_plan_check_prerequisites(int32_t n_skills, const int32_t *prereq_start,
										const int32_t *prereq, int32_t *skill);

typedef struct tl_plan_step
{
	int32_t		day;			/* 0 = the day of `today` */
	tl_plan_activity activity;
	int32_t		skill;
	int32_t		first_item;		/* items of the step: plan->items[first_item .. +n_items) */
	int32_t		n_items;		/* >= 1 */
	float		expected_p;		/* mean P(correct) of the step's items, as projected */
	float		minutes;		/* sum of the items' minutes */
	tl_plan_reason reason;
	int32_t		about;			/* the goal skill a prerequisite leads to; else = skill */
	float		value;			/* the number the reason quotes */
} tl_plan_step;

/* A plan, and the scratch space to make the next one (reused). */
typedef struct tl_plan
{
	int32_t		n_steps;
	tl_plan_step *steps;
	int32_t		n_items;
	int32_t    *items;			/* item indexes of all steps */
	/* capacities and scratch: private to tl_plan.c */
	int32_t		cap_steps;
	int32_t		cap_items;
	int64_t		cap_skills;
	int64_t		cap_problem_items;
	void	   *scratch;
} tl_plan;

/* Zero-initialise a tl_plan before its first use. */
void		tl_plan_init(tl_plan *plan);
/* Make the plan of one student; plan's previous contents are replaced. */
tl_status	tl_plan_make(const tl_plan_problem *problem, tl_plan *plan);
void		tl_plan_free(tl_plan *plan);

#endif							/* TL_PLAN_H */
