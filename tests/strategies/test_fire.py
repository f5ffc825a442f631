"""FIRE PBT as pure decisions: driven with plain data and seeded generators, no processes."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from firepbt import LogUniform, NoExploit, Space
from firepbt.decisions import (
    Assign,
    Continue,
    Decision,
    Exploit,
    Finish,
    Handover,
    Release,
    Start,
    Weights,
)
from firepbt.errors import FireSettingsWarning, PopulationConfigError
from firepbt.fire.evaluation import CurveCache, Ending
from firepbt.fire.settings import points_for_success
from firepbt.strategies import FirePBT

SPACE = Space({"lr": LogUniform(1e-3, 1.0)})
INITIAL = [{"lr": 0.1}, {"lr": 0.2}, {"lr": 0.3}, {"lr": 0.4}]


def make(**kw) -> FirePBT:
    options = dict(
        population=4,
        total_steps=100,
        ready_every=10,
        rng=np.random.default_rng(0),
        subpopulations=2,
        eval_every=1,  # Sim reports a score at every step
        exploit=NoExploit(),
        initial_hyperparameters=INITIAL,
        # The scenarios below climb a few steps and level off: built for the paper's test of
        # levels. The default test of gains is exercised where a test names it.
        success_test="levels",
    )
    options.update(kw)
    return FirePBT(SPACE, **options)


def track(running: dict[int, tuple[int, int]], decisions: list[Decision]) -> None:
    """Record the segment (from step, until step) each decision starts; drop stopped workers."""
    for d in decisions:
        if isinstance(d, Start):
            running[d.member] = (0, d.until)
        elif isinstance(d, Continue):
            running[d.member] = (d.step, d.until)
        elif isinstance(d, (Exploit, Assign, Handover)):
            running[d.member] = (d.source.step, d.until)
        elif isinstance(d, (Finish, Release)):
            running.pop(d.member, None)


class Sim:
    """Plays the runner in sync mode: runs every segment the decisions ask for, reporting a
    score per step from ``score(worker, step)``."""

    def __init__(self, fire: FirePBT, score: Callable[[int, int], float]) -> None:
        self.fire, self.score = fire, score
        self.running: dict[int, tuple[int, int]] = {}
        self.log: list[list[Decision]] = []
        self.take(fire.start())

    def take(self, decisions: list[Decision]) -> None:
        self.log.append(decisions)
        track(self.running, decisions)

    def round(self) -> list[Decision]:
        jobs, self.running = self.running, {}
        out: list[Decision] = []
        for w, (start, until) in sorted(jobs.items()):
            for s in range(start + 1, until + 1):
                self.fire.report(w, s, self.score(w, s))
        for w, (_, until) in sorted(jobs.items()):
            out += self.fire.ready(w, until)
        self.take(out)
        return out


def of(kind: type, decisions: list[Decision]) -> list:
    return [d for d in decisions if isinstance(d, kind)]


def test_subpopulations_and_default_evaluator_count() -> None:
    fire = make(population=16, subpopulations=4, initial_hyperparameters=None)
    starts = fire.start()
    assert [d.subpopulation for d in starts] == [0] * 4 + [1] * 4 + [2] * 4 + [3] * 4
    assert fire.evaluator_ids == list(range(16, 25))  # 3/4 of the 12 parent members


def test_evaluator_is_assigned_least_recently_evaluated_parent_and_best_child() -> None:
    scores = {0: 0.5, 1: 0.6, 2: 0.3, 3: 0.2}
    sim = Sim(make(), lambda w, s: scores.get(w, 0.0))
    decisions = sim.round()
    assert of(Assign, sim.log[0]) == []  # nothing to evaluate before parents have weights
    (assign,) = of(Assign, decisions)
    assert assign.member == 4 and assign.parent == 2 and assign.target == 1
    assert assign.source == Weights(2, 10, {"lr": 0.3})
    assert assign.hyperparameters == {"lr": 0.2}  # the target's hyperparameters
    assert assign.until == 20
    assert {d.member for d in of(Continue, decisions)} == {0, 1, 2, 3}


def rising_evaluator(w: int, s: int) -> float:
    """P1 is flat at 0.6; the evaluator starts from its parent's 0.3 and climbs past 0.9."""
    if w == 4:
        return min(0.3 + 0.16 * (s - 10), 0.95)
    return {0: 0.5, 1: 0.6, 2: 0.3, 3: 0.2}[w]


def test_evaluator_success_hands_its_weights_to_the_target() -> None:
    sim = Sim(make(), rising_evaluator)
    sim.round()  # round 1: evaluator 4 assigned to parent 2, target 1
    decisions = sim.round()  # round 2: it trains from step 10 to 20 and beats member 1
    (handover,) = of(Handover, decisions)
    assert handover.member == 1 and handover.evaluator == 4
    assert handover.source == Weights(4, 20, {"lr": 0.2})
    assert handover.hyperparameters == {"lr": 0.2}  # the target keeps its hyperparameters
    assert handover.until == 30 and "success" in handover.reason
    releases = of(Release, decisions)
    assert [r.member for r in releases] == [4]
    # the handover comes before the release: the target's copy keeps the checkpoint alive
    assert decisions.index(handover) < decisions.index(releases[0])
    # the freed evaluator is reassigned at once, to the other parent (least recently evaluated)
    (assign,) = of(Assign, decisions)
    assert assign.member == 4 and assign.parent == 3
    assert 1 not in {d.member for d in of(Continue, decisions)}


def test_evaluator_without_progress_is_stopped_after_max_eval_steps() -> None:
    def flat_below(w: int, s: int) -> float:
        return 0.1 if w == 4 else {0: 0.5, 1: 0.6, 2: 0.3, 3: 0.2}[w]

    sim = Sim(make(max_eval_steps=20), flat_below)
    sim.round()
    stopped_at = None
    for r in range(2, 6):
        decisions = sim.round()
        releases = [d for d in of(Release, decisions) if d.member == 4]
        if releases:
            stopped_at = r
            assert "no overlap" in releases[0].reason
            break
        assert [d.member for d in of(Continue, decisions) if d.member == 4] == [4]
    # assigned after round 1: trained 10, 20 (= max, keeps going), then 30 > 20 steps: stop
    assert stopped_at == 4


def test_evaluator_losing_the_binomial_test_is_stopped() -> None:
    def worse(w: int, s: int) -> float:
        if w == 4:  # starts where the target was at step 5, improves ten times slower
            return 0.605 + 0.0001 * (s - 10)
        return {0: 0.5, 1: 0.6 + 0.001 * s, 2: 0.605, 3: 0.2}[w]

    sim = Sim(make(max_eval_steps=10), worse)
    sim.round()
    decisions = sim.round()
    (release,) = [d for d in of(Release, decisions) if d.member == 4]
    assert "binomial p" in release.reason
    assert of(Handover, decisions) == []


def test_parent_losing_an_evolution_event_stops_its_evaluator() -> None:
    from firepbt import Truncation

    def score(w: int, s: int) -> float:
        if w == 5:  # evaluator of member 3: flat
            return 0.2
        if w == 4:  # evaluator of member 2: improving fast
            return 0.3 + 0.01 * (s - 10)
        return {0: 0.5, 1: 0.6, 2: 0.3, 3: 0.2}[w]

    sim = Sim(make(evaluators=2, exploit=Truncation(0.5)), score)
    first = sim.round()
    assigns = {d.member: d.parent for d in of(Assign, first)}
    assert assigns == {4: 2, 5: 3}
    # P1 already evolves on Q (member 0 is in the bottom half)
    assert [d.member for d in of(Exploit, first)] == [0]
    decisions = sim.round()
    exploits = {d.member: d for d in of(Exploit, decisions)}
    assert 3 in exploits and exploits[3].donor == 2  # parent 3's evaluator improved slower
    released = {d.member: d.reason for d in of(Release, decisions)}
    assert "lost an evolution event" in released[5]


def test_a_parent_that_keeps_its_weights_and_only_explores_keeps_its_evaluator() -> None:
    from firepbt import KeepOwn

    def score(w: int, s: int) -> float:  # evaluators 4 and 5 climb slowly: no verdict yet
        return 0.3 + 0.001 * s if w >= 4 else {0: 0.5, 1: 0.6, 2: 0.3, 3: 0.2}[w]

    sim = Sim(make(evaluators=2, exploit=KeepOwn(), max_eval_steps=50), score)
    assigns = {d.member: d.parent for d in of(Assign, sim.round())}
    assert assigns == {4: 2, 5: 3}
    decisions = sim.round()
    explored = {d.member for d in of(Exploit, decisions) if d.donor == d.member}
    assert {2, 3} <= explored  # both parents explored in place...
    assert not [d for d in of(Release, decisions) if "parent" in d.reason]  # ...evaluators stay


def test_members_without_an_evaluator_are_exempt_from_evolution() -> None:
    from firepbt import Truncation

    fire = make(exploit=Truncation(0.5))
    fire.start()
    for m, q in {0: 0.5, 1: 0.6, 2: 0.9, 3: 0.1}.items():
        fire.report(m, 10, q)
    decisions = []
    for m in range(4):
        decisions += fire.ready(m, 10)
    assert fire.fitness(1) == {}
    assert {d.member for d in of(Exploit, decisions)} == {0}  # only P1 evolves


def test_parents_evolve_greedily_during_their_warmup_and_are_evaluated_only_after_it() -> None:
    from firepbt import Truncation

    fire = make(exploit=Truncation(0.5), warmup=20)
    fire.start()
    scores = {0: 0.5, 1: 0.6, 2: 0.9, 3: 0.1}
    decisions = []
    for m, q in scores.items():
        fire.report(m, 10, q)
    for m in range(4):
        decisions += fire.ready(m, 10)
    assert fire.warming_up(1)
    exploits = {d.member: d.donor for d in of(Exploit, decisions)}
    assert exploits == {0: 1, 3: 2}  # ranked on Q: P2's weaker member copies its stronger one
    assert of(Assign, decisions) == []  # nobody is evaluated in the warm-up
    decisions = []
    for m in range(4):
        fire.report(m, 20, scores[m])
    for m in range(4):
        decisions += fire.ready(m, 20)
    assert not fire.warming_up(1) and fire.fitness(1) == {}  # no curve yet: exempt again
    assert {d.member for d in of(Exploit, decisions)} == {0}
    # the one evaluator takes the parent that has trained longest since it last changed weights
    assert [d.parent for d in of(Assign, decisions)] == [2]


def test_async_a_parent_evolves_greedily_until_its_own_step_passes_the_warmup() -> None:
    from firepbt import Truncation

    fire = make(exploit=Truncation(0.5), warmup=20, synchrony="async")
    fire.start()
    for step in (10, 20):  # parent 2 runs ahead, past the warm-up
        fire.report(2, step, 0.9)
        fire.ready(2, step)
    fire.report(3, 10, 0.1)  # parent 3 is still inside it, and weaker
    exploits = of(Exploit, fire.ready(3, 10))
    assert [(d.member, d.donor) for d in exploits] == [(3, 2)]


def test_fire_defaults_are_the_fire_papers_explore_one_in_eight_truncation_and_a_warmup() -> None:
    from firepbt import Perturb, Truncation

    fire = FirePBT(
        SPACE, population=16, total_steps=3000, ready_every=50, rng=np.random.default_rng(0)
    )
    assert fire.explore == Perturb((0.5, 0.8, 1.25, 2.0)) and fire.exploit == Truncation(0.125)
    assert fire.warmup == 150  # 3 ready intervals
    short = FirePBT(
        SPACE, population=4, total_steps=100, ready_every=50, rng=np.random.default_rng(0)
    )
    assert short.warmup == 10  # at most a tenth of the budget, so that evaluators can start


def test_last_round_finishes_members_and_releases_evaluators() -> None:
    sim = Sim(make(total_steps=30), rising_evaluator)
    for _ in range(2):
        sim.round()
    decisions = sim.round()
    assert sorted(d.member for d in of(Finish, decisions)) == [0, 1, 2, 3]
    assert all(isinstance(d, (Finish, Release)) for d in decisions)
    assert sim.running == {}
    assert sim.fire.done()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"subpopulations": 1}, "subpopulations"),
        ({"population": 5}, "population"),
        ({"evaluators": 0}, "evaluators"),
        ({"p_stat": 1.5}, "p_stat"),
        ({"min_steps_before_eval": [0, 1, 2]}, "min_steps_before_eval"),
        ({"synchrony": "eventually"}, "synchrony"),
        ({"warmup": -1}, "warmup"),
        ({"warmup": True}, "warmup"),
        ({"warmup": 1.5}, "warmup"),
    ],
)
def test_bad_settings_name_the_field(kwargs, match) -> None:
    if "population" in kwargs:
        kwargs["initial_hyperparameters"] = None
    with pytest.raises(PopulationConfigError, match=match):
        make(**kwargs)


@pytest.mark.parametrize("keep", [False, True])
def test_keep_curves_keeps_a_stopped_evaluators_curve_as_fitness(keep: bool) -> None:
    def score(w: int, s: int) -> float:
        if w == 4:  # evaluator of member 2: flat, far below the target: stopped, no overlap
            return 0.1
        if w == 5:  # evaluator of member 3: rising
            return 0.2 + 0.01 * (s - 10)
        return {0: 0.5, 1: 0.6, 2: 0.1, 3: 0.2}[w]

    sim = Sim(make(evaluators=2, max_eval_steps=10, keep_curves=keep), score)
    for _ in range(6):
        decisions = sim.round()
        if any(d.member == 4 and "no overlap" in d.reason for d in of(Release, decisions)):
            break
    else:
        pytest.fail("evaluator 4 was never stopped for lack of overlap")
    fit = sim.fire.fitness(1)
    if keep:
        assert set(fit) == {2, 3} and fit[3] > fit[2]
    else:
        assert 2 not in fit


# ---------------------------------------------------------------------------------------------
# Curve bookkeeping, judging order and re-targeting (issue: FIRE PBT that delivers its claim)
# ---------------------------------------------------------------------------------------------


class RecordingCache(CurveCache):
    """Records every fit the strategy asks for: (key, the points, the curve it got back)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[object, tuple, object]] = []

    def fit(self, key, points):
        curve = super().fit(key, points)
        self.calls.append((key, tuple(points), curve))
        return curve


def test_every_curve_lookup_returns_the_fit_of_exactly_that_curve() -> None:
    """A reassigned evaluator and a child whose curve restarted get fresh fits, even when the
    new curve has as many points as the old one (the old cache compared lengths only)."""
    from firepbt import Truncation

    rng = np.random.default_rng(5)

    def score(w: int, s: int) -> float:
        return {0: 0.5, 1: 0.6}.get(w, 0.3) + 0.002 * s + float(rng.normal(0.0, 0.05))

    fire = make(evaluators=2, exploit=Truncation(0.5), max_eval_steps=10)
    fire._fits = cache = RecordingCache()
    sim = Sim(fire, score)
    for _ in range(12):
        sim.round()
    by_key: dict[object, list[tuple]] = {}
    for key, points, curve in cache.calls:
        assert list(curve.steps) == [p[0] for p in points]
        assert list(curve.values) == [p[1] for p in points]
        by_key.setdefault(key, []).append(points)
    # Not vacuous: some key was looked up again with a new curve of the same length.
    assert any(
        len(a) == len(b) and a != b
        for calls in by_key.values()
        for a, b in zip(calls, calls[1:], strict=False)
    )


def p1_scores(w: int, s: int) -> float:
    """Member 1 is P1's best after round 1 and its worst in round 2 (member 0 copied it in
    round 1 and then does better), so it loses an evolution event in round 2."""
    if w == 0:
        return 0.5 if s <= 10 else 0.7
    return {1: 0.6, 2: 0.3, 3: 0.2}[w]


def test_the_default_test_of_gains_needs_an_evaluator_that_keeps_gaining_faster() -> None:
    """Under the default ``success_test = "increments"`` a climb that levels off after two
    steps is no success (two gains won of many); a steady climb past a flat target is."""
    capped = Sim(make(success_test="increments", max_eval_steps=100), rising_evaluator)
    for _ in range(4):
        assert not of(Handover, capped.round())

    def steady(w: int, s: int) -> float:
        return 0.3 + 0.04 * (s - 10) if w == 4 else rising_evaluator(w, s)

    sim = Sim(make(success_test="increments", max_eval_steps=100), steady)
    sim.round()  # round 1: evaluator 4 assigned to parent 2, target 1
    assert not of(Handover, sim.round())  # round 2: it reaches the target's 0.6 at step 17.5
    (handover,) = of(Handover, sim.round())  # round 3: every gain above the target's 0
    assert (handover.member, handover.evaluator) == (1, 4)
    assert FirePBT(SPACE, 4, 100, 10, np.random.default_rng(0)).increments  # the default


def test_an_evaluator_that_succeeds_hands_over_before_its_target_can_lose() -> None:
    from firepbt import Truncation

    def score(w: int, s: int) -> float:
        return min(0.3 + 0.16 * (s - 10), 0.95) if w == 4 else p1_scores(w, s)

    sim = Sim(make(exploit=Truncation(0.5)), score)
    (assign,) = of(Assign, sim.round())
    assert (assign.member, assign.parent, assign.target) == (4, 2, 1)
    decisions = sim.round()
    (handover,) = of(Handover, decisions)  # judged before evolution: it is not stopped
    assert handover.member == 1 and handover.evaluator == 4
    assert 1 not in {d.member for d in of(Exploit, decisions)}  # just took new weights
    (release,) = [d for d in of(Release, decisions) if d.member == 4]
    assert Ending.of(release.reason) is Ending.SUCCESS


@pytest.mark.parametrize("retarget", [True, False])
def test_an_evaluator_whose_target_loses_is_retargeted_or_stopped(retarget: bool) -> None:
    from firepbt import Truncation

    def score(w: int, s: int) -> float:  # evaluator 4 climbs slowly: it needs more time
        return 0.3 + 0.01 * (s - 10) if w == 4 else p1_scores(w, s)

    fire = make(exploit=Truncation(0.5), retarget=retarget)
    sim = Sim(fire, score)
    sim.round()
    decisions = sim.round()
    assert {d.member: d.donor for d in of(Exploit, decisions)} == {1: 0}  # the target lost
    released = [d for d in of(Release, decisions) if d.member == 4]
    if retarget:
        assert released == [] and 4 in {d.member for d in of(Continue, decisions)}
        assert fire._ev[4].target == 0 and fire._ev[4].parent == 2
    else:
        assert [Ending.of(d.reason) for d in released] == [Ending.TARGET_LOST]


def test_every_release_names_how_the_evaluation_ended() -> None:
    from firepbt import Truncation

    rng = np.random.default_rng(1)

    def score(w: int, s: int) -> float:
        return {0: 0.5, 1: 0.6}.get(w, 0.3) + 0.003 * s + float(rng.normal(0.0, 0.02))

    sim = Sim(make(evaluators=2, exploit=Truncation(0.5), total_steps=200), score)
    while sim.running:
        sim.round()
    releases = [d for ds in sim.log for d in of(Release, ds)]
    assert releases and all(Ending.of(d.reason) is not None for d in releases)
    assert Ending.RUN_OVER in {Ending.of(d.reason) for d in releases}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_eval_steps": 5}, "max_eval_steps: 5 steps give an evaluator at most 6"),
        ({"eval_every": 3}, "eval_every: 3 does not divide ready_every 10"),
        ({"evaluators": 3}, "evaluators: 3 evaluators for 2 parent members"),
    ],
)
def test_settings_under_which_fire_cannot_hand_over_warn(kwargs, match) -> None:
    with pytest.warns(FireSettingsWarning, match=match):
        make(**kwargs)


def test_default_settings_do_not_warn_and_leave_room_for_a_success() -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", FireSettingsWarning)
        fire = FirePBT(SPACE, 4, 100, 10, np.random.default_rng(0), eval_every=2)
    assert fire.thin == 1  # every pair, as in the paper
    assert points_for_success(0.01, thin=1) == 8  # the start pair + 7 wins (0.5**7 < 0.01)
    assert points_for_success(0.01, thin=2) == 15
    # three times the fewest points a success needs, and at least 3 ready intervals
    assert fire.max_eval_steps == max(3 * 10, 3 * 7 * 2)


def test_a_point_at_a_step_the_curve_already_reached_replaces_the_last_one() -> None:
    """A member that copied a finished donor is evaluated again at the donor's step; its curve
    keeps strictly increasing steps, so judging an evaluator against it does not raise."""
    sim = Sim(make(), rising_evaluator)
    sim.round()  # evaluator 4 assigned, target 1
    fire = sim.fire
    fire.report(1, 10, 0.61)  # a second evaluation at a step member 1's curve already holds
    assert [p[0] for p in fire._curve[1]].count(10) == 1 and fire._curve[1][-1] == (10, 0.61)
    sim.round()  # judges evaluator 4 against member 1's curve
