"""Every live member's score history, with the rankings the exploit policies ask for kept up to
date as scores arrive, so that a decision costs O(log n) instead of a sort of the population.

A strategy hands its ``ScoreBoard`` to an exploit policy as the ``scores`` mapping. A policy that
knows nothing of it reads it as any mapping of member to scores; the built-in policies take its
rankings (``ranked``, ``scored``) instead of computing their own, and decide exactly as they
would on a plain mapping (``tests/test_scoreboard.py`` compares both ways, decision by decision).

>>> board = ScoreBoard()
>>> board.set(0, [0.1]); board.set(1, [0.9]); board.set(2, [])
>>> board.ranked(1), board.scored(1)
([(0.1, 0), (0.9, 1)], [0, 1])
>>> board.set(0, [0.1, 1.5])
>>> board.ranked(1)
[(0.9, 1), (1.5, 0)]
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Mapping, Sequence


def rank_key(score: float) -> float:
    """Sort key that ranks NaN and +/-inf below every finite score."""
    return score if math.isfinite(score) else -math.inf


def recent_score(history: Sequence[float], window: int = 1) -> float:
    """Mean of the last ``window`` scores (NaN or inf anywhere in it ranks worst). Averaging the
    evaluations of the last ready interval steadies a ranking taken on a noisy metric."""
    recent = [rank_key(float(x)) for x in history[-window:]]
    return sum(recent) / len(recent) if recent else -math.inf


class ScoreBoard(Mapping[int, Sequence[float]]):
    """Member -> its score history (oriented: higher is better), with, per ``window`` a policy
    asked for, every scored member's recent score in rank order, and, per count, the sorted ids
    of members with at least that many scores.

    Invariants:
        The board holds the lists a strategy gives it, without copying them: a strategy calls
        ``set`` again after it changed one (a score appended) or replaced it (a copy).
        Between ``hold`` and ``release`` (a synchronous round, decided on one view of the
        population) it shows the population as the round found it; the changes made meanwhile
        take effect at ``release``.
    """

    def __init__(self) -> None:
        self._scores: dict[int, Sequence[float]] = {}
        self._lengths: dict[int, int] = {}  # as last set (a list grows in place before ``set``)
        self._recent: dict[int, dict[int, float]] = {}  # window -> member -> recent score
        self._ranked: dict[int, list[tuple[float, int]]] = {}  # window -> worst first
        self._counted: dict[int, list[int]] = {}  # count -> ids with at least that many scores
        self._held: dict[int, Sequence[float] | None] | None = None

    def __getitem__(self, member: int) -> Sequence[float]:
        return self._scores[member]

    def __iter__(self) -> Iterator[int]:
        return iter(self._scores)

    def __len__(self) -> int:
        return len(self._scores)

    def __contains__(self, member: object) -> bool:
        return member in self._scores

    # -- changes ----------------------------------------------------------------------------

    def set(self, member: int, scores: Sequence[float]) -> None:
        """``member``'s history is now ``scores`` (appended to, or replaced by a copy)."""
        if self._held is not None:
            self._held[member] = scores
        else:
            self._update(member, scores)

    def remove(self, member: int) -> None:
        """``member`` left the population."""
        if self._held is not None:
            self._held[member] = None
        else:
            self._update(member, None)

    def hold(self) -> None:
        """A round begins: changes wait until ``release``."""
        self._held = {}

    def release(self) -> None:
        """The round ends: the changes made during it take effect, in the order made."""
        held, self._held = self._held or {}, None
        for member, scores in held.items():
            self._update(member, scores)

    def _update(self, member: int, scores: Sequence[float] | None) -> None:
        had = self._lengths.pop(member, None)
        for window, ranked in self._ranked.items():
            recent = self._recent[window]
            if member in recent:
                del ranked[bisect.bisect_left(ranked, (recent.pop(member), member))]
            if scores:
                value = recent_score(scores, window)
                recent[member] = value
                bisect.insort(ranked, (value, member))
        for count, ids in self._counted.items():
            was = had is not None and had >= count
            now = scores is not None and len(scores) >= count
            if was and not now:
                del ids[bisect.bisect_left(ids, member)]
            elif now and not was:
                bisect.insort(ids, member)
        if scores is None:
            self._scores.pop(member, None)
        else:
            self._scores[member] = scores
            self._lengths[member] = len(scores)

    # -- what the policies read -------------------------------------------------------------

    def recent(self, window: int) -> Mapping[int, float]:
        """Every scored member's recent score: the mean of its last ``window`` scores
        (``recent_score``). Read only."""
        if window not in self._recent:
            self.ranked(window)
        return self._recent[window]

    def ranked(self, window: int) -> list[tuple[float, int]]:
        """``(recent score, member)`` of every scored member, worst first (ties by member id).
        Read only: the board keeps it up to date."""
        if window not in self._ranked:
            recent = {m: recent_score(s, window) for m, s in self._scores.items() if s}
            self._recent[window] = recent
            self._ranked[window] = sorted((v, m) for m, v in recent.items())
        return self._ranked[window]

    def scored(self, count: int) -> list[int]:
        """The ids of members with at least ``count`` scores, sorted. Read only."""
        if count not in self._counted:
            self._counted[count] = sorted(m for m, n in self._lengths.items() if n >= count)
        return self._counted[count]
