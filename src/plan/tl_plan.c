/*
 * tl_plan.c -- the learning planner: memory curves, the prerequisite
 * graph, and the day-by-day greedy plan described in tl_plan.h.
 *
 * One call plans one student in O(horizon * (n_skills + n_items)) work
 * plus the sorting of each day's candidates.  All working memory lives in
 * the tl_plan and only grows, so a batch of students allocates once.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tl_alloc.h"
#include "tl_plan.h"

/* ---- memory ---------------------------------------------------------------- */

/*
 * FSRS-like defaults chosen by hand, not fitted to any data: the shape of
 * the curve and of the stability updates follows FSRS, the numbers are
 * round values that behave sensibly over days to months.
 */
static const double MEMORY_CURVE = 9.0;	/* R(t) = (1 + t / (9 S))^-1, so R(S) = 0.9 */
static const double MEMORY_SITTING_DAYS = 0.25;	/* answers closer than this: one sitting */
static const float MEMORY_FIRST_WRONG = 0.5f;	/* stability after a wrong first answer */
static const float MEMORY_FIRST_GAIN = 2.5f;	/* added for a right one: 3 days */
static const float MEMORY_GROWTH = 2.0f;	/* scale of the growth after a success */
static const float MEMORY_GROWTH_POWER = -0.2f;	/* stable memories grow relatively less */
static const float MEMORY_SPACING_GAIN = 2.0f;	/* growth rises as exp(gain * (1 - R)) */
static const float MEMORY_SUCCESS_BONUS = 0.1f;	/* any success grows S by at least 10% */
static const float MEMORY_FAIL_FLOOR = 0.3f;	/* stability never drops below this */
static const float MEMORY_FAIL_BASE = 0.2f;	/* after a failure S -> base + keep * S */
static const float MEMORY_FAIL_KEEP = 0.5f;

float
tl_memory_recall(const tl_memory *m, double day)
{
	double		elapsed;

	if (!m || !(m->stability > 0.0f))
		return 0.0f;
	/* an answer "in the future" (clock skew) counts as just now */
	elapsed = fmax(day - m->last_day, 0.0);
	return (float) (1.0 / (1.0 + elapsed / (MEMORY_CURVE * m->stability)));
}

void
tl_memory_update(tl_memory *m, double day, float correct)
{
	float		c,
				s,
				recall,
				success,
				failure;

	if (!m)
		return;
	/* fractional credit is allowed; NaN counts as wrong */
	c = fminf(fmaxf(correct, 0.0f), 1.0f);
	if (!(m->stability > 0.0f))
	{
		m->stability = MEMORY_FIRST_WRONG + MEMORY_FIRST_GAIN * c;
		m->last_day = day;
		return;
	}
	if (day - m->last_day < MEMORY_SITTING_DAYS)
	{
		/* same sitting: recall was not tested, only the clock moves (never back) */
		if (day > m->last_day)
			m->last_day = day;
		return;
	}
	s = m->stability;
	recall = tl_memory_recall(m, day);
	/* the spacing effect: the more was forgotten, the more a success teaches */
	success = s * (1.0f + MEMORY_GROWTH * powf(s, MEMORY_GROWTH_POWER) *
				   (expf(MEMORY_SPACING_GAIN * (1.0f - recall)) - 1.0f) + MEMORY_SUCCESS_BONUS);
	failure = fmaxf(MEMORY_FAIL_FLOOR, fminf(s, MEMORY_FAIL_BASE + MEMORY_FAIL_KEEP * s));
	m->stability = c * success + (1.0f - c) * failure;
	m->last_day = day;
}

/*
 * Solve R(t) = retention for t.  A skill never practised has nothing to
 * forget and is due at once (last_day, whatever the caller left there);
 * a retention of 1 or more is always due, one of 0 or less never.
 */
double
tl_memory_due(const tl_memory *m, float retention)
{
	if (!m)
		return 0.0;
	if (!(m->stability > 0.0f) || !(retention < 1.0f))
		return m->last_day;
	if (!(retention > 0.0f))
		return HUGE_VAL;
	return m->last_day + MEMORY_CURVE * m->stability * (1.0 / retention - 1.0);
}

/* ---- options and checks ------------------------------------------------------ */

void
tl_plan_default_options(tl_plan_options *opt)
{
	if (!opt)
		return;
	memset(opt, 0, sizeof(*opt));
	opt->today = 0.0;
	opt->horizon_days = 7;
	opt->budget_items = 10;
	opt->budget_minutes = 0.0f;
	opt->items_per_step = 4;
	opt->mastery = 0.85f;
	opt->assess_margin = 0.07f;
	opt->band_lo = 0.6f;
	opt->band_hi = 0.8f;
	opt->retention = 0.9f;
	opt->item_spacing_days = 2.0f;
	opt->learn_rate = 0.15f;
	opt->prerequisite_decay = 0.9f;
}

/* The negated comparisons below also reject NaN. */
static tl_status
plan_check_options(const tl_plan_options *opt)
{
	if (!isfinite(opt->today))
		return tl_fail(TL_ERR_ARG, "plan option today must be finite, got %g", opt->today);
	if (opt->horizon_days < 1)
		return tl_fail(TL_ERR_ARG, "plan option horizon_days must be >= 1, got %d", opt->horizon_days);
	if (opt->budget_items < 0)
		return tl_fail(TL_ERR_ARG, "plan option budget_items must be >= 0, got %d", opt->budget_items);
	if (!(opt->budget_minutes >= 0.0f) || !isfinite(opt->budget_minutes))
		return tl_fail(TL_ERR_ARG, "plan option budget_minutes must be finite and >= 0, got %g",
					   (double) opt->budget_minutes);
	if (opt->budget_items == 0 && opt->budget_minutes == 0.0f)
		return tl_fail(TL_ERR_ARG, "plan options budget_items and budget_minutes are both 0 (no daily budget)");
	if (opt->items_per_step < 1)
		return tl_fail(TL_ERR_ARG, "plan option items_per_step must be >= 1, got %d", opt->items_per_step);
	if (!(opt->mastery > 0.0f && opt->mastery < 1.0f))
		return tl_fail(TL_ERR_ARG, "plan option mastery must be in (0, 1), got %g", (double) opt->mastery);
	if (!(opt->assess_margin >= 0.0f && opt->assess_margin < opt->mastery))
		return tl_fail(TL_ERR_ARG, "plan option assess_margin must be in [0, mastery), got %g",
					   (double) opt->assess_margin);
	if (!(opt->band_lo >= 0.0f && opt->band_lo <= opt->band_hi && opt->band_hi <= 1.0f))
		return tl_fail(TL_ERR_ARG, "plan options band_lo %g and band_hi %g must satisfy 0 <= lo <= hi <= 1",
					   (double) opt->band_lo, (double) opt->band_hi);
	if (!(opt->retention > 0.0f && opt->retention < 1.0f))
		return tl_fail(TL_ERR_ARG, "plan option retention must be in (0, 1), got %g", (double) opt->retention);
	if (!(opt->item_spacing_days >= 0.0f) || !isfinite(opt->item_spacing_days))
		return tl_fail(TL_ERR_ARG, "plan option item_spacing_days must be finite and >= 0, got %g",
					   (double) opt->item_spacing_days);
	if (!(opt->learn_rate >= 0.0f) || !isfinite(opt->learn_rate))
		return tl_fail(TL_ERR_ARG, "plan option learn_rate must be finite and >= 0, got %g",
					   (double) opt->learn_rate);
	if (!(opt->prerequisite_decay >= 0.0f && opt->prerequisite_decay <= 1.0f))
		return tl_fail(TL_ERR_ARG, "plan option prerequisite_decay must be in [0, 1], got %g",
					   (double) opt->prerequisite_decay);
	return TL_OK;
}

/* Shape of the prerequisite lists: offsets non-decreasing, indexes in range. */
static tl_status
plan_check_graph(int32_t n_skills, const int32_t *prereq_start, const int32_t *prereq)
{
	if (n_skills < 0)
		return tl_fail(TL_ERR_ARG, "plan n_skills must be >= 0, got %d", n_skills);
	if (!prereq_start)
		return tl_fail(TL_ERR_ARG, "plan prereq_start is NULL");
	if (prereq_start[0] < 0)
		return tl_fail(TL_ERR_ARG, "plan prereq_start[0] must be >= 0, got %d", prereq_start[0]);
	for (int32_t s = 0; s < n_skills; s++)
		if (prereq_start[s + 1] < prereq_start[s])
			return tl_fail(TL_ERR_ARG, "plan prereq_start[%d] = %d is below prereq_start[%d] = %d",
						   s + 1, prereq_start[s + 1], s, prereq_start[s]);
	if (prereq_start[n_skills] > prereq_start[0] && !prereq)
		return tl_fail(TL_ERR_ARG, "plan prereq is NULL but prereq_start lists %d prerequisites",
					   prereq_start[n_skills] - prereq_start[0]);
	for (int32_t s = 0; s < n_skills; s++)
		for (int32_t j = prereq_start[s]; j < prereq_start[s + 1]; j++)
			if (prereq[j] < 0 || prereq[j] >= n_skills)
				return tl_fail(TL_ERR_ARG, "plan prerequisite %d of skill %d is not in 0..%d",
							   prereq[j], s, n_skills - 1);
	return TL_OK;
}

static tl_status
plan_check_problem(const tl_plan_problem *pb)
{
	TL_TRY(plan_check_options(&pb->opt));
	TL_TRY(plan_check_graph(pb->n_skills, pb->prereq_start, pb->prereq));
	if (pb->n_skills > 0 && !pb->skills)
		return tl_fail(TL_ERR_ARG, "plan skills is NULL for %d skills", pb->n_skills);
	if (pb->n_items < 0)
		return tl_fail(TL_ERR_ARG, "plan n_items must be >= 0, got %d", pb->n_items);
	if (pb->n_items > 0 && !pb->items)
		return tl_fail(TL_ERR_ARG, "plan items is NULL for %d items", pb->n_items);
	for (int32_t s = 0; s < pb->n_skills; s++)
	{
		const tl_plan_skill *sk = &pb->skills[s];

		if (!(sk->mastery >= 0.0f && sk->mastery <= 1.0f))
			return tl_fail(TL_ERR_ARG, "plan skill %d: mastery %g is not in [0, 1]", s, (double) sk->mastery);
		if (sk->attempts < 0)
			return tl_fail(TL_ERR_ARG, "plan skill %d: attempts must be >= 0, got %d", s, sk->attempts);
		if (!(sk->memory.stability >= 0.0f) || !isfinite(sk->memory.stability))
			return tl_fail(TL_ERR_ARG, "plan skill %d: memory.stability must be finite and >= 0, got %g",
						   s, (double) sk->memory.stability);
		if (!isfinite(sk->memory.last_day))
			return tl_fail(TL_ERR_ARG, "plan skill %d: memory.last_day must be finite, got %g",
						   s, sk->memory.last_day);
		if (!(sk->goal >= 0.0f) || !isfinite(sk->goal))
			return tl_fail(TL_ERR_ARG, "plan skill %d: goal must be finite and >= 0, got %g",
						   s, (double) sk->goal);
	}
	for (int32_t i = 0; i < pb->n_items; i++)
	{
		const tl_plan_item *it = &pb->items[i];

		if (it->skill < 0 || it->skill >= pb->n_skills)
			return tl_fail(TL_ERR_ARG, "plan item %d: skill %d is not in 0..%d", i, it->skill, pb->n_skills - 1);
		if (!(it->p >= 0.0f && it->p <= 1.0f))
			return tl_fail(TL_ERR_ARG, "plan item %d: p %g is not in [0, 1]", i, (double) it->p);
		if (!(it->minutes > 0.0f) || !isfinite(it->minutes))
			return tl_fail(TL_ERR_ARG, "plan item %d: minutes must be finite and > 0, got %g",
						   i, (double) it->minutes);
		if (isinf(it->last_seen))
			return tl_fail(TL_ERR_ARG, "plan item %d: last_seen must be finite or NaN (never), got %g",
						   i, it->last_seen);
	}
	return TL_OK;
}

/* ---- the prerequisite graph ---------------------------------------------------- */

enum
{
	DFS_NEW = 0,
	DFS_OPEN,					/* on the current path */
	DFS_DONE
};

/*
 * Depth-first search along "requires" edges with an explicit stack, so a
 * chain of 10,000 skills needs no deep recursion.  order[] receives every
 * skill after all of its prerequisites (post-order).  An edge back to a
 * skill on the current path closes a cycle, and that skill is on it.
 */
static tl_status
plan_topo_order(int32_t n_skills, const int32_t *prereq_start, const int32_t *prereq,
				uint8_t *state, int32_t *stack, int32_t *next_edge, int32_t *order,
				int32_t *cycle_skill)
{
	int32_t		n_done = 0;

	memset(state, 0, (size_t) n_skills);
	for (int32_t root = 0; root < n_skills; root++)
	{
		int32_t		depth = 0;

		if (state[root] != DFS_NEW)
			continue;
		state[root] = DFS_OPEN;
		next_edge[root] = prereq_start[root];
		stack[depth++] = root;
		while (depth > 0)
		{
			int32_t		u = stack[depth - 1];

			if (next_edge[u] < prereq_start[u + 1])
			{
				int32_t		v = prereq[next_edge[u]++];

				if (state[v] == DFS_OPEN)
				{
					*cycle_skill = v;
					return tl_fail(TL_ERR_ARG, "plan prerequisites have a cycle through skill %d", v);
				}
				if (state[v] == DFS_NEW)
				{
					state[v] = DFS_OPEN;
					next_edge[v] = prereq_start[v];
					stack[depth++] = v;
				}
			}
			else
			{
				state[u] = DFS_DONE;
				order[n_done++] = u;
				depth--;
			}
		}
	}
	return TL_OK;
}

tl_status
tl_plan_check_prerequisites(int32_t n_skills, const int32_t *prereq_start,
							const int32_t *prereq, int32_t *skill)
{
	uint8_t    *state = NULL;
	int32_t    *stack = NULL,
			   *next_edge = NULL,
			   *order = NULL;
	int32_t		cycle_skill = -1;
	tl_status	rc;
	tl_buffer	buffers[4];

	/* skill is optional: a caller may only want the yes/no */
	if (skill)
		*skill = -1;
	TL_TRY(plan_check_graph(n_skills, prereq_start, prereq));
	buffers[0] = TL_BUFFER(state, n_skills);
	buffers[1] = TL_BUFFER(stack, n_skills);
	buffers[2] = TL_BUFFER(next_edge, n_skills);
	buffers[3] = TL_BUFFER(order, n_skills);
	TL_TRY(tl_alloc_buffers(buffers, 4, "plan prerequisite check"));
	rc = plan_topo_order(n_skills, prereq_start, prereq, state, stack, next_edge, order, &cycle_skill);
	tl_free_buffers(buffers, 4);
	if (skill)
		*skill = cycle_skill;
	return rc;
}

/* ---- scratch --------------------------------------------------------------------- */

/* A sort key: ascending by first, then second, then the lower index. */
typedef struct plan_rank
{
	double		first;
	double		second;
	int32_t		index;
} plan_rank;

/* Per-skill flags of the plan being made. */
enum
{
	SKILL_UNLOCKED = 1,			/* every direct prerequisite is mastered now */
	SKILL_ASSESSED = 2,			/* assessed in this plan: done with it */
	SKILL_LEARNED = 4			/* had a learn/practice step in this plan */
};

typedef struct plan_scratch
{
	/* per skill: cap_skills entries (item_start one more) */
	float	   *value;			/* worth toward the goals */
	int32_t    *about;			/* the goal that value comes from */
	float	   *delta;			/* projected logit gain from planned practice */
	tl_memory  *memory;			/* projected by planned reviews */
	int32_t    *last_step_day;	/* day of the skill's latest step, -1 = none */
	uint8_t    *flags;			/* SKILL_* */
	int32_t    *item_start;		/* items of skill s: skill_items[item_start[s] .. [s+1]) */
	uint8_t    *dfs_state;
	int32_t    *dfs_stack;
	int32_t    *dfs_next_edge;
	int32_t    *topo_order;
	plan_rank  *skill_rank;
	/* per problem item: cap_problem_items entries */
	int32_t    *skill_items;
	int32_t    *planned_day;	/* latest day the item is planned on, -1 = none */
	plan_rank  *item_rank;
} plan_scratch;

static int
plan_skill_buffers(plan_scratch *s, size_t n, tl_buffer *b)
{
	int			k = 0;

	b[k++] = TL_BUFFER(s->value, n);
	b[k++] = TL_BUFFER(s->about, n);
	b[k++] = TL_BUFFER(s->delta, n);
	b[k++] = TL_BUFFER(s->memory, n);
	b[k++] = TL_BUFFER(s->last_step_day, n);
	b[k++] = TL_BUFFER(s->flags, n);
	b[k++] = TL_BUFFER(s->item_start, n + 1);
	b[k++] = TL_BUFFER(s->dfs_state, n);
	b[k++] = TL_BUFFER(s->dfs_stack, n);
	b[k++] = TL_BUFFER(s->dfs_next_edge, n);
	b[k++] = TL_BUFFER(s->topo_order, n);
	b[k++] = TL_BUFFER(s->skill_rank, n);
	return k;
}

static int
plan_item_buffers(plan_scratch *s, size_t n, tl_buffer *b)
{
	int			k = 0;

	b[k++] = TL_BUFFER(s->skill_items, n);
	b[k++] = TL_BUFFER(s->planned_day, n);
	b[k++] = TL_BUFFER(s->item_rank, n);
	return k;
}

#define PLAN_MAX_BUFFERS 16

/* Room for n_skills and n_items; grows by at least doubling, never shrinks. */
static tl_status
plan_reserve_scratch(tl_plan *plan, int32_t n_skills, int32_t n_items)
{
	plan_scratch *s;
	tl_buffer	b[PLAN_MAX_BUFFERS];
	int			nb;
	int64_t		want;

	if (!plan->scratch)
	{
		plan->scratch = tl_alloc(1, sizeof(plan_scratch));
		if (!plan->scratch)
			return tl_fail(TL_ERR_NOMEM, "cannot allocate plan scratch");
		plan->cap_skills = 0;
		plan->cap_problem_items = 0;
	}
	s = plan->scratch;
	want = n_skills > 0 ? n_skills : 1;
	if (want > plan->cap_skills)
	{
		if (want < 2 * plan->cap_skills)
			want = 2 * plan->cap_skills;
		nb = plan_skill_buffers(s, 0, b);
		tl_free_buffers(b, nb);
		plan->cap_skills = 0;
		nb = plan_skill_buffers(s, (size_t) want, b);
		TL_TRY(tl_alloc_buffers(b, nb, "plan skill scratch"));
		plan->cap_skills = want;
	}
	want = n_items > 0 ? n_items : 1;
	if (want > plan->cap_problem_items)
	{
		if (want < 2 * plan->cap_problem_items)
			want = 2 * plan->cap_problem_items;
		nb = plan_item_buffers(s, 0, b);
		tl_free_buffers(b, nb);
		plan->cap_problem_items = 0;
		nb = plan_item_buffers(s, (size_t) want, b);
		TL_TRY(tl_alloc_buffers(b, nb, "plan item scratch"));
		plan->cap_problem_items = want;
	}
	return TL_OK;
}

/* Grow an output array to hold `need` elements, keeping the first `used`. */
static tl_status
plan_grow(void **array, int32_t *cap, int32_t used, int64_t need, size_t size, const char *what)
{
	int64_t		new_cap;
	void	   *grown;

	if (need <= *cap)
		return TL_OK;
	if (need > INT32_MAX)
		return tl_fail(TL_ERR_NOMEM, "plan has more than %d %s", INT32_MAX, what);
	new_cap = (int64_t) *cap * 2;
	if (new_cap < need)
		new_cap = need;
	if (new_cap < 16)
		new_cap = 16;
	if (new_cap > INT32_MAX)
		new_cap = INT32_MAX;
	grown = tl_alloc((size_t) new_cap, size);
	if (!grown)
		return tl_fail(TL_ERR_NOMEM, "cannot allocate %lld plan %s", (long long) new_cap, what);
	if (used > 0)
		memcpy(grown, *array, (size_t) used * size);
	tl_free(*array);
	*array = grown;
	*cap = (int32_t) new_cap;
	return TL_OK;
}

/* ---- making a plan ------------------------------------------------------------------ */

/* How a step orders the open items of its skill. */
typedef enum plan_item_order
{
	ORDER_EASIEST,				/* learn: highest P(correct) first */
	ORDER_BAND,					/* practice, review: in the band, then nearest to it */
	ORDER_TYPICAL				/* assess: P(correct) closest to the mastery threshold */
} plan_item_order;

/* A review checks memory with a couple of items; it is not a lesson. */
static const int32_t REVIEW_MAX_ITEMS = 2;

/* P(correct) is kept this far from 0 and 1 before taking its logit. */
static const double PLAN_P_EPS = 1e-4;

typedef struct plan_ctx
{
	const tl_plan_problem *pb;
	const tl_plan_options *opt;
	tl_plan    *plan;
	plan_scratch *s;
	bool		cold_start;		/* no answers on any skill yet */
	double		near_from;		/* threshold - margin: assess from here */
} plan_ctx;

/* What is left of one day's budget. */
typedef struct plan_day
{
	int32_t		day;
	double		time;			/* today + day, on the memories' clock */
	int32_t		items_used;
	double		minutes_used;
} plan_day;

/* P(correct) after a logit shift; exact (no logit round trip) when unshifted. */
static double
plan_project(float p, float delta)
{
	double		q,
				x;

	if (delta == 0.0f)
		return p;
	q = fmin(fmax((double) p, PLAN_P_EPS), 1.0 - PLAN_P_EPS);
	x = log(q / (1.0 - q)) + delta;
	if (x >= 0.0)
		return 1.0 / (1.0 + exp(-x));
	return exp(x) / (1.0 + exp(x));
}

static inline bool
plan_mastered(const plan_ctx *c, int32_t skill)
{
	return c->pb->skills[skill].mastery >= c->opt->mastery;
}

static inline double
plan_skill_projected(const plan_ctx *c, int32_t skill)
{
	return plan_project(c->pb->skills[skill].mastery, c->s->delta[skill]);
}

static bool
plan_day_full(const plan_ctx *c, const plan_day *d)
{
	if (c->opt->budget_items > 0 && d->items_used >= c->opt->budget_items)
		return true;
	if (c->opt->budget_minutes > 0.0f && d->minutes_used >= c->opt->budget_minutes)
		return true;
	return false;
}

/* Whether an item may go into a step on `day`: active, and spaced from its last sight. */
static bool
plan_item_open(const plan_ctx *c, int32_t i, int32_t day)
{
	const tl_plan_item *it = &c->pb->items[i];
	double		spacing = c->opt->item_spacing_days;
	int32_t		planned = c->s->planned_day[i];

	if (!it->active)
		return false;
	if (!isnan(it->last_seen) && c->opt->today + day - it->last_seen < spacing)
		return false;
	/* never twice in one day, even with spacing 0 */
	if (planned >= 0 && (planned == day || (double) (day - planned) < spacing))
		return false;
	return true;
}

static plan_rank
plan_item_rank(const tl_plan_options *opt, plan_item_order order, double p, int32_t i)
{
	plan_rank	r = {.index = i};

	switch (order)
	{
		case ORDER_EASIEST:
			r.first = -p;
			break;
		case ORDER_BAND:
			if (p >= opt->band_lo && p <= opt->band_hi)
			{
				r.first = 0.0;
				r.second = fabs(p - 0.5 * ((double) opt->band_lo + opt->band_hi));
			}
			else
			{
				r.first = 1.0;
				r.second = p < opt->band_lo ? opt->band_lo - p : p - opt->band_hi;
			}
			break;
		case ORDER_TYPICAL:
			r.first = fabs(p - opt->mastery);
			break;
	}
	return r;
}

static int
plan_rank_compare(const void *a, const void *b)
{
	const plan_rank *x = a;
	const plan_rank *y = b;

	if (x->first != y->first)
		return x->first < y->first ? -1 : 1;
	if (x->second != y->second)
		return x->second < y->second ? -1 : 1;
	return (x->index > y->index) - (x->index < y->index);
}

static void
plan_sort(plan_rank *rank, int32_t n)
{
	/* a total order (the index breaks every tie), so qsort is deterministic */
	if (n > 1)
		qsort(rank, (size_t) n, sizeof(plan_rank), plan_rank_compare);
}

/*
 * Append `step` (day, activity, skill, reason, about and value filled in)
 * with up to max_items of its skill's open items, best first by `order`,
 * as far as the day's budget allows.  *taken = 0 means no step was added.
 */
static tl_status
plan_add_step(plan_ctx *c, plan_day *d, tl_plan_step step, int32_t max_items,
			  plan_item_order order, int32_t *taken)
{
	const tl_plan_options *opt = c->opt;
	const tl_plan_item *items = c->pb->items;
	plan_scratch *s = c->s;
	tl_plan    *plan = c->plan;
	float		delta = s->delta[step.skill];
	int32_t		limit = max_items;
	int32_t		n_open = 0;
	int32_t		n_taken = 0;
	int32_t		first = plan->n_items;
	double		p_sum = 0.0;
	double		minutes = 0.0;

	*taken = 0;
	if (opt->budget_items > 0 && opt->budget_items - d->items_used < limit)
		limit = opt->budget_items - d->items_used;
	if (limit <= 0)
		return TL_OK;
	for (int32_t j = s->item_start[step.skill]; j < s->item_start[step.skill + 1]; j++)
	{
		int32_t		i = s->skill_items[j];

		if (plan_item_open(c, i, d->day))
			s->item_rank[n_open++] = plan_item_rank(opt, order, plan_project(items[i].p, delta), i);
	}
	if (n_open == 0)
		return TL_OK;
	plan_sort(s->item_rank, n_open);
	TL_TRY(plan_grow((void **) &plan->items, &plan->cap_items, plan->n_items,
					 (int64_t) plan->n_items + (limit < n_open ? limit : n_open),
					 sizeof(int32_t), "items"));
	for (int32_t k = 0; k < n_open && n_taken < limit; k++)
	{
		int32_t		i = s->item_rank[k].index;

		/* a long item that does not fit may leave room for a shorter one */
		if (opt->budget_minutes > 0.0f &&
			d->minutes_used + minutes + items[i].minutes > opt->budget_minutes)
			continue;
		plan->items[first + n_taken++] = i;
		minutes += items[i].minutes;
		p_sum += plan_project(items[i].p, delta);
	}
	if (n_taken == 0)
		return TL_OK;
	TL_TRY(plan_grow((void **) &plan->steps, &plan->cap_steps, plan->n_steps,
					 (int64_t) plan->n_steps + 1, sizeof(tl_plan_step), "steps"));
	for (int32_t k = 0; k < n_taken; k++)
		s->planned_day[plan->items[first + k]] = d->day;
	plan->n_items += n_taken;
	step.first_item = first;
	step.n_items = n_taken;
	step.expected_p = (float) (p_sum / n_taken);
	step.minutes = (float) minutes;
	plan->steps[plan->n_steps++] = step;
	d->items_used += n_taken;
	d->minutes_used += minutes;
	s->last_step_day[step.skill] = d->day;
	*taken = n_taken;
	return TL_OK;
}

/* 1. Mastered skills whose projected recall fell below retention, most forgotten first. */
static tl_status
plan_reviews(plan_ctx *c, plan_day *d)
{
	plan_scratch *s = c->s;
	int32_t		n_rank = 0;
	int32_t		max_items = c->opt->items_per_step < REVIEW_MAX_ITEMS ?
		c->opt->items_per_step : REVIEW_MAX_ITEMS;

	for (int32_t k = 0; k < c->pb->n_skills; k++)
	{
		float		recall;

		if (!plan_mastered(c, k) || !(s->memory[k].stability > 0.0f))
			continue;
		recall = tl_memory_recall(&s->memory[k], d->time);
		if (recall < c->opt->retention)
			s->skill_rank[n_rank++] = (plan_rank) {.first = recall, .index = k};
	}
	plan_sort(s->skill_rank, n_rank);
	for (int32_t r = 0; r < n_rank && !plan_day_full(c, d); r++)
	{
		int32_t		skill = s->skill_rank[r].index;
		tl_plan_step step = {.day = d->day, .activity = TL_PLAN_REVIEW, .skill = skill,
			.reason = TL_REASON_REVIEW, .about = skill, .value = (float) s->skill_rank[r].first};
		int32_t		taken;

		TL_TRY(plan_add_step(c, d, step, max_items, ORDER_BAND, &taken));
		/* the review is an answer: recall resets and stability grows, so it is not due again soon */
		if (taken > 0)
			tl_memory_update(&s->memory[skill], d->time, (float) plan_skill_projected(c, skill));
	}
	return TL_OK;
}

/* 2. Skills just below the threshold (as projected): most valuable, then closest, first. */
static tl_status
plan_assess_near(plan_ctx *c, plan_day *d)
{
	plan_scratch *s = c->s;
	int32_t		n_rank = 0;

	for (int32_t k = 0; k < c->pb->n_skills; k++)
	{
		double		pm;

		if (plan_mastered(c, k) || (s->flags[k] & SKILL_ASSESSED))
			continue;
		pm = plan_skill_projected(c, k);
		/* projected practice may jump past the threshold: that is near too */
		if (pm >= c->near_from)
			s->skill_rank[n_rank++] = (plan_rank) {.first = -s->value[k], .second = -pm, .index = k};
	}
	plan_sort(s->skill_rank, n_rank);
	for (int32_t r = 0; r < n_rank && !plan_day_full(c, d); r++)
	{
		int32_t		skill = s->skill_rank[r].index;
		tl_plan_step step = {.day = d->day, .activity = TL_PLAN_ASSESS, .skill = skill,
			.reason = TL_REASON_NEAR_MASTERY, .about = skill, .value = (float) -s->skill_rank[r].second};
		int32_t		taken;

		TL_TRY(plan_add_step(c, d, step, c->opt->items_per_step, ORDER_TYPICAL, &taken));
		if (taken > 0)
			s->flags[skill] |= SKILL_ASSESSED;
	}
	return TL_OK;
}

/* 3. Unlocked, unmastered skills by expected gain toward the goals, value * p(1-p). */
static tl_status
plan_learn(plan_ctx *c, plan_day *d)
{
	plan_scratch *s = c->s;
	int32_t		n_rank = 0;

	for (int32_t k = 0; k < c->pb->n_skills; k++)
	{
		double		pm;

		/* a skill that leads to no goal has no value and no reason to be planned */
		if (plan_mastered(c, k) || (s->flags[k] & SKILL_ASSESSED) ||
			!(s->flags[k] & SKILL_UNLOCKED) || !(s->value[k] > 0.0f))
			continue;
		pm = plan_skill_projected(c, k);
		if (pm >= c->near_from)
			continue;
		s->skill_rank[n_rank++] = (plan_rank) {.first = -(s->value[k] * pm * (1.0 - pm)), .index = k};
	}
	plan_sort(s->skill_rank, n_rank);
	/* each skill appears once in the ranking: at most one step per skill and day */
	for (int32_t r = 0; r < n_rank && !plan_day_full(c, d); r++)
	{
		int32_t		skill = s->skill_rank[r].index;
		bool		learn = c->pb->skills[skill].attempts == 0 && !(s->flags[skill] & SKILL_LEARNED);
		tl_plan_step step = {.day = d->day, .skill = skill, .about = skill,
			.activity = learn ? TL_PLAN_LEARN : TL_PLAN_PRACTICE,
			.value = (float) plan_skill_projected(c, skill)};
		int32_t		taken;

		if (c->cold_start)
			step.reason = TL_REASON_START;
		else if (s->about[skill] == skill)
			step.reason = TL_REASON_GOAL;
		else
		{
			step.reason = TL_REASON_PREREQUISITE;
			step.about = s->about[skill];
		}
		TL_TRY(plan_add_step(c, d, step, c->opt->items_per_step,
							 learn ? ORDER_EASIEST : ORDER_BAND, &taken));
		if (taken > 0)
		{
			s->delta[skill] += (float) taken * c->opt->learn_rate;
			s->flags[skill] |= SKILL_LEARNED;
		}
	}
	return TL_OK;
}

/* 4. With budget left: confirm mastered skills, least recalled, then weakest, first. */
static tl_status
plan_confirm(plan_ctx *c, plan_day *d)
{
	plan_scratch *s = c->s;
	int32_t		n_rank = 0;

	if (plan_day_full(c, d))
		return TL_OK;
	for (int32_t k = 0; k < c->pb->n_skills; k++)
	{
		/* not the skill just reviewed today: one look a day is enough */
		if (!plan_mastered(c, k) || (s->flags[k] & SKILL_ASSESSED) || s->last_step_day[k] == d->day)
			continue;
		s->skill_rank[n_rank++] = (plan_rank) {.first = tl_memory_recall(&s->memory[k], d->time),
			.second = c->pb->skills[k].mastery, .index = k};
	}
	plan_sort(s->skill_rank, n_rank);
	for (int32_t r = 0; r < n_rank && !plan_day_full(c, d); r++)
	{
		int32_t		skill = s->skill_rank[r].index;
		tl_plan_step step = {.day = d->day, .activity = TL_PLAN_ASSESS, .skill = skill,
			.reason = TL_REASON_CONFIRM, .about = skill, .value = c->pb->skills[skill].mastery};
		int32_t		taken;

		TL_TRY(plan_add_step(c, d, step, c->opt->items_per_step, ORDER_TYPICAL, &taken));
		if (taken > 0)
			s->flags[skill] |= SKILL_ASSESSED;
	}
	return TL_OK;
}

/*
 * Per-plan state: items grouped by skill, value and `about` propagated
 * from the goals down the prerequisites, unlocked flags, and fresh
 * projections.  Fails only on a prerequisite cycle.
 */
static tl_status
plan_prepare(plan_ctx *c)
{
	const tl_plan_problem *pb = c->pb;
	plan_scratch *s = c->s;
	int32_t		n = pb->n_skills;
	int32_t		cycle_skill = -1;
	bool		any_goal = false;
	float		decay = c->opt->prerequisite_decay;

	TL_TRY(plan_topo_order(n, pb->prereq_start, pb->prereq, s->dfs_state, s->dfs_stack,
						   s->dfs_next_edge, s->topo_order, &cycle_skill));

	c->cold_start = true;
	for (int32_t k = 0; k < n; k++)
	{
		if (pb->skills[k].goal > 0.0f)
			any_goal = true;
		if (pb->skills[k].attempts > 0)
			c->cold_start = false;
	}
	for (int32_t k = 0; k < n; k++)
	{
		/* no goals at all: everything is worth learning */
		s->value[k] = any_goal ? pb->skills[k].goal : 1.0f;
		s->about[k] = k;
		s->delta[k] = 0.0f;
		s->memory[k] = pb->skills[k].memory;
		s->last_step_day[k] = -1;
		s->flags[k] = SKILL_UNLOCKED;
		for (int32_t j = pb->prereq_start[k]; j < pb->prereq_start[k + 1]; j++)
			if (!plan_mastered(c, pb->prereq[j]))
				s->flags[k] = 0;
	}
	/* reverse post-order visits a skill after everything that requires it */
	for (int32_t r = n - 1; r >= 0; r--)
	{
		int32_t		k = s->topo_order[r];
		float		inherited = decay * s->value[k];

		if (!(inherited > 0.0f))
			continue;
		for (int32_t j = pb->prereq_start[k]; j < pb->prereq_start[k + 1]; j++)
		{
			int32_t		q = pb->prereq[j];

			if (inherited > s->value[q] ||
				(inherited == s->value[q] && s->about[k] < s->about[q]))
			{
				s->value[q] = inherited;
				s->about[q] = s->about[k];
			}
		}
	}

	/* counting sort of the items by skill, keeping index order within a skill */
	memset(s->item_start, 0, sizeof(int32_t) * (size_t) (n + 1));
	for (int32_t i = 0; i < pb->n_items; i++)
		s->item_start[pb->items[i].skill]++;
	for (int32_t k = 1; k < n; k++)
		s->item_start[k] += s->item_start[k - 1];
	/* item_start[k] is now the end of skill k; filling backwards moves it to the start */
	for (int32_t i = pb->n_items - 1; i >= 0; i--)
		s->skill_items[--s->item_start[pb->items[i].skill]] = i;
	s->item_start[n] = pb->n_items;
	for (int32_t i = 0; i < pb->n_items; i++)
		s->planned_day[i] = -1;
	return TL_OK;
}

void
tl_plan_init(tl_plan *plan)
{
	if (plan)
		memset(plan, 0, sizeof(*plan));
}

tl_status
tl_plan_make(const tl_plan_problem *problem, tl_plan *plan)
{
	plan_ctx	c;
	tl_status	rc;

	if (!plan)
		return tl_fail(TL_ERR_ARG, "plan output is NULL");
	/* whatever happens below, the old plan is gone */
	plan->n_steps = 0;
	plan->n_items = 0;
	if (!problem)
		return tl_fail(TL_ERR_ARG, "plan problem is NULL");
	TL_TRY(plan_check_problem(problem));
	TL_TRY(plan_reserve_scratch(plan, problem->n_skills, problem->n_items));

	c.pb = problem;
	c.opt = &problem->opt;
	c.plan = plan;
	c.s = plan->scratch;
	c.near_from = (double) problem->opt.mastery - problem->opt.assess_margin;
	rc = plan_prepare(&c);
	for (int32_t day = 0; day < problem->opt.horizon_days && rc == TL_OK; day++)
	{
		plan_day	d = {.day = day, .time = problem->opt.today + day};

		if ((rc = plan_reviews(&c, &d)) != TL_OK ||
			(rc = plan_assess_near(&c, &d)) != TL_OK ||
			(rc = plan_learn(&c, &d)) != TL_OK)
			break;
		rc = plan_confirm(&c, &d);
	}
	if (rc != TL_OK)
	{
		plan->n_steps = 0;
		plan->n_items = 0;
	}
	return rc;
}

void
tl_plan_free(tl_plan *plan)
{
	tl_buffer	b[PLAN_MAX_BUFFERS];
	int			nb;

	if (!plan)
		return;
	if (plan->scratch)
	{
		nb = plan_skill_buffers(plan->scratch, 0, b);
		tl_free_buffers(b, nb);
		nb = plan_item_buffers(plan->scratch, 0, b);
		tl_free_buffers(b, nb);
		tl_free(plan->scratch);
	}
	tl_free(plan->steps);
	tl_free(plan->items);
	memset(plan, 0, sizeof(*plan));
}
