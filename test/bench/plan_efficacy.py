#!/usr/bin/env python3
"""Learning-efficacy benchmark of tutor_llm's planner against simple policies.

A simulated school with a known truth: every student has a latent knowledge
level per skill, learns from practice and forgets over time.  The script

  1. generates 45 days of past answers under a conventional curriculum and
     trains a knowledge-tracing model on them with tutor.train_kt;
  2. lets four identical copies of every student practise for 30 more days,
     each copy under one policy with the same daily budget of items:
       a  tutor_llm's plan (tutor.personalize once a day for all of them, or
          tutor.generate_plan per student with --per-student-calls)
       b  random items
       c  round-robin over the skills
       d  weakest skill first (lowest predicted mastery, tutor.mastery_all);
     every answer is simulated and written to sim.responses, so the next
     day's predictions see it (the model is not retrained);
  3. reports true post-test mastery and learning gain per policy with 95%
     confidence intervals, the paired difference between the plan and the
     best baseline, the ratio of their gains against the target of 1.25,
     and the calibration of tutor.mastery_all against the simulator's truth.

It is a benchmark: it prints figures and does not fail when the target is
missed.  Run it through scripts/bench_plan.sh, which starts a throwaway
cluster and exports PGHOST/PGPORT/PGUSER/PGDATABASE.  Standard library only.

    plan_efficacy.py [--quick] [--students N] [--days D] [--budget B] [--seed S]
                     [--policies a,b,c,d] [--per-student-calls]

The simulator
=============

Parameters were fixed once from qualitative findings of the learning
science literature and are not tuned to favour any policy.  Time is
measured in days; all answers of one day share that day's time.

Domain
  * 12 skills (ids 1-12) in three prerequisite chains of four,
    1->2->3->4, 5->6->7->8, 9->10->11->12, plus two cross links
    (7 also needs 2, 11 also needs 6): school topics build on earlier
    topics, and some need two strands (learning hierarchies, Gagne).
    The depth of a skill is its place in its chain (0 to 3).
  * 10 items per skill (item id = 100 x skill + 1..10), difficulty
    b ~ U(-1.5, 1.5) on the logit scale (the usual spread of item
    difficulties in calibrated item banks), estimated minutes 2-5.

Answers
  * P(correct on item i of skill s) = sigmoid(theta[s] - b_i): a Rasch
    model of the student's current knowledge theta[s] (logits).
  * True mastery of a skill = sigmoid(theta[s]), P(correct) on an item of
    difficulty 0.

Initial knowledge (before the 45 days of history)
  * ability ~ N(0, 0.8) per student: general aptitude shifts all skills.
  * per-skill offset = -0.5 - 0.75 x depth, plus N(0, 0.5) noise per
    student and skill: a little prior exposure to first topics, little to
    none of topics that build on untaught ones.
  * floor[s] = the initial theta[s].  Knowledge a student brings in is
    treated as consolidated and is never forgotten below.

Learning (the only thing that raises theta; happens at a practised item)
  * delta = eta x readiness(s) x zpd(p) x (1 + bonus x correct), added to
    theta[s] after answering an item answered correctly with probability p.
  * eta = 0.35 logits: a few dozen well-targeted items take a skill from
    novice to mastery, in line with typical practice curves.
  * zpd(p) = 4 p (1 - p): most is learnt from items of moderate success
    chance; items far too hard or too easy teach little (zone of proximal
    development; desirable difficulties; the "85% rule" puts the optimum
    above 50% but with the same inverted-U shape).
  * readiness(s) = min over direct prerequisites r of sigmoid(theta[r])
    (1 for a root skill): a missing prerequisite blocks learning of what
    builds on it, a half-known one halves it (cognitive load of
    unsupported material).
  * bonus = 0.25: a successful retrieval strengthens learning a little more
    than a failed attempt with feedback (testing effect).

Forgetting (the only thing that lowers theta; happens between sessions)
  * A session is a day on which the skill was practised.  The part of
    theta[s] above floor[s] decays exponentially with the time since the
    last session: excess(t) = excess_at_last_session x 2^(-(t - t_last)/H),
    H the skill's memory half-life in days (Ebbinghaus; the exponential
    half-life form of half-life regression, Settles & Meeder 2016).
  * H = 3 days after the first session: much of a newly taught procedure
    is lost within a week without review.
  * After each later session H grows by the factor 1 + 2 (1 - R) x f, R =
    2^(-gap/H) the retention at the session's start and f the session's
    share of correct answers, at most 180 days.  A fully successful
    session after one half-life doubles H; practice on the next day grows
    it little; repeating within the same day adds nothing (the spacing
    effect, Cepeda et al. 2006; retrieval at lower retrievability
    strengthens memory more, as in FSRS); failed retrievals do not
    consolidate.

History (45 days before the benchmark)
  * 8-12 answers a day (uniform), at 15:00 plus 4-minute steps.
  * A conventional curriculum, level by level: 1,5,9, 2,6,10, 3,7,11,
    4,8,12.  Each student has a pace ~ U(0.7, 1.0), the share of the
    curriculum covered in 45 days; the day's topic is curriculum[
    floor(pace x 12 x day / 45)].  Each answer is on the day's topic with
    probability 0.7, on an earlier topic of the curriculum (review) with
    0.2, on any skill with 0.1; items are drawn at random within the skill,
    not twice on one day where possible.
  * The same learning and forgetting dynamics apply.

The benchmark (30 days by default)
  * Every student is copied once per policy (student id = policy index x
    1,000,000 + student number, a=1, b=2, c=3, d=4), with the same past,
    the same initial state and the same random stream of answers, so the
    comparison between policies is paired.  Policy choices use a separate
    random stream.
  * Each day each copy answers exactly --budget items (default 10) chosen
    by its policy, never the same item twice on one day:
      a  the item ids of the steps of the plan due on that day (as_of =
         06:00 of the day), in step order, up to the budget; when the plan
         has fewer, random items of the plan's skills fill the rest (how
         often is reported).
      b  --budget distinct items at random.
      c  skills in turn 1, 2, ..., 12, 1, ... (one item each, the turn
         carried over to the next day); the item is a random one of the
         skill not used in the last 2 days when there is one.
      d  skills by predicted mastery (tutor.mastery_all at the start of the
         day), lowest first, ties by lower skill id; at most half the budget
         (rounded up) per skill, so a day holds at least two skills; random
         items of the skill not used in the last 2 days first.
  * Pre-test at the start of the first benchmark day, post-test one night
    after the last day (after its forgetting).  Per student: the mean over
    the 12 skills of true mastery; gain = post - pre.
  * Calibration: at both tests, tutor.mastery_all's p_correct against the
    simulator's true P(correct) on a typical item of the skill (the mean
    over the skill's 10 items) for every (student, skill).
"""
import argparse
import collections
import json
import math
import os
import random
import sys
import time
from datetime import datetime, timedelta, timezone

from psql_session import Psql, library_id, lit

# ---- the simulated domain ------------------------------------------------------------------

N_SKILLS = 12
SKILLS = list(range(1, N_SKILLS + 1))
PREREQS = {1: [], 2: [1], 3: [2], 4: [3],
           5: [], 6: [5], 7: [6, 2], 8: [7],
           9: [], 10: [9], 11: [10, 6], 12: [11]}
DEPTH = {s: (s - 1) % 4 for s in SKILLS}
CURRICULUM = [1, 5, 9, 2, 6, 10, 3, 7, 11, 4, 8, 12]
ITEMS_PER_SKILL = 10
DIFFICULTY_RANGE = (-1.5, 1.5)
MINUTES_RANGE = (2, 5)

ABILITY_SD = 0.8
OFFSET_ROOT = -0.5
OFFSET_PER_DEPTH = -0.75
SKILL_NOISE_SD = 0.5

ETA = 0.35
CORRECT_BONUS = 0.25
HALF_LIFE_FIRST = 3.0
STABILITY_GAIN = 2.0
HALF_LIFE_MAX = 180.0

HISTORY_DAYS = 45
HISTORY_PER_DAY = (8, 12)
PACE_RANGE = (0.7, 1.0)
P_TOPIC, P_REVIEW = 0.7, 0.2          # the rest: any skill

RECENT_DAYS = 2                        # "not used recently" for policies c and d
START = datetime(2026, 1, 5, tzinfo=timezone.utc)
POLICIES = {"a": "tutor_llm plan", "b": "random items", "c": "round-robin skills", "d": "weakest skill first"}
POLICY_INDEX = {"a": 1, "b": 2, "c": 3, "d": 4}
MODEL = "sim_kt"


def sigmoid(x):
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


class Item:
    __slots__ = ("id", "skill", "b", "minutes")

    def __init__(self, item_id, skill, b, minutes):
        self.id, self.skill, self.b, self.minutes = item_id, skill, b, minutes


def make_items(rng):
    items = {}
    for s in SKILLS:
        for k in range(1, ITEMS_PER_SKILL + 1):
            iid = 100 * s + k
            items[iid] = Item(iid, s, rng.uniform(*DIFFICULTY_RANGE), rng.randint(*MINUTES_RANGE))
    return items


class Learner:
    """One student's true state: floor, excess above it at the last session,
    time of the last session, memory half-life, per skill."""

    def __init__(self, rng):
        ability = rng.gauss(0.0, ABILITY_SD)
        self.floor = {s: ability + OFFSET_ROOT + OFFSET_PER_DEPTH * DEPTH[s] + rng.gauss(0.0, SKILL_NOISE_SD)
                      for s in SKILLS}
        self.excess = {s: 0.0 for s in SKILLS}
        self.last = {s: None for s in SKILLS}
        self.half_life = {s: None for s in SKILLS}
        # the session in progress per skill: (day, retention at its start, answers, correct)
        self.session = {}

    def copy(self):
        c = Learner.__new__(Learner)
        c.floor = dict(self.floor)
        c.excess = dict(self.excess)
        c.last = dict(self.last)
        c.half_life = dict(self.half_life)
        c.session = {}
        return c

    def retention(self, s, t):
        if self.last[s] is None or t <= self.last[s]:
            return 1.0          # never practised, or in today's session
        return 2.0 ** (-(t - self.last[s]) / self.half_life[s])

    def theta(self, s, t):
        return self.floor[s] + self.excess[s] * self.retention(s, t)

    def mastery(self, s, t):
        return sigmoid(self.theta(s, t))

    def p_correct(self, item, t):
        return sigmoid(self.theta(item.skill, t) - item.b)

    def readiness(self, s, t):
        return min((sigmoid(self.theta(r, t)) for r in PREREQS[s]), default=1.0)

    def answer(self, item, t, rng):
        """Answer one item at day t: returns correctness; learning follows."""
        s = item.skill
        if s not in self.session:
            # a new session: forgetting up to now is fixed into the excess
            r = self.retention(s, t)
            self.excess[s] *= r
            self.session[s] = [r, 0, 0, self.last[s] is None]
            self.last[s] = t
        p = sigmoid(self.floor[s] + self.excess[s] - item.b)
        correct = rng.random() < p
        delta = ETA * self.readiness(s, t) * 4.0 * p * (1.0 - p) * (1.0 + CORRECT_BONUS * correct)
        self.excess[s] += delta
        sess = self.session[s]
        sess[1] += 1
        sess[2] += correct
        return correct

    def end_day(self):
        """Close the day's sessions: memory half-lives grow with spaced, successful practice."""
        for s, (r, n, k, first) in self.session.items():
            if first or self.half_life[s] is None:
                self.half_life[s] = HALF_LIFE_FIRST
            else:
                f = k / n if n else 0.0
                self.half_life[s] = min(HALF_LIFE_MAX, self.half_life[s] * (1.0 + STABILITY_GAIN * (1.0 - r) * f))
        self.session = {}


def stamp(day, minute_of_day):
    return START + timedelta(days=day, minutes=minute_of_day)


def ts_text(dt):
    return dt.strftime("%Y-%m-%d %H:%M:%S+00")


def answer_times(day, n, rng):
    """n increasing times on one day, from 15:00 in 4-minute steps with jitter."""
    return [stamp(day, 15 * 60 + 4 * k + rng.uniform(0, 3.5)) for k in range(n)]


def pick_item(rng, pool, used_today, last_used=None, day=None):
    """A random item of pool not used today, preferring ones not used in the last
    RECENT_DAYS days; None when every item of pool was used today."""
    fresh = [i for i in pool if i not in used_today]
    if not fresh:
        return None
    if last_used is not None:
        old = [i for i in fresh if last_used.get(i) is None or day - last_used[i] > RECENT_DAYS]
        if old:
            fresh = old
    return rng.choice(fresh)


def generate_history(n_students, items, seed):
    """Learners after 45 days and their answers: rows (student, item, skill, correct, time)."""
    by_skill = collections.defaultdict(list)
    for it in items.values():
        by_skill[it.skill].append(it.id)
    learners, rows = {}, {}
    for st in range(1, n_students + 1):
        rng = random.Random("%d-history-%d" % (seed, st))
        L = Learner(rng)
        pace = rng.uniform(*PACE_RANGE)
        answers = []
        for day in range(HISTORY_DAYS):
            topic_idx = min(len(CURRICULUM) - 1, int(pace * len(CURRICULUM) * day / HISTORY_DAYS))
            n = rng.randint(*HISTORY_PER_DAY)
            times = answer_times(day, n, rng)
            used = set()
            for k in range(n):
                u = rng.random()
                if u < P_TOPIC:
                    skill = CURRICULUM[topic_idx]
                elif u < P_TOPIC + P_REVIEW:
                    skill = CURRICULUM[rng.randint(0, topic_idx)]
                else:
                    skill = rng.choice(SKILLS)
                iid = pick_item(rng, by_skill[skill], used) or rng.choice(by_skill[skill])
                used.add(iid)
                c = L.answer(items[iid], float(day), rng)
                answers.append((iid, skill, c, times[k]))
            L.end_day()
        learners[st] = L
        rows[st] = answers
    return learners, rows


# ---- PostgreSQL through psql -----------------------------------------------------------------


def copy_rows(db, rows):
    """COPY answers (student, item, skill, correct, time) into sim.responses."""
    text = "".join("%d\t%d\t%d\t%s\t%s\n" % (sid, iid, sk, "t" if c else "f", ts_text(when))
                   for sid, iid, sk, c, when in rows)
    db.run(["COPY sim.responses FROM STDIN"], stdin_data=text)


def setup_schema(db, items, policies, n_students):
    db.run(["SET client_min_messages = warning",
            "DROP SCHEMA IF EXISTS sim CASCADE",
            "CREATE SCHEMA sim",
            "CREATE TABLE sim.items (item_id bigint PRIMARY KEY, skill_id bigint NOT NULL, "
            "difficulty float8 NOT NULL, minutes int NOT NULL)",
            "CREATE TABLE sim.prereqs (skill_id bigint NOT NULL, prerequisite_id bigint NOT NULL)",
            "CREATE TABLE sim.students (student_id bigint PRIMARY KEY, policy text NOT NULL, "
            "student int NOT NULL)",
            "CREATE TABLE sim.responses (student_id bigint NOT NULL, item_id bigint NOT NULL, "
            "skill_id bigint NOT NULL, correct boolean NOT NULL, answered_at timestamptz NOT NULL)"])
    db.run(["COPY sim.items FROM STDIN"],
           stdin_data="".join("%d\t%d\t%.6f\t%d\n" % (it.id, it.skill, it.b, it.minutes) for it in items.values()))
    db.run(["COPY sim.prereqs FROM STDIN"],
           stdin_data="".join("%d\t%d\n" % (s, r) for s in SKILLS for r in PREREQS[s]))
    db.run(["COPY sim.students FROM STDIN"],
           stdin_data="".join("%d\t%s\t%d\n" % (POLICY_INDEX[p] * 1000000 + st, p, st)
                              for p in policies for st in range(1, n_students + 1)))


def students_query(policy=None):
    if policy is None:
        return "SELECT student_id FROM sim.students"
    return "SELECT student_id FROM sim.students WHERE policy = %s" % lit(policy)


def mastery_all(db, policy=None):
    """{student id: {skill: predicted p_correct}} from tutor.mastery_all."""
    out = collections.defaultdict(dict)
    for sid, sk, p in db.rows("SELECT student_id, skill_id, p_correct FROM tutor.mastery_all(%s, %s)"
                              % (lit(MODEL), lit(students_query(policy)))):
        out[int(sid)][int(sk)] = float(p)
    return out


# ---- policy (a): the plan ---------------------------------------------------------------------

PlanStep = collections.namedtuple("PlanStep", "step activity skill items due expected_p")


def parse_plan_rows(rows):
    plans = collections.defaultdict(list)
    for sid, step, activity, skill, item_ids, due, ep in rows:
        plans[int(sid)].append(PlanStep(int(step), activity, int(skill) if skill else None,
                                        [int(x) for x in item_ids.split(",") if x != ""],
                                        due or None, float(ep) if ep else None))
    for steps in plans.values():
        steps.sort(key=lambda s: s.step)
    return plans


def plans_by_personalize(db, options, plan_date):
    """One tutor.personalize call for all policy-a students, then their steps for plan_date."""
    out, _ = db.run(["SET client_min_messages = warning",
                     "SELECT tutor.personalize(%s, %s::jsonb)" % (lit(students_query("a")), lit(json.dumps(options)))])
    try:
        summary = json.loads(out.strip().split("\n")[-1]) if out.strip() else None
    except ValueError:
        summary = out.strip()
    rows = db.rows(
        "WITH latest AS (SELECT DISTINCT ON (student_id) plan_id, student_id FROM tutor.plans "
        "WHERE plan_date = %s::date AND model_name = %s ORDER BY student_id, created_at DESC) "
        "SELECT l.student_id, s.step, s.activity, s.skill_id, array_to_string(s.item_ids, ','), "
        "to_char(s.due AT TIME ZONE 'UTC', 'YYYY-MM-DD'), s.expected_p_correct "
        "FROM latest l JOIN tutor.plan_steps s ON s.plan_id = l.plan_id ORDER BY l.student_id, s.step"
        % (lit(plan_date), lit(MODEL)))
    return parse_plan_rows(rows), summary


def plans_by_generate_plan(db, options, sids):
    """tutor.generate_plan for each policy-a student, one script for the day."""
    opts = lit(json.dumps(options))
    script = "".join(
        "SELECT %d, step, activity, skill_id, array_to_string(item_ids, ','), "
        "to_char(due AT TIME ZONE 'UTC', 'YYYY-MM-DD'), expected_p_correct "
        "FROM tutor.generate_plan(%d::bigint, %s::jsonb);\n" % (sid, sid, opts) for sid in sids)
    out, _ = db.run([], stdin_data=script, script=True)
    rows = [ln.split("\t") for ln in out.split("\n")] if out else []
    return parse_plan_rows(rows), None


class PlanStats:
    def __init__(self):
        self.student_days = 0
        self.filled = 0              # student-days whose day-0 plan had fewer items than the budget
        self.filled_items = 0
        self.empty = 0               # student-days without any plan step
        self.no_day0 = 0             # plans with steps but none due on the day
        self.activities = collections.Counter()
        self.activity_items = collections.Counter()     # items followed, by the activity of their step
        self.day0_items = 0
        self.anomalies = collections.Counter()
        self.examples = {}

    def anomaly(self, kind, example):
        self.anomalies[kind] += 1
        self.examples.setdefault(kind, example)


def follow_plan(steps, as_date, budget, items, by_skill, rng, stats, sid):
    stats.student_days += 1
    if not steps:
        stats.empty += 1
    has_due = any(s.due for s in steps)
    day0 = [s for s in steps if s.due == as_date] if has_due else list(steps)
    if steps and not day0:
        stats.no_day0 += 1
    chosen, seen = [], set()
    for s in day0:
        stats.activities[s.activity] += 1
        if s.expected_p is not None and not (0.0 <= s.expected_p <= 1.0):
            stats.anomaly("expected_p_correct outside [0, 1]", (sid, s))
        if not s.items:
            stats.anomaly("step without items", (sid, s))
        for iid in s.items:
            if iid not in items:
                stats.anomaly("unknown item id", (sid, s))
                continue
            if s.skill is not None and items[iid].skill != s.skill:
                stats.anomaly("item of another skill than the step", (sid, s))
            if iid in seen:
                stats.anomaly("item twice on one day", (sid, s))
                continue
            seen.add(iid)
            stats.day0_items += 1
            if len(chosen) < budget:
                chosen.append(iid)
                stats.activity_items[s.activity] += 1
    if len(chosen) < budget:
        stats.filled += 1
        stats.filled_items += budget - len(chosen)
        skills = {s.skill for s in day0 if s.skill in by_skill} or {s.skill for s in steps if s.skill in by_skill}
        pool = [i for sk in sorted(skills) for i in by_skill[sk]]
        while len(chosen) < budget:
            iid = pick_item(rng, pool, seen) or pick_item(rng, list(items), seen)
            seen.add(iid)
            chosen.append(iid)
    return chosen


# ---- policies (b)-(d) ------------------------------------------------------------------------


def choose_random(rng, budget, all_items):
    return rng.sample(all_items, budget)


def choose_round_robin(rng, budget, by_skill, state, last_used, day):
    chosen, used = [], set()
    while len(chosen) < budget:
        skill = SKILLS[state["turn"] % N_SKILLS]
        state["turn"] += 1
        iid = pick_item(rng, by_skill[skill], used, last_used, day)
        if iid is None:
            continue
        used.add(iid)
        chosen.append(iid)
    return chosen


def choose_weakest(rng, budget, by_skill, predicted, last_used, day):
    cap = (budget + 1) // 2
    order = sorted(SKILLS, key=lambda s: (predicted.get(s, 0.5), s))
    chosen, used = [], set()
    for skill in order:
        k = 0
        while k < cap and len(chosen) < budget:
            iid = pick_item(rng, by_skill[skill], used, last_used, day)
            if iid is None:
                break
            used.add(iid)
            chosen.append(iid)
            k += 1
        if len(chosen) >= budget:
            break
    return chosen


# ---- statistics ------------------------------------------------------------------------------


def mean_ci(xs):
    n = len(xs)
    m = sum(xs) / n
    if n < 2:
        return m, float("nan")
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1))
    return m, 1.96 * sd / math.sqrt(n)


def pearson(xs, ys):
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else float("nan")


def calibration(pairs, bins=10):
    """pairs of (predicted, true): ECE over equal-width bins, the table, Pearson r."""
    table = [[0, 0.0, 0.0] for _ in range(bins)]
    for p, y in pairs:
        b = min(bins - 1, max(0, int(p * bins)))
        table[b][0] += 1
        table[b][1] += p
        table[b][2] += y
    n = len(pairs)
    ece = sum(abs(c[1] - c[2]) for c in table if c[0]) / n
    rows = [(b, c[0], c[1] / c[0] if c[0] else None, c[2] / c[0] if c[0] else None) for b, c in enumerate(table)]
    r = pearson([p for p, _ in pairs], [y for _, y in pairs])
    return ece, rows, r


def fmt(x, d=3):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return "%.*f" % (d, x)


# ---- main ------------------------------------------------------------------------------------


def main(argv=None):
    ap = argparse.ArgumentParser(description="tutor_llm learning-efficacy benchmark (simulated students)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 60 students, 10 days, a training time budget")
    ap.add_argument("--students", type=int, help="students per policy (default 300; --quick 60)")
    ap.add_argument("--days", type=int, help="days of practice (default 30; --quick 10)")
    ap.add_argument("--budget", type=int, default=10, help="items per student and day (default 10)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--policies", default="a,b,c,d", help="comma-separated, of a,b,c,d (default all)")
    ap.add_argument("--per-student-calls", action="store_true",
                    help="policy a through tutor.generate_plan per student instead of tutor.personalize")
    ap.add_argument("--horizon-days", type=int, default=7, help="horizon_days of the plans (default 7)")
    ap.add_argument("--plan-options", type=json.loads, default={},
                    help="JSON merged into the planner's options")
    ap.add_argument("--train-options", type=json.loads, default=None,
                    help="train_kt options (default {}; --quick {\"time_budget\": 120})")
    ap.add_argument("--psql", default=os.environ.get("PSQL_BIN", "psql"))
    ap.add_argument("--json-out", help="write the figures here as JSON")
    args = ap.parse_args(argv)

    n_students = args.students or (60 if args.quick else 300)
    days = args.days or (10 if args.quick else 30)
    budget = args.budget
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    for p in policies:
        if p not in POLICIES:
            ap.error("unknown policy %r (have a, b, c, d)" % p)
    policies = sorted(set(policies))
    if budget < 1 or budget > len(SKILLS) * ITEMS_PER_SKILL:
        ap.error("--budget must be between 1 and %d" % (len(SKILLS) * ITEMS_PER_SKILL))
    train_options = args.train_options if args.train_options is not None else (
        {"time_budget": 120} if args.quick else {})

    timings = collections.OrderedDict()
    db = Psql(args.psql, timezone="UTC")
    db.run(["SET client_min_messages = warning", "CREATE EXTENSION IF NOT EXISTS tutor_llm"])
    version = db.value("SELECT tutor.version()")
    have_plan = db.value("SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                         "WHERE n.nspname = 'tutor' AND p.proname IN ('generate_plan', 'personalize')")
    lib = library_id()
    print("tutor_llm %s (library %s); %d students per policy, %d days, budget %d items/day, seed %d, policies %s%s; "
          "%d CPUs" % (version, lib or "?", n_students, days, budget, args.seed, ",".join(policies),
                       ", quick" if args.quick else "", os.cpu_count() or 0), flush=True)
    if "a" in policies and int(have_plan) < 2:
        print("error: tutor.generate_plan / tutor.personalize are not installed; run with --policies b,c,d",
              file=sys.stderr)
        return 2

    # ---- the school and its past ----
    t0 = time.time()
    rng = random.Random(args.seed)
    items = make_items(rng)
    by_skill = collections.defaultdict(list)
    for it in items.values():
        by_skill[it.skill].append(it.id)
    all_items = sorted(items)
    base, history = generate_history(n_students, items, args.seed)
    timings["simulate history"] = time.time() - t0

    t0 = time.time()
    setup_schema(db, items, policies, n_students)
    rows = []
    for p in policies:
        off = POLICY_INDEX[p] * 1000000
        for st in range(1, n_students + 1):
            rows.extend((off + st, iid, sk, c, when) for iid, sk, c, when in history[st])
    copy_rows(db, rows)
    db.run(["CREATE INDEX ON sim.responses (student_id, answered_at)", "ANALYZE sim.responses"])
    n_hist = len(rows)
    timings["load history"] = time.time() - t0
    print("history: %d answers (%d students x %d copies, %d days)" % (
        n_hist, n_students, len(policies), HISTORY_DAYS), flush=True)

    # ---- training ----
    t0 = time.time()
    print("training %s on sim.responses, options %s" % (MODEL, json.dumps(train_options)), flush=True)

    def notice(msg):
        print("  %s" % msg, flush=True)

    out, _ = db.run(["SELECT tutor.train_kt(%s, 'sim.responses', %s::jsonb)" % (lit(MODEL), lit(json.dumps(train_options)))],
                    on_notice=notice)
    report = json.loads(out.strip().split("\n")[-1])
    if not report.get("deployed", True):
        db.run(["SELECT tutor.deploy(%s, %d)" % (lit(MODEL), int(report["version"]))])
    timings["train_kt"] = time.time() - t0
    print("trained: version %s, best validation AUC %s, %s epochs, %.0f s" % (
        report.get("version"), fmt(report.get("best_valid_auc")), report.get("epochs"), timings["train_kt"]), flush=True)

    # ---- the benchmark days ----
    learners = {p: {st: base[st].copy() for st in range(1, n_students + 1)} for p in policies}
    answer_rng = {p: {st: random.Random("%d-answers-%d" % (args.seed, st)) for st in range(1, n_students + 1)}
                  for p in policies}
    policy_rng = {p: {st: random.Random("%d-policy-%s-%d" % (args.seed, p, st)) for st in range(1, n_students + 1)}
                  for p in policies}
    time_rng = {st: random.Random("%d-times-%d" % (args.seed, st)) for st in range(1, n_students + 1)}
    last_used = {p: {st: {} for st in range(1, n_students + 1)} for p in policies}
    for p in policies:
        for st in range(1, n_students + 1):
            for iid, _, _, when in history[st]:
                last_used[p][st][iid] = (when - START).days
    rr_state = {st: {"turn": 0} for st in range(1, n_students + 1)}
    t_pre = float(HISTORY_DAYS)
    t_post = float(HISTORY_DAYS + days)
    pre = {p: {st: [learners[p][st].mastery(s, t_pre) for s in SKILLS] for st in learners[p]} for p in policies}

    def truth(L, t):
        return {s: sum(L.p_correct(items[i], t) for i in by_skill[s]) / len(by_skill[s]) for s in SKILLS}

    def calib_pairs(pred):
        pairs, missing = [], 0
        for p in policies:
            off = POLICY_INDEX[p] * 1000000
            for st in range(1, n_students + 1):
                tr = truth(learners[p][st], t_now)
                for s in SKILLS:
                    if s in pred.get(off + st, {}):
                        pairs.append((pred[off + st][s], tr[s]))
                    else:
                        missing += 1
        return pairs, missing

    t0 = time.time()
    t_now = t_pre
    pred_pre = mastery_all(db)
    calib_pre = calib_pairs(pred_pre)
    timings["calibration (pre)"] = time.time() - t0

    plan_stats = PlanStats()
    plan_summaries = []
    correct_counts = {p: [0, 0] for p in policies}
    skills_per_day = {p: 0 for p in policies}
    phase = collections.Counter()
    plan_options = {"model": MODEL, "items": "SELECT item_id, skill_id, minutes FROM sim.items",
                    "prerequisites": "SELECT skill_id, prerequisite_id FROM sim.prereqs",
                    "budget_items": budget, "horizon_days": args.horizon_days}
    plan_options.update(args.plan_options)
    print("planner options: %s" % json.dumps(dict(plan_options, as_of="<06:00 of each day>")), flush=True)
    for day in range(days):
        t_day = float(HISTORY_DAYS + day)
        t_now = t_day
        as_of = stamp(HISTORY_DAYS + day, 6 * 60)
        as_date = as_of.strftime("%Y-%m-%d")
        chosen = {p: {} for p in policies}
        if "a" in policies:
            t0 = time.time()
            opts = dict(plan_options, as_of=ts_text(as_of))
            if args.per_student_calls:
                plans, summary = plans_by_generate_plan(db, opts, [1000000 + st for st in range(1, n_students + 1)])
            else:
                plans, summary = plans_by_personalize(db, opts, as_date)
            if day == 0 and summary is not None:
                plan_summaries.append(summary)
            for st in range(1, n_students + 1):
                chosen["a"][st] = follow_plan(plans.get(1000000 + st, []), as_date, budget, items, by_skill,
                                              policy_rng["a"][st], plan_stats, 1000000 + st)
            phase["plans (a)"] += time.time() - t0
        if "b" in policies:
            for st in range(1, n_students + 1):
                chosen["b"][st] = choose_random(policy_rng["b"][st], budget, all_items)
        if "c" in policies:
            for st in range(1, n_students + 1):
                chosen["c"][st] = choose_round_robin(policy_rng["c"][st], budget, by_skill, rr_state[st],
                                                     last_used["c"][st], HISTORY_DAYS + day)
        if "d" in policies:
            t0 = time.time()
            pred = mastery_all(db, "d")
            for st in range(1, n_students + 1):
                chosen["d"][st] = choose_weakest(policy_rng["d"][st], budget, by_skill, pred.get(4000000 + st, {}),
                                                 last_used["d"][st], HISTORY_DAYS + day)
            phase["mastery_all (d)"] += time.time() - t0

        t0 = time.time()
        new_rows = []
        for st in range(1, n_students + 1):
            times = answer_times(HISTORY_DAYS + day, budget, time_rng[st])
            for p in policies:
                sid = POLICY_INDEX[p] * 1000000 + st
                L = learners[p][st]
                picks = chosen[p][st]
                assert len(picks) == budget and len(set(picks)) == budget, (p, st, picks)
                skills_per_day[p] += len({items[i].skill for i in picks})
                for k, iid in enumerate(picks):
                    c = L.answer(items[iid], t_day, answer_rng[p][st])
                    correct_counts[p][0] += c
                    correct_counts[p][1] += 1
                    last_used[p][st][iid] = HISTORY_DAYS + day
                    new_rows.append((sid, iid, items[iid].skill, c, times[k]))
                L.end_day()
        phase["simulate"] += time.time() - t0
        t0 = time.time()
        copy_rows(db, new_rows)
        phase["insert answers"] += time.time() - t0
        if day == 0 or (day + 1) % 5 == 0 or day == days - 1:
            now = {p: sum(learners[p][st].mastery(s, t_day + 1) for st in learners[p] for s in SKILLS)
                   / (n_students * N_SKILLS) for p in policies}
            print("day %2d/%d: true mean mastery %s" % (
                day + 1, days, ", ".join("%s %.3f" % (p, now[p]) for p in policies)), flush=True)
    timings.update(("days: " + k, v) for k, v in phase.items())

    # ---- post-test and calibration ----
    t0 = time.time()
    t_now = t_post
    post = {p: {st: [learners[p][st].mastery(s, t_post) for s in SKILLS] for st in learners[p]} for p in policies}
    pred_post = mastery_all(db)
    calib_post = calib_pairs(pred_post)
    timings["calibration (post)"] = time.time() - t0

    # ---- the report ----
    sts = list(range(1, n_students + 1))
    per = {}
    print("\nTrue mastery (P(correct) on an item of difficulty 0, mean over %d skills; 95%% CI over %d students)"
          % (N_SKILLS, n_students))
    head = ["policy", "pre", "post", "gain", "mastered >= 0.8 (post)", "practice accuracy", "skills/day"]
    table = []
    for p in policies:
        pre_s = [sum(pre[p][st]) / N_SKILLS for st in sts]
        post_s = [sum(post[p][st]) / N_SKILLS for st in sts]
        gain_s = [b - a for a, b in zip(pre_s, post_s)]
        mastered = sum(1 for st in sts for m in post[p][st] if m >= 0.8) / (n_students * N_SKILLS)
        per[p] = {"pre": mean_ci(pre_s), "post": mean_ci(post_s), "gain": mean_ci(gain_s), "gains": gain_s,
                  "mastered_share": mastered, "practice_accuracy": correct_counts[p][0] / max(1, correct_counts[p][1]),
                  "skills_per_day": skills_per_day[p] / (n_students * days)}
        table.append(["%s %s" % (p, POLICIES[p]), fmt(per[p]["pre"][0]),
                      "%s ± %s" % (fmt(per[p]["post"][0]), fmt(per[p]["post"][1])),
                      "%s ± %s" % (fmt(per[p]["gain"][0]), fmt(per[p]["gain"][1])),
                      fmt(mastered), fmt(per[p]["practice_accuracy"]), fmt(per[p]["skills_per_day"], 1)])
    widths = [max(len(str(r[i])) for r in table + [head]) for i in range(len(head))]
    print(" | ".join(h.ljust(w) for h, w in zip(head, widths)))
    print("-+-".join("-" * w for w in widths))
    for r in table:
        print(" | ".join(str(c).ljust(w) for c, w in zip(r, widths)))

    result = {"tutor_llm": version, "library": lib, "students": n_students, "days": days, "budget": budget, "seed": args.seed,
              "policies": policies, "quick": args.quick, "train_options": train_options, "train_report": report,
              "plan_options": plan_options, "timings_s": timings,
              "per_policy": {p: {k: v for k, v in per[p].items() if k != "gains"} for p in policies}}
    baselines = [p for p in policies if p != "a"]
    if "a" in policies and baselines:
        best = max(baselines, key=lambda p: per[p]["gain"][0])
        ga, gb = per["a"]["gain"][0], per[best]["gain"][0]
        diff = mean_ci([x - y for x, y in zip(per["a"]["gains"], per[best]["gains"])])
        ratio = ga / gb if gb > 0 else float("nan")
        # percentile bootstrap over students (paired) for the ratio
        brng = random.Random("%d-bootstrap" % args.seed)
        ratios = []
        for _ in range(2000):
            idx = [brng.randrange(n_students) for _ in range(n_students)]
            sa = sum(per["a"]["gains"][i] for i in idx)
            sb = sum(per[best]["gains"][i] for i in idx)
            if sb > 0:
                ratios.append(sa / sb)
        ratios.sort()
        rci = (ratios[int(0.025 * len(ratios))], ratios[int(0.975 * len(ratios)) - 1]) if len(ratios) > 100 else (None, None)
        met = gb > 0 and ratio >= 1.25
        print("\nbest baseline by gain: %s (%s)" % (best, POLICIES[best]))
        print("paired difference of gain, a - %s: %s ± %s (95%% CI)" % (best, fmt(diff[0]), fmt(diff[1])))
        print("gain ratio a / %s: %s (bootstrap 95%% CI %s - %s)" % (best, fmt(ratio, 2), fmt(rci[0], 2), fmt(rci[1], 2)))
        print("target (>= 1.25): %s" % ("met" if met else "not met"))
        result.update({"best_baseline": best, "paired_difference": diff, "gain_ratio": ratio,
                       "gain_ratio_ci": rci, "target_met": met})

    if "a" in policies:
        s = plan_stats
        print("\nplans (policy a): %d student-days, %.1f items due on the day per plan; fewer than %d items "
              "(filled with random items of the plan's skills): %d student-days (%.1f%%), %d items in all; "
              "no step at all: %d; steps but none due on the day: %d" % (
                  s.student_days, s.day0_items / max(1, s.student_days), budget, s.filled,
                  100.0 * s.filled / max(1, s.student_days), s.filled_items, s.empty, s.no_day0))
        print("  day-0 steps by activity: %s" % ", ".join("%s %d" % kv for kv in sorted(s.activities.items())))
        n_followed = sum(s.activity_items.values())
        print("  items practised by the activity of their step: %s" % ", ".join(
            "%s %d (%.0f%%)" % (k, v, 100.0 * v / max(1, n_followed)) for k, v in sorted(s.activity_items.items())))
        if plan_summaries:
            print("  personalize on day 1 returned: %s" % json.dumps(plan_summaries[0])[:600])
        for kind, n in s.anomalies.items():
            print("  PLAN ANOMALY: %s: %d times, e.g. student %s, step %s" % (kind, n, s.examples[kind][0],
                                                                            s.examples[kind][1]))
        result["plans"] = {"student_days": s.student_days, "filled": s.filled, "filled_items": s.filled_items,
                           "empty": s.empty, "no_day0": s.no_day0, "day0_items": s.day0_items,
                           "activities": dict(s.activities), "activity_items": dict(s.activity_items),
                           "anomalies": dict(s.anomalies)}

    for label, (pairs, missing) in (("start of day 1", calib_pre), ("day %d (post-test)" % days, calib_post)):
        print("\nCalibration of tutor.mastery_all at the %s: predicted p_correct vs the true P(correct) on a "
              "typical item of the skill, %d (student, skill) pairs%s" % (
                  label, len(pairs), ", %d missing" % missing if missing else ""))
        if not pairs:
            continue
        ece, rel, r = calibration(pairs)
        print("  ECE (10 bins) %s, Pearson r %s, mean predicted %s, mean true %s" % (
            fmt(ece), fmt(r), fmt(sum(p for p, _ in pairs) / len(pairs)), fmt(sum(y for _, y in pairs) / len(pairs))))
        print("  bin        n     mean predicted  mean true")
        for b, n, mp, mt in rel:
            print("  %.1f-%.1f %6d     %s           %s" % (b / 10, (b + 1) / 10, n, fmt(mp), fmt(mt)))
        result.setdefault("calibration", {})[label] = {"ece": ece, "pearson": r, "n": len(pairs),
                                                        "missing": missing, "table": rel}

    if library_id() != lib:
        print("\nWARNING: tutor_llm.so changed during the run (%s -> %s): the figures mix two builds"
              % (lib, library_id()))
    print("\ntimings (s): %s" % ", ".join("%s %.1f" % kv for kv in timings.items()))
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(result, f, indent=2, default=str)
        print("results written to %s" % args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
