/*
 * test_plan.c -- the learning planner: the memory curve and its updates,
 * prerequisite checks, and plans that respect prerequisites, the practice
 * band, goals, reviews, assessments, budgets, spacing and determinism,
 * on hand-made and random problems.
 */
#include "unit.h"
#include "tl_plan.h"

/* ---- helpers ---------------------------------------------------------------- */

static tl_plan_skill
skill_at(float mastery, int32_t attempts)
{
	tl_plan_skill s = {.mastery = mastery, .attempts = attempts};

	return s;
}

/* count items of one skill with p evenly spread over [p_lo, p_hi], 1 minute each. */
static void
add_items(tl_plan_item *items, int32_t *n, int32_t skill, int count, float p_lo, float p_hi)
{
	for (int k = 0; k < count; k++)
	{
		tl_plan_item *it = &items[(*n)++];

		it->skill = skill;
		it->p = count > 1 ? p_lo + (p_hi - p_lo) * (float) k / (float) (count - 1) : p_lo;
		it->minutes = 1.0f;
		it->last_seen = NAN;
		it->active = true;
	}
}

static tl_plan_problem
make_problem(int32_t n_skills, const tl_plan_skill *skills, int32_t n_items,
			 const tl_plan_item *items, const int32_t *prereq_start, const int32_t *prereq)
{
	tl_plan_problem pb = {.n_skills = n_skills, .skills = skills, .n_items = n_items, .items = items,
	.prereq_start = prereq_start, .prereq = prereq};

	tl_plan_default_options(&pb.opt);
	return pb;
}

static const tl_plan_step *
first_step_on(const tl_plan *plan, int32_t skill)
{
	for (int32_t k = 0; k < plan->n_steps; k++)
		if (plan->steps[k].skill == skill)
			return &plan->steps[k];
	return NULL;
}

static bool
is_learning(const tl_plan_step *st)
{
	return st->activity == TL_PLAN_LEARN || st->activity == TL_PLAN_PRACTICE;
}

/*
 * Everything a plan must satisfy whatever the problem: well-formed steps
 * in day order, items of the step's skill, budgets, spacing, prerequisites
 * of learning steps mastered, nothing after a skill's assessment.
 */
static void
check_invariants(const tl_plan_problem *pb, const tl_plan *plan)
{
	const tl_plan_options *o = &pb->opt;
	int32_t    *last_planned = malloc(sizeof(int32_t) * (size_t) (pb->n_items + 1));
	int32_t    *assessed_on = malloc(sizeof(int32_t) * (size_t) (pb->n_skills + 1));
	int32_t		next_item = 0;
	int32_t		day_items = 0;
	double		day_minutes = 0.0;

	for (int32_t i = 0; i < pb->n_items; i++)
		last_planned[i] = -1;
	for (int32_t s = 0; s < pb->n_skills; s++)
		assessed_on[s] = -1;
	for (int32_t k = 0; k < plan->n_steps; k++)
	{
		const tl_plan_step *st = &plan->steps[k];
		const tl_plan_skill *sk = &pb->skills[st->skill];
		bool		mastered = sk->mastery >= o->mastery;
		double		item_minutes = 0.0;

		assert_true(st->day >= 0 && st->day < o->horizon_days);
		if (k > 0)
		{
			assert_true(st->day >= plan->steps[k - 1].day);
			if (st->day != plan->steps[k - 1].day)
				day_items = 0, day_minutes = 0.0;
		}
		assert_true(st->skill >= 0 && st->skill < pb->n_skills);
		assert_int_equal(st->first_item, next_item);
		assert_true(st->n_items >= 1 && st->n_items <= o->items_per_step);
		next_item += st->n_items;
		assert_true(next_item <= plan->n_items);
		assert_true(st->expected_p >= 0.0f && st->expected_p <= 1.0f);
		for (int32_t j = st->first_item; j < st->first_item + st->n_items; j++)
		{
			int32_t		i = plan->items[j];
			const tl_plan_item *it;

			assert_true(i >= 0 && i < pb->n_items);
			it = &pb->items[i];
			assert_int_equal(it->skill, st->skill);
			assert_true(it->active);
			if (!isnan(it->last_seen))
				assert_true(o->today + st->day - it->last_seen >= o->item_spacing_days);
			if (last_planned[i] >= 0)
			{
				assert_true(last_planned[i] < st->day);
				assert_true(st->day - last_planned[i] >= o->item_spacing_days);
			}
			last_planned[i] = st->day;
			item_minutes += it->minutes;
		}
		assert_float_equal(st->minutes, item_minutes, 1e-3);
		day_items += st->n_items;
		day_minutes += st->minutes;
		if (o->budget_items > 0)
			assert_true(day_items <= o->budget_items);
		if (o->budget_minutes > 0.0f)
			assert_true(day_minutes <= o->budget_minutes + 1e-3);

		/* an assessed skill is done: no learning or assessment after it */
		if (st->activity != TL_PLAN_REVIEW)
			assert_int_equal(assessed_on[st->skill], -1);
		if (st->activity == TL_PLAN_ASSESS)
			assessed_on[st->skill] = st->day;

		switch (st->activity)
		{
			case TL_PLAN_LEARN:
			case TL_PLAN_PRACTICE:
				assert_false(mastered);
				for (int32_t j = pb->prereq_start[st->skill]; j < pb->prereq_start[st->skill + 1]; j++)
					assert_true(pb->skills[pb->prereq[j]].mastery >= o->mastery);
				assert_true(st->reason == TL_REASON_GOAL || st->reason == TL_REASON_PREREQUISITE ||
							st->reason == TL_REASON_START);
				if (st->reason == TL_REASON_PREREQUISITE)
					assert_int_not_equal(st->about, st->skill);
				else
					assert_int_equal(st->about, st->skill);
				if (st->activity == TL_PLAN_LEARN)
					assert_int_equal(sk->attempts, 0);
				break;
			case TL_PLAN_REVIEW:
				assert_true(mastered);
				assert_int_equal(st->reason, TL_REASON_REVIEW);
				assert_true(st->value < o->retention);
				assert_true(st->n_items <= 2);
				break;
			case TL_PLAN_ASSESS:
				if (mastered)
					assert_int_equal(st->reason, TL_REASON_CONFIRM);
				else
					assert_int_equal(st->reason, TL_REASON_NEAR_MASTERY);
				break;
		}
	}
	assert_int_equal(next_item, plan->n_items);
	free(last_planned);
	free(assessed_on);
}

/* A random problem: a random DAG over shuffled skill labels, random state and items. */
typedef struct random_problem
{
	tl_plan_skill *skills;
	tl_plan_item *items;
	int32_t    *start;
	int32_t    *prereq;
	tl_plan_problem pb;
} random_problem;

static void
random_problem_make(random_problem *r, tl_rng *rng, int32_t n_skills, int32_t n_items)
{
	int32_t    *label = malloc(sizeof(int32_t) * (size_t) n_skills);
	int32_t    *count = calloc((size_t) n_skills, sizeof(int32_t));
	int32_t    *lists = malloc(sizeof(int32_t) * (size_t) n_skills * 3);
	int32_t		n_edges = 0;

	r->skills = calloc((size_t) n_skills, sizeof(tl_plan_skill));
	r->items = calloc((size_t) n_items, sizeof(tl_plan_item));
	r->start = malloc(sizeof(int32_t) * (size_t) (n_skills + 1));
	r->prereq = malloc(sizeof(int32_t) * (size_t) n_skills * 3 + 1);
	/* skill label[k] may require only skills of lower rank: acyclic, in scrambled indexes */
	for (int32_t k = 0; k < n_skills; k++)
		label[k] = k;
	for (int32_t k = n_skills - 1; k > 0; k--)
	{
		int32_t		j = (int32_t) tl_rng_below(rng, (uint64_t) k + 1);
		int32_t		t = label[k];

		label[k] = label[j];
		label[j] = t;
	}
	for (int32_t k = 1; k < n_skills; k++)
	{
		int32_t		n_req = (int32_t) tl_rng_below(rng, 4);

		for (int32_t e = 0; e < n_req; e++)
			lists[label[k] * 3 + count[label[k]]++] = label[tl_rng_below(rng, (uint64_t) k)];
	}
	for (int32_t s = 0; s < n_skills; s++)
	{
		tl_plan_skill *sk = &r->skills[s];
		float		u = tl_rng_uniform(rng);

		r->start[s] = n_edges;
		for (int32_t e = 0; e < count[s]; e++)
			r->prereq[n_edges++] = lists[s * 3 + e];
		/* a mix of mastered, near and weak skills */
		sk->mastery = u < 0.4f ? 0.85f + 0.15f * tl_rng_uniform(rng) : tl_rng_uniform(rng);
		sk->attempts = (int32_t) tl_rng_below(rng, 4);
		if (sk->attempts > 0)
		{
			sk->memory.stability = 0.5f + 20.0f * tl_rng_uniform(rng);
			sk->memory.last_day = 100.0 - 30.0 * tl_rng_uniform(rng);
		}
		sk->goal = tl_rng_uniform(rng) < 0.1f ? 0.5f + tl_rng_uniform(rng) : 0.0f;
	}
	r->start[n_skills] = n_edges;
	for (int32_t i = 0; i < n_items; i++)
	{
		tl_plan_item *it = &r->items[i];

		it->skill = (int32_t) tl_rng_below(rng, (uint64_t) n_skills);
		it->p = tl_rng_uniform(rng);
		it->minutes = 1.0f + (float) tl_rng_below(rng, 5);
		it->last_seen = tl_rng_uniform(rng) < 0.5f ? NAN : 100.0 - 4.0 * tl_rng_uniform(rng);
		it->active = tl_rng_uniform(rng) < 0.9f;
	}
	r->pb = make_problem(n_skills, r->skills, n_items, r->items, r->start, r->prereq);
	r->pb.opt.today = 100.0;
	free(label);
	free(count);
	free(lists);
}

static void
random_problem_free(random_problem *r)
{
	free(r->skills);
	free(r->items);
	free(r->start);
	free(r->prereq);
}

/* ---- 1. memory ---------------------------------------------------------------- */

static void
test_memory(void **state)
{
	tl_memory	m = {.stability = 3.0f, .last_day = 10.0};
	tl_memory	never = {0};
	tl_memory	a,
				b;
	float		previous = 2.0f;

	assert_float_equal(tl_memory_recall(&m, 10.0), 1.0, 1e-7);
	assert_float_equal(tl_memory_recall(&m, 13.0), 0.9, 1e-5);
	/* before the last answer counts as at it */
	assert_float_equal(tl_memory_recall(&m, 5.0), 1.0, 1e-7);
	for (double t = 10.0; t < 400.0; t += 7.0)
	{
		float		r = tl_memory_recall(&m, t);

		assert_true(r < previous);
		previous = r;
	}
	assert_float_equal(tl_memory_recall(&never, 10.0), 0.0, 0.0);
	assert_float_equal(tl_memory_due(&m, 0.9f), 13.0, 1e-5);
	assert_true(tl_memory_due(&m, 0.8f) > tl_memory_due(&m, 0.9f));
	assert_float_equal(tl_memory_due(&never, 0.9f), 0.0, 0.0);

	/* first answers */
	a = never;
	tl_memory_update(&a, 4.0, 1.0f);
	assert_float_equal(a.stability, 3.0, 1e-6);
	assert_float_equal(a.last_day, 4.0, 0.0);
	b = never;
	tl_memory_update(&b, 4.0, 0.0f);
	assert_float_equal(b.stability, 0.5, 1e-6);

	/* the spacing effect: a success after a long gap teaches more */
	a = m;
	b = m;
	tl_memory_update(&a, 11.5, 1.0f);
	tl_memory_update(&b, 40.0, 1.0f);
	assert_true(a.stability > m.stability);
	assert_true(b.stability > a.stability);
	assert_float_equal(b.last_day, 40.0, 0.0);

	/* a failure lowers stability */
	a = m;
	tl_memory_update(&a, 20.0, 0.0f);
	assert_true(a.stability < m.stability);
	assert_true(a.stability >= 0.3f);
	assert_float_equal(a.last_day, 20.0, 0.0);

	/* same sitting: stability unchanged, the clock moves */
	a = m;
	tl_memory_update(&a, 10.1, 1.0f);
	assert_true(a.stability == m.stability);
	assert_float_equal(a.last_day, 10.1, 1e-12);
	tl_memory_update(&a, 10.2, 0.0f);
	assert_true(a.stability == m.stability);
}

/* ---- 2. prerequisites ----------------------------------------------------------- */

/* 1 requires 0, 2 requires 1, 3 requires 0 and 2 */
static const int32_t chain_start[] = {0, 0, 1, 2, 4};
static const int32_t chain_prereq[] = {0, 1, 0, 2};

static void
test_prerequisites_lock(void **state)
{
	tl_plan_skill skills[4];
	tl_plan_item items[40];
	int32_t		n_items = 0;
	tl_plan_problem pb;
	tl_plan		plan;
	tl_rng		rng;
	int32_t		cycle = 7;
	bool		offered_1 = false;

	ASSERT_OK(tl_plan_check_prerequisites(4, chain_start, chain_prereq, &cycle));
	assert_int_equal(cycle, -1);
	for (int32_t s = 0; s < 4; s++)
		add_items(items, &n_items, s, 10, 0.2f, 0.95f);
	skills[0] = skill_at(0.9f, 5);
	skills[1] = skill_at(0.3f, 2);
	skills[2] = skill_at(0.3f, 2);
	skills[3] = skill_at(0.3f, 2);
	pb = make_problem(4, skills, n_items, items, chain_start, chain_prereq);
	tl_plan_init(&plan);
	ASSERT_OK(tl_plan_make(&pb, &plan));
	assert_true(plan.n_steps > 0);
	for (int32_t k = 0; k < plan.n_steps; k++)
	{
		const tl_plan_step *st = &plan.steps[k];

		if (is_learning(st))
			assert_true(st->skill != 2 && st->skill != 3);
		if (st->skill == 1 && is_learning(st))
			offered_1 = true;
	}
	assert_true(offered_1);
	assert_int_equal(plan.steps[0].skill, 1);
	check_invariants(&pb, &plan);

	/* random masteries: learning steps only ever where every direct prerequisite is mastered */
	tl_rng_seed(&rng, 5);
	for (int trial = 0; trial < 300; trial++)
	{
		for (int32_t s = 0; s < 4; s++)
			skills[s] = skill_at(tl_rng_uniform(&rng), (int32_t) tl_rng_below(&rng, 3));
		ASSERT_OK(tl_plan_make(&pb, &plan));
		check_invariants(&pb, &plan);
	}
	tl_plan_free(&plan);
	assert_null(plan.steps);
	assert_null(plan.scratch);
}

/* ---- 3. the practice band -------------------------------------------------------- */

static bool
in_band(float p, const tl_plan_options *o)
{
	return p >= o->band_lo && p <= o->band_hi;
}

static double
band_distance(float p, const tl_plan_options *o)
{
	return p < o->band_lo ? (double) o->band_lo - p : p > o->band_hi ? (double) p - o->band_hi : 0.0;
}

static void
test_practice_band(void **state)
{
	tl_plan_skill skills[1] = {skill_at(0.5f, 3)};
	tl_plan_item items[20];
	int32_t		n_items = 0;
	int32_t		start[] = {0, 0};
	tl_plan_problem pb;
	tl_plan		plan;
	const tl_plan_step *st;
	int32_t		n_in = 0;

	add_items(items, &n_items, 0, 20, 0.05f, 0.99f);
	pb = make_problem(1, skills, n_items, items, start, NULL);
	for (int32_t i = 0; i < n_items; i++)
		n_in += in_band(items[i].p, &pb.opt);
	assert_true(n_in >= pb.opt.items_per_step);

	tl_plan_init(&plan);
	ASSERT_OK(tl_plan_make(&pb, &plan));
	st = &plan.steps[0];
	assert_int_equal(st->day, 0);
	assert_int_equal(st->activity, TL_PLAN_PRACTICE);
	assert_int_equal(st->n_items, 4);
	for (int32_t j = 0; j < st->n_items; j++)
		assert_true(in_band(items[plan.items[st->first_item + j]].p, &pb.opt));
	check_invariants(&pb, &plan);

	/* a narrow band holds two items: they lead, closest to the middle first */
	pb.opt.band_lo = 0.65f;
	pb.opt.band_hi = 0.75f;
	n_in = 0;
	for (int32_t i = 0; i < n_items; i++)
		n_in += in_band(items[i].p, &pb.opt);
	assert_int_equal(n_in, 2);
	ASSERT_OK(tl_plan_make(&pb, &plan));
	st = &plan.steps[0];
	assert_int_equal(st->n_items, 4);
	assert_true(in_band(items[plan.items[st->first_item]].p, &pb.opt));
	assert_true(in_band(items[plan.items[st->first_item + 1]].p, &pb.opt));
	assert_true(fabsf(items[plan.items[st->first_item]].p - 0.7f) <=
				fabsf(items[plan.items[st->first_item + 1]].p - 0.7f));
	/* then the nearest outside the band, nearer first, no unchosen item nearer */
	for (int32_t j = 2; j < 4; j++)
	{
		float		p = items[plan.items[st->first_item + j]].p;

		assert_false(in_band(p, &pb.opt));
		if (j == 3)
			assert_true(band_distance(items[plan.items[st->first_item + 2]].p, &pb.opt) <= band_distance(p, &pb.opt));
		for (int32_t i = 0; i < n_items; i++)
		{
			bool		chosen = false;

			for (int32_t q = 0; q < 4; q++)
				chosen |= plan.items[st->first_item + q] == i;
			if (!chosen)
				assert_true(band_distance(items[i].p, &pb.opt) >= band_distance(p, &pb.opt));
		}
	}
	tl_plan_free(&plan);
}

/* ---- 4. ranking toward goals ----------------------------------------------------- */

static void
test_goal_ranking(void **state)
{
	/* 2 (the goal) requires 0; 1 is unrelated; 0 and 1 are equally weak */
	tl_plan_skill skills[3] = {skill_at(0.4f, 2), skill_at(0.4f, 2), skill_at(0.2f, 0)};
	tl_plan_item items[30];
	int32_t		n_items = 0;
	int32_t		start[] = {0, 0, 0, 1};
	int32_t		prereq[] = {0};
	tl_plan_problem pb;
	tl_plan		plan;
	const tl_plan_step *first;

	skills[2].goal = 1.0f;
	for (int32_t s = 0; s < 3; s++)
		add_items(items, &n_items, s, 10, 0.3f, 0.9f);
	pb = make_problem(3, skills, n_items, items, start, prereq);
	tl_plan_init(&plan);
	ASSERT_OK(tl_plan_make(&pb, &plan));
	first = &plan.steps[0];
	assert_int_equal(first->skill, 0);
	assert_int_equal(first->activity, TL_PLAN_PRACTICE);
	assert_int_equal(first->reason, TL_REASON_PREREQUISITE);
	assert_int_equal(first->about, 2);
	assert_float_equal(first->value, 0.4, 1e-6);
	/* the unrelated skill leads to no goal: it never comes before the prerequisite */
	for (int32_t k = 0; k < plan.n_steps; k++)
		if (plan.steps[k].skill == 1)
			assert_true(k > 0);
	/* the goal itself is locked */
	for (int32_t k = 0; k < plan.n_steps; k++)
		assert_false(plan.steps[k].skill == 2 && is_learning(&plan.steps[k]));
	check_invariants(&pb, &plan);

	/* once 0 is mastered the goal opens and is planned as a goal */
	skills[0] = skill_at(0.9f, 6);
	ASSERT_OK(tl_plan_make(&pb, &plan));
	first = first_step_on(&plan, 2);
	assert_non_null(first);
	assert_int_equal(first->activity, TL_PLAN_LEARN);
	assert_int_equal(first->reason, TL_REASON_GOAL);
	assert_int_equal(first->about, 2);
	check_invariants(&pb, &plan);

	/* 0 leads to goals 1 and 2: equal weights name the lower goal, else the heavier */
	{
		int32_t		two_start[] = {0, 0, 1, 2};
		int32_t		two_prereq[] = {0, 0};

		skills[0] = skill_at(0.4f, 2);
		skills[1] = skill_at(0.2f, 0);
		skills[1].goal = 1.0f;
		skills[2].goal = 1.0f;
		pb = make_problem(3, skills, n_items, items, two_start, two_prereq);
		ASSERT_OK(tl_plan_make(&pb, &plan));
		assert_int_equal(plan.steps[0].skill, 0);
		assert_int_equal(plan.steps[0].reason, TL_REASON_PREREQUISITE);
		assert_int_equal(plan.steps[0].about, 1);
		skills[2].goal = 2.0f;
		ASSERT_OK(tl_plan_make(&pb, &plan));
		assert_int_equal(plan.steps[0].skill, 0);
		assert_int_equal(plan.steps[0].about, 2);
		check_invariants(&pb, &plan);
	}

	/* goal 0 (weight 1) against 1, the way to goal 2: 0.9 * 1.2 > 1 > 0.9 * 1.05 */
	{
		int32_t		way_start[] = {0, 0, 0, 1};
		int32_t		way_prereq[] = {1};

		skills[0] = skill_at(0.5f, 2);
		skills[0].goal = 1.0f;
		skills[1] = skill_at(0.5f, 2);
		skills[2] = skill_at(0.2f, 0);
		skills[2].goal = 1.2f;
		pb = make_problem(3, skills, n_items, items, way_start, way_prereq);
		ASSERT_OK(tl_plan_make(&pb, &plan));
		assert_int_equal(plan.steps[0].skill, 1);
		assert_int_equal(plan.steps[1].skill, 0);
		assert_int_equal(plan.steps[1].reason, TL_REASON_GOAL);
		skills[2].goal = 1.05f;
		ASSERT_OK(tl_plan_make(&pb, &plan));
		assert_int_equal(plan.steps[0].skill, 0);
		assert_int_equal(plan.steps[1].skill, 1);
		assert_int_equal(plan.steps[1].about, 2);
	}
	tl_plan_free(&plan);
}

/* ---- 5. review -------------------------------------------------------------------- */

static void
test_review(void **state)
{
	tl_plan_skill skills[2] = {skill_at(0.95f, 10), skill_at(0.95f, 10)};
	tl_plan_item items[10];
	int32_t		n_items = 0;
	int32_t		start[] = {0, 0, 0};
	tl_plan_problem pb;
	tl_plan		plan;
	const tl_plan_step *st;

	skills[0].memory = (tl_memory) {.stability = 2.0f, .last_day = 70.0};
	skills[1].memory = (tl_memory) {.stability = 40.0f, .last_day = 99.0};
	add_items(items, &n_items, 0, 5, 0.5f, 0.95f);
	add_items(items, &n_items, 1, 5, 0.5f, 0.95f);
	pb = make_problem(2, skills, n_items, items, start, NULL);
	pb.opt.today = 100.0;
	tl_plan_init(&plan);
	ASSERT_OK(tl_plan_make(&pb, &plan));
	st = &plan.steps[0];
	assert_int_equal(st->day, 0);
	assert_int_equal(st->activity, TL_PLAN_REVIEW);
	assert_int_equal(st->skill, 0);
	assert_int_equal(st->reason, TL_REASON_REVIEW);
	assert_float_equal(st->value, tl_memory_recall(&skills[0].memory, 100.0), 1e-6);
	assert_true(st->n_items <= 2);
	for (int32_t k = 0; k < plan.n_steps; k++)
		assert_false(plan.steps[k].skill == 1 && plan.steps[k].activity == TL_PLAN_REVIEW);
	check_invariants(&pb, &plan);
	tl_plan_free(&plan);
}

/* ---- 6. assessment near the threshold ------------------------------------------- */

static void
test_assess_near(void **state)
{
	tl_plan_skill skills[1] = {skill_at(0.8f, 5)};
	tl_plan_item items[12];
	int32_t		n_items = 0;
	int32_t		start[] = {0, 0};
	tl_plan_problem pb;
	tl_plan		plan;
	const tl_plan_step *st;
	const tl_plan_step *assess = NULL;

	add_items(items, &n_items, 0, 12, 0.4f, 0.95f);
	pb = make_problem(1, skills, n_items, items, start, NULL);
	tl_plan_init(&plan);
	ASSERT_OK(tl_plan_make(&pb, &plan));
	st = &plan.steps[0];
	assert_int_equal(st->day, 0);
	assert_int_equal(st->activity, TL_PLAN_ASSESS);
	assert_int_equal(st->reason, TL_REASON_NEAR_MASTERY);
	assert_float_equal(st->value, 0.8, 1e-6);
	/* typical items: the ones closest to the threshold */
	for (int32_t j = 0; j < st->n_items; j++)
		assert_true(fabsf(items[plan.items[st->first_item + j]].p - 0.85f) < 0.15f);
	for (int32_t k = 0; k < plan.n_steps; k++)
		assert_false(plan.steps[k].skill == 0 && is_learning(&plan.steps[k]));
	check_invariants(&pb, &plan);

	/* further away, projected practice brings the skill near: assessed on a later day */
	skills[0] = skill_at(0.7f, 5);
	ASSERT_OK(tl_plan_make(&pb, &plan));
	assert_int_equal(plan.steps[0].activity, TL_PLAN_PRACTICE);
	for (int32_t k = 0; k < plan.n_steps; k++)
		if (plan.steps[k].activity == TL_PLAN_ASSESS)
		{
			assess = &plan.steps[k];
			break;
		}
	assert_non_null(assess);
	assert_true(assess->day > 0);
	assert_int_equal(assess->reason, TL_REASON_NEAR_MASTERY);
	assert_true(assess->value >= 0.78f);
	check_invariants(&pb, &plan);
	tl_plan_free(&plan);
}

/* ---- 7. everything mastered ------------------------------------------------------ */

static void
test_all_mastered(void **state)
{
	tl_plan_skill skills[5];
	tl_plan_item items[25];
	int32_t		n_items = 0;
	int32_t		start[] = {0, 0, 1, 2, 2, 3};
	int32_t		prereq[] = {0, 1, 2};
	tl_plan_problem pb;
	tl_plan		plan;
	int			confirmed[5] = {0};

	for (int32_t s = 0; s < 5; s++)
	{
		skills[s] = skill_at(0.9f + 0.01f * (float) s, 8);
		add_items(items, &n_items, s, 5, 0.6f, 0.98f);
	}
	skills[0].memory = (tl_memory) {.stability = 1.0f, .last_day = -20.0};
	skills[3].memory = (tl_memory) {.stability = 5.0f, .last_day = -1.0};
	pb = make_problem(5, skills, n_items, items, start, prereq);
	tl_plan_init(&plan);
	ASSERT_OK(tl_plan_make(&pb, &plan));
	assert_true(plan.n_steps >= 1);
	assert_int_equal(plan.steps[0].activity, TL_PLAN_REVIEW);
	assert_int_equal(plan.steps[0].skill, 0);
	for (int32_t k = 0; k < plan.n_steps; k++)
	{
		const tl_plan_step *st = &plan.steps[k];

		assert_true(st->activity == TL_PLAN_REVIEW || st->activity == TL_PLAN_ASSESS);
		if (st->activity == TL_PLAN_ASSESS)
		{
			assert_int_equal(st->reason, TL_REASON_CONFIRM);
			confirmed[st->skill]++;
		}
	}
	for (int32_t s = 0; s < 5; s++)
		assert_int_equal(confirmed[s], 1);
	check_invariants(&pb, &plan);
	tl_plan_free(&plan);
}

/* ---- 8. cold start ---------------------------------------------------------------- */

static void
test_cold_start(void **state)
{
	/* roots 0 and 4; 1 requires 0, 2 requires 1, 3 requires 0, 5 requires 4 */
	tl_plan_skill skills[6];
	tl_plan_item items[36];
	int32_t		n_items = 0;
	int32_t		start[] = {0, 0, 1, 2, 3, 3, 4};
	int32_t		prereq[] = {0, 1, 0, 4};
	tl_plan_problem pb;
	tl_plan		plan;
	int32_t		day0 = 0;

	for (int32_t s = 0; s < 6; s++)
	{
		skills[s] = skill_at(0.3f, 0);
		add_items(items, &n_items, s, 6, 0.2f, 0.9f);
	}
	pb = make_problem(6, skills, n_items, items, start, prereq);
	tl_plan_init(&plan);
	ASSERT_OK(tl_plan_make(&pb, &plan));
	for (int32_t k = 0; k < plan.n_steps; k++)
	{
		const tl_plan_step *st = &plan.steps[k];

		if (st->day == 0)
		{
			day0++;
			assert_int_equal(st->activity, TL_PLAN_LEARN);
			assert_true(st->skill == 0 || st->skill == 4);
			assert_int_equal(st->reason, TL_REASON_START);
			assert_int_equal(st->about, st->skill);
			assert_float_equal(st->value, 0.3, 1e-6);
			/* learning starts with the easiest items */
			for (int32_t j = 1; j < st->n_items; j++)
				assert_true(items[plan.items[st->first_item + j - 1]].p >= items[plan.items[st->first_item + j]].p);
		}
		else if (is_learning(st))
			assert_int_equal(st->activity, TL_PLAN_PRACTICE);
	}
	assert_int_equal(day0, 2);
	check_invariants(&pb, &plan);
	tl_plan_free(&plan);
}

/* ---- 9. budgets ------------------------------------------------------------------- */

static void
test_budgets(void **state)
{
	random_problem r;
	tl_rng		rng;
	tl_plan		plan;

	tl_rng_seed(&rng, 9);
	random_problem_make(&r, &rng, 40, 600);
	tl_plan_init(&plan);

	ASSERT_OK(tl_plan_make(&r.pb, &plan));
	assert_true(plan.n_steps > 0);
	check_invariants(&r.pb, &plan);

	/* minutes only; items take 1-5 minutes */
	r.pb.opt.budget_items = 0;
	r.pb.opt.budget_minutes = 25.0f;
	r.pb.opt.horizon_days = 5;
	ASSERT_OK(tl_plan_make(&r.pb, &plan));
	assert_true(plan.n_steps > 0);
	check_invariants(&r.pb, &plan);
	for (int32_t day = 0, k = 0; day < 5; day++)
	{
		double		minutes = 0.0;

		for (; k < plan.n_steps && plan.steps[k].day == day; k++)
			minutes += plan.steps[k].minutes;
		assert_true(minutes <= 25.0 + 1e-3);
	}
	assert_true(plan.steps[plan.n_steps - 1].day < 5);

	/* both, and a tiny item budget */
	r.pb.opt.budget_items = 3;
	r.pb.opt.items_per_step = 2;
	ASSERT_OK(tl_plan_make(&r.pb, &plan));
	check_invariants(&r.pb, &plan);
	tl_plan_free(&plan);
	random_problem_free(&r);
}

/* ---- 10. spacing ------------------------------------------------------------------- */

static void
test_spacing(void **state)
{
	tl_plan_skill skills[1] = {skill_at(0.5f, 3)};
	tl_plan_item items[6];
	int32_t		n_items = 0;
	int32_t		start[] = {0, 0};
	tl_plan_problem pb;
	tl_plan		plan;
	bool		seen_later = false;

	add_items(items, &n_items, 0, 6, 0.6f, 0.8f);
	pb = make_problem(1, skills, n_items, items, start, NULL);
	pb.opt.today = 50.0;
	pb.opt.learn_rate = 0.0f;	/* stays a practice skill all week */
	items[0].last_seen = 49.5;
	tl_plan_init(&plan);
	ASSERT_OK(tl_plan_make(&pb, &plan));
	for (int32_t k = 0; k < plan.n_steps; k++)
		for (int32_t j = 0; j < plan.steps[k].n_items; j++)
			if (plan.items[plan.steps[k].first_item + j] == 0)
			{
				assert_true(plan.steps[k].day >= 2);
				seen_later = true;
			}
	assert_true(seen_later);
	/* check_invariants checks every reappearance against the spacing */
	check_invariants(&pb, &plan);

	/* spacing 0: items may come back the next day, never twice in a day */
	pb.opt.item_spacing_days = 0.0f;
	ASSERT_OK(tl_plan_make(&pb, &plan));
	check_invariants(&pb, &plan);
	assert_int_equal(plan.steps[1].day, 1);
	tl_plan_free(&plan);
}

/* ---- 11. determinism and reuse ------------------------------------------------------ */

static void
assert_same_plan(const tl_plan *a, const tl_plan *b)
{
	assert_int_equal(a->n_steps, b->n_steps);
	assert_int_equal(a->n_items, b->n_items);
	for (int32_t k = 0; k < a->n_steps; k++)
	{
		const tl_plan_step *x = &a->steps[k];
		const tl_plan_step *y = &b->steps[k];

		assert_int_equal(x->day, y->day);
		assert_int_equal(x->activity, y->activity);
		assert_int_equal(x->skill, y->skill);
		assert_int_equal(x->first_item, y->first_item);
		assert_int_equal(x->n_items, y->n_items);
		assert_memory_equal(&x->expected_p, &y->expected_p, sizeof(float));
		assert_memory_equal(&x->minutes, &y->minutes, sizeof(float));
		assert_int_equal(x->reason, y->reason);
		assert_int_equal(x->about, y->about);
		assert_memory_equal(&x->value, &y->value, sizeof(float));
	}
	if (a->n_items > 0)
		assert_memory_equal(a->items, b->items, sizeof(int32_t) * (size_t) a->n_items);
}

static void
copy_plan(tl_plan *dst, const tl_plan *src)
{
	tl_plan_init(dst);
	dst->n_steps = src->n_steps;
	dst->n_items = src->n_items;
	dst->steps = malloc(sizeof(tl_plan_step) * (size_t) (src->n_steps + 1));
	dst->items = malloc(sizeof(int32_t) * (size_t) (src->n_items + 1));
	memcpy(dst->steps, src->steps, sizeof(tl_plan_step) * (size_t) src->n_steps);
	memcpy(dst->items, src->items, sizeof(int32_t) * (size_t) src->n_items);
}

static void
test_determinism_and_reuse(void **state)
{
	random_problem a,
				big,
				small;
	tl_rng		rng;
	tl_plan		plan,
				fresh,
				first;

	tl_rng_seed(&rng, 11);
	random_problem_make(&a, &rng, 30, 300);
	random_problem_make(&big, &rng, 120, 2000);
	random_problem_make(&small, &rng, 3, 5);
	tl_plan_init(&plan);
	ASSERT_OK(tl_plan_make(&a.pb, &plan));
	assert_true(plan.n_steps > 0);
	copy_plan(&first, &plan);

	/* a larger, then a smaller student in the same plan, then A again */
	ASSERT_OK(tl_plan_make(&big.pb, &plan));
	check_invariants(&big.pb, &plan);
	ASSERT_OK(tl_plan_make(&small.pb, &plan));
	check_invariants(&small.pb, &plan);
	ASSERT_OK(tl_plan_make(&a.pb, &plan));
	assert_same_plan(&first, &plan);

	/* and a fresh tl_plan agrees */
	tl_plan_init(&fresh);
	ASSERT_OK(tl_plan_make(&a.pb, &fresh));
	assert_same_plan(&first, &fresh);

	tl_plan_free(&fresh);
	tl_plan_free(&plan);
	free(first.steps);
	free(first.items);
	random_problem_free(&a);
	random_problem_free(&big);
	random_problem_free(&small);
}

/* ---- 12. errors ------------------------------------------------------------------ */

static void
test_errors(void **state)
{
	/* 0 requires 1, 1 requires 2, 2 requires 1: a cycle {1, 2}; 3 requires 0 */
	int32_t		cyc_start[] = {0, 1, 2, 3, 4};
	int32_t		cyc_prereq[] = {1, 2, 1, 0};
	int32_t		self_start[] = {0, 0, 1};
	int32_t		self_prereq[] = {1};
	int32_t		bad_prereq[] = {0, 1, 0, 4};
	int32_t		bad_start[] = {0, 2, 1, 2, 4};
	tl_plan_skill skills[4] = {skill_at(0.5f, 1), skill_at(0.5f, 1), skill_at(0.5f, 1), skill_at(0.5f, 1)};
	tl_plan_item items[8];
	int32_t		n_items = 0;
	int32_t		cycle = -1;
	tl_plan_problem good,
				bad;
	tl_plan		plan;

	ASSERT_FAILS(TL_ERR_ARG, tl_plan_check_prerequisites(4, cyc_start, cyc_prereq, &cycle));
	assert_true(cycle == 1 || cycle == 2);
	ASSERT_FAILS(TL_ERR_ARG, tl_plan_check_prerequisites(2, self_start, self_prereq, &cycle));
	assert_int_equal(cycle, 1);
	ASSERT_FAILS(TL_ERR_ARG, tl_plan_check_prerequisites(4, chain_start, bad_prereq, &cycle));
	assert_non_null(strstr(tl_last_error(), "prerequisite 4 of skill 3"));
	ASSERT_FAILS(TL_ERR_ARG, tl_plan_check_prerequisites(4, bad_start, chain_prereq, &cycle));
	ASSERT_FAILS(TL_ERR_ARG, tl_plan_check_prerequisites(-1, chain_start, chain_prereq, &cycle));
	ASSERT_FAILS(TL_ERR_ARG, tl_plan_check_prerequisites(4, NULL, chain_prereq, &cycle));
	ASSERT_FAILS(TL_ERR_ARG, tl_plan_check_prerequisites(4, chain_start, NULL, &cycle));
	ASSERT_OK(tl_plan_check_prerequisites(0, chain_start, NULL, NULL));

	for (int32_t s = 0; s < 4; s++)
		add_items(items, &n_items, s, 2, 0.5f, 0.7f);
	good = make_problem(4, skills, n_items, items, chain_start, chain_prereq);
	tl_plan_init(&plan);
	ASSERT_OK(tl_plan_make(&good, &plan));
	assert_true(plan.n_steps > 0);

#define EXPECT_BAD(setup, field) \
	do { \
		bad = good; \
		setup; \
		ASSERT_FAILS(TL_ERR_ARG, tl_plan_make(&bad, &plan)); \
		assert_int_equal(plan.n_steps, 0); \
		assert_int_equal(plan.n_items, 0); \
		if (!strstr(tl_last_error(), field)) \
			fail_msg("message \"%s\" does not name %s", tl_last_error(), field); \
	} while (0)
	EXPECT_BAD(bad.prereq_start = cyc_start; bad.prereq = cyc_prereq, "cycle");
	EXPECT_BAD(bad.prereq = bad_prereq, "prerequisite 4");
	EXPECT_BAD(bad.prereq_start = NULL, "prereq_start");
	EXPECT_BAD(bad.skills = NULL, "skills");
	EXPECT_BAD(bad.items = NULL, "items");
	EXPECT_BAD(bad.n_skills = -1, "n_skills");
	EXPECT_BAD(bad.n_items = -2, "n_items");
	EXPECT_BAD(bad.opt.horizon_days = 0, "horizon_days");
	EXPECT_BAD(bad.opt.budget_items = 0; bad.opt.budget_minutes = 0.0f, "budget");
	EXPECT_BAD(bad.opt.budget_items = -1, "budget_items");
	EXPECT_BAD(bad.opt.budget_minutes = NAN, "budget_minutes");
	EXPECT_BAD(bad.opt.band_lo = 0.9f, "band_lo");
	EXPECT_BAD(bad.opt.band_hi = 1.5f, "band_hi");
	EXPECT_BAD(bad.opt.items_per_step = 0, "items_per_step");
	EXPECT_BAD(bad.opt.mastery = 1.0f, "mastery");
	EXPECT_BAD(bad.opt.assess_margin = 0.9f, "assess_margin");
	EXPECT_BAD(bad.opt.retention = 0.0f, "retention");
	EXPECT_BAD(bad.opt.item_spacing_days = -1.0f, "item_spacing_days");
	EXPECT_BAD(bad.opt.learn_rate = NAN, "learn_rate");
	EXPECT_BAD(bad.opt.prerequisite_decay = 1.5f, "prerequisite_decay");
	EXPECT_BAD(bad.opt.today = INFINITY, "today");
#undef EXPECT_BAD

#define EXPECT_BAD_ITEM(field, value, name) \
	do { \
		tl_plan_item saved = items[5]; \
		items[5].field = (value); \
		ASSERT_FAILS(TL_ERR_ARG, tl_plan_make(&good, &plan)); \
		assert_non_null(strstr(tl_last_error(), "item 5")); \
		assert_non_null(strstr(tl_last_error(), name)); \
		items[5] = saved; \
	} while (0)
	EXPECT_BAD_ITEM(skill, 4, "skill");
	EXPECT_BAD_ITEM(skill, -1, "skill");
	EXPECT_BAD_ITEM(p, 1.5f, "p");
	EXPECT_BAD_ITEM(minutes, 0.0f, "minutes");
	EXPECT_BAD_ITEM(last_seen, INFINITY, "last_seen");
#undef EXPECT_BAD_ITEM

#define EXPECT_BAD_SKILL(setup, name) \
	do { \
		tl_plan_skill saved = skills[2]; \
		setup; \
		ASSERT_FAILS(TL_ERR_ARG, tl_plan_make(&good, &plan)); \
		assert_non_null(strstr(tl_last_error(), "skill 2")); \
		assert_non_null(strstr(tl_last_error(), name)); \
		skills[2] = saved; \
	} while (0)
	EXPECT_BAD_SKILL(skills[2].mastery = NAN, "mastery");
	EXPECT_BAD_SKILL(skills[2].attempts = -3, "attempts");
	EXPECT_BAD_SKILL(skills[2].goal = -1.0f, "goal");
	EXPECT_BAD_SKILL(skills[2].memory.stability = -1.0f, "stability");
#undef EXPECT_BAD_SKILL

	ASSERT_FAILS(TL_ERR_ARG, tl_plan_make(NULL, &plan));
	ASSERT_FAILS(TL_ERR_ARG, tl_plan_make(&good, NULL));
	/* the plan still works after all that */
	ASSERT_OK(tl_plan_make(&good, &plan));
	assert_true(plan.n_steps > 0);
	tl_plan_free(&plan);
}

/* ---- 13. a larger random problem ------------------------------------------------- */

static void
test_random_large(void **state)
{
	random_problem r;
	tl_rng		rng;
	tl_plan		plan;
	int32_t		cycle;
	int			kinds[4] = {0};

	tl_rng_seed(&rng, 13);
	tl_plan_init(&plan);
	for (int round = 0; round < 5; round++)
	{
		random_problem_make(&r, &rng, 200, 2000);
		r.pb.opt.horizon_days = 14;
		/* tight days are all reviews; roomy ones reach learning and confirmation */
		r.pb.opt.budget_minutes = round < 2 ? 40.0f : 1000.0f;
		r.pb.opt.budget_items = round < 2 ? 10 : 0;
		if (round == 4)
		{
			/* every skill a goal, no learning-gain projection */
			for (int32_t s = 0; s < 200; s++)
				r.skills[s].goal = 0.0f;
			r.pb.opt.learn_rate = 0.0f;
		}
		ASSERT_OK(tl_plan_check_prerequisites(200, r.start, r.prereq, &cycle));
		ASSERT_OK(tl_plan_make(&r.pb, &plan));
		assert_true(plan.n_steps > 0);
		check_invariants(&r.pb, &plan);
		for (int32_t k = 0; k < plan.n_steps; k++)
			kinds[plan.steps[k].activity]++;
		random_problem_free(&r);
	}
	print_message("  steps: learn %d practice %d review %d assess %d\n", kinds[0], kinds[1], kinds[2], kinds[3]);
	/* the random problems exercise every kind of step */
	for (int k = 0; k < 4; k++)
		assert_true(kinds[k] > 0);

	/* a 10,000-deep chain (s requires s - 1): no recursion, and closing it is a cycle */
	{
		enum
		{
			DEEP = 10000
		};
		int32_t    *start = malloc(sizeof(int32_t) * (DEEP + 1));
		int32_t    *prereq = malloc(sizeof(int32_t) * DEEP);
		tl_plan_skill *skills = calloc(DEEP, sizeof(tl_plan_skill));
		tl_plan_item *items = calloc(DEEP, sizeof(tl_plan_item));
		int32_t		n_items = 0;

		start[0] = 0;
		for (int32_t s = 0; s < DEEP; s++)
		{
			if (s > 0)
				prereq[start[s]] = s - 1;
			start[s + 1] = start[s] + (s > 0);
			skills[s] = skill_at(s < 5000 ? 0.9f : 0.3f, 1);
			add_items(items, &n_items, s, 1, 0.7f, 0.7f);
		}
		skills[DEEP - 1].goal = 1.0f;
		ASSERT_OK(tl_plan_check_prerequisites(DEEP, start, prereq, &cycle));
		r.pb = make_problem(DEEP, skills, n_items, items, start, prereq);
		/* 0.9^4999 would underflow: keep the whole way worth the goal */
		r.pb.opt.prerequisite_decay = 1.0f;
		ASSERT_OK(tl_plan_make(&r.pb, &plan));
		check_invariants(&r.pb, &plan);
		/* the one unlocked step on the way to the goal, 4999 skills below it */
		assert_int_equal(first_step_on(&plan, 5000)->reason, TL_REASON_PREREQUISITE);
		assert_int_equal(first_step_on(&plan, 5000)->about, DEEP - 1);
		assert_null(first_step_on(&plan, 5001));
		prereq[0] = DEEP - 1;	/* 1 requires the last skill: all of them form a cycle */
		ASSERT_FAILS(TL_ERR_ARG, tl_plan_check_prerequisites(DEEP, start, prereq, &cycle));
		assert_true(cycle >= 0 && cycle < DEEP);
		ASSERT_FAILS(TL_ERR_ARG, tl_plan_make(&r.pb, &plan));
		free(start);
		free(prereq);
		free(skills);
		free(items);
	}
	tl_plan_free(&plan);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_memory),
		cmocka_unit_test(test_prerequisites_lock),
		cmocka_unit_test(test_practice_band),
		cmocka_unit_test(test_goal_ranking),
		cmocka_unit_test(test_review),
		cmocka_unit_test(test_assess_near),
		cmocka_unit_test(test_all_mastered),
		cmocka_unit_test(test_cold_start),
		cmocka_unit_test(test_budgets),
		cmocka_unit_test(test_spacing),
		cmocka_unit_test(test_determinism_and_reuse),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_random_large),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
