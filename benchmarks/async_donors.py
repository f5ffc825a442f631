"""How many donors that asynchronous PBT chooses become exploits.

In an asynchronous run a member's saved weights can be behind a ready member's (it has just
copied someone older), and firepbt never rewinds a member, so such a member cannot be copied.
The truncation draw used to pick its donor among all better top members and then drop the
exploit when the donor was behind; it now draws among the top members that are not behind
(``ExploitPolicy.select``'s ``donors``). Both draws run here side by side, on the same runs:

- *draw, then refuse* (before): a policy that takes no ``donors`` argument, which firepbt calls
  without it and whose behind donors it drops, as it did for every policy before;
- *draw among usable* (now): ``Truncation`` told the usable donors.

Each is the PBT paper's toy problem (``firepbt.examples.toy``), asynchronous PBT with truncation
at 25 %, in process, for ``--seeds`` seeds at each population size. A *chosen* donor is a select
that names another member; an *exploit* is a lineage edge the run recorded.

    python benchmarks/async_donors.py [--seeds 10]

Writes ``benchmarks/results/async_donors.md``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import firepbt
from firepbt.exploit import ExploitRecord, Truncation
from firepbt.store import Store

RESULTS = Path(__file__).parent / "results" / "async_donors.md"
TOTAL, READY = 200, 10


@dataclass
class Counted:
    """Truncation(0.25), counting the donors it names."""

    chosen: int = 0
    policy: Truncation = field(default_factory=Truncation)

    def record(self, member: int, r: ExploitRecord | None) -> ExploitRecord | None:
        self.chosen += r is not None and r.donor != member
        return r


@dataclass
class DrawThenRefuse(Counted):
    def select(
        self, member: int, scores: Mapping[int, Sequence[float]], rng: np.random.Generator
    ) -> ExploitRecord | None:
        return self.record(member, self.policy.select(member, scores, rng))


@dataclass
class DrawAmongUsable(Counted):
    def select(
        self,
        member: int,
        scores: Mapping[int, Sequence[float]],
        rng: np.random.Generator,
        donors: Collection[int] | None = None,
    ) -> ExploitRecord | None:
        return self.record(member, self.policy.select(member, scores, rng, donors))


def one_run(root: Path, policy: Counted, population: int, seed: int) -> tuple[int, int]:
    run_dir = root / f"{type(policy).__name__}-{population}-{seed}"
    firepbt.run(
        "firepbt.examples.toy:Toy",
        {"h0": firepbt.Uniform(0.0, 1.0), "h1": firepbt.Uniform(0.0, 1.0)},
        total_steps=TOTAL,
        population=population,
        ready_every=READY,
        synchrony="async",
        exploit=policy,
        seed=seed,
        executor="inprocess",
        run_dir=run_dir,
        progress=False,
    )
    store = Store.open(run_dir)
    try:
        exploits = sum(1 for child, _, parent, _ in store.lineage() if child != parent)
    finally:
        store.close()
    return policy.chosen, exploits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for population in (4, 8, 16):
            for kind in (DrawThenRefuse, DrawAmongUsable):
                shares, chosen_all, exploits_all = [], 0, 0
                for seed in range(args.seeds):
                    chosen, exploits = one_run(Path(tmp), kind(), population, seed)
                    shares.append(exploits / chosen if chosen else 1.0)
                    chosen_all, exploits_all = chosen_all + chosen, exploits_all + exploits
                rows.append((population, kind.__name__, chosen_all, exploits_all, shares))
    lines = [
        f"# Asynchronous PBT: chosen donors that become exploits ({args.seeds} seeds each)",
        "",
        f"Toy problem, {TOTAL} steps, ready every {READY}, Truncation(0.25), in process. "
        "Share = exploits / chosen donors, per seed.",
        "",
        "| population | draw | chosen | exploits | share (all) | share per seed: median "
        "| mean ± std |",
        "|---|---|---|---|---|---|---|",
    ]
    for population, kind, chosen, exploits, shares in rows:
        mean, std = statistics.mean(shares), statistics.pstdev(shares)
        lines.append(
            f"| {population} | {kind} | {chosen} | {exploits} | "
            f"{exploits / max(chosen, 1):.3f} | {statistics.median(shares):.3f} | "
            f"{mean:.3f} ± {std:.3f} |"
        )
    lines += ["", f"Per seed (seeds 0 to {args.seeds - 1}), share:", ""]
    for population, kind, _, _, shares in rows:
        lines.append(f"- {population}, {kind}: " + ", ".join(f"{x:.2f}" for x in shares))
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
