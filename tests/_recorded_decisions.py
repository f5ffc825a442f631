"""Runs whose decisions are recorded in ``fixtures/recorded_decisions.json``: every built-in
exploit policy, synchronous and asynchronous, PBT, FIRE PBT and random search, on the NQM (in
process, a few seconds each). The digests were recorded with the code before the controller's
decisions were made incremental (main at 7219946, with one mend: a synchronous round in which a
donor copies someone itself, as tournament and t-test allow, failed there on its donor's
released checkpoint; the loop now holds a round's sources until it is applied). A change to
how decisions are computed must leave them identical.

    PYTHONPATH=<checkout>/src python tests/_recorded_decisions.py \
        > tests/fixtures/recorded_decisions.json
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any


def scenarios() -> dict[str, dict[str, Any]]:
    """Name -> keyword arguments of ``firepbt.run`` (besides the trainable and the space)."""
    from firepbt import BinaryTournament, KeepOwn, Truncation, WelchTTest

    pbt = {"strategy": "pbt", "population": 24, "ready_every": 40, "total_steps": 480}
    fire = {
        "strategy": "fire",
        "population": 18,
        "subpopulations": 3,
        "evaluators": 4,
        "ready_every": 40,
        "eval_every": 10,
        "total_steps": 800,
    }
    runs: dict[str, dict[str, Any]] = {}
    for synchrony in ("sync", "async"):
        runs[f"pbt-truncation-{synchrony}"] = {**pbt, "synchrony": synchrony}
        runs[f"pbt-truncation-window3-{synchrony}"] = {
            **pbt,
            "synchrony": synchrony,
            "exploit": Truncation(0.5, window=3),
            "eval_every": 10,
        }
        runs[f"pbt-tournament-{synchrony}"] = {
            **pbt,
            "synchrony": synchrony,
            "exploit": BinaryTournament(),
        }
        runs[f"pbt-ttest-{synchrony}"] = {
            **pbt,
            "synchrony": synchrony,
            "exploit": WelchTTest(window=4, alpha=0.2),
            "eval_every": 10,
        }
        runs[f"fire-{synchrony}"] = {**fire, "synchrony": synchrony}
    runs["pbt-keep-own"] = {**pbt, "exploit": KeepOwn(), "burn_in": 80}
    runs["random"] = {**pbt, "strategy": "random"}
    return runs


def decisions_digest(name: str, options: dict[str, Any], root: Path) -> dict[str, Any]:
    """The run's decisions, in recorded order, as a sha256 and a count."""
    import firepbt
    from firepbt.examples.nqm import NQM

    run_dir = root / name
    firepbt.run(
        NQM,
        {"lr": firepbt.LogUniform(0.001, 1.9)},
        mode="min",
        metric="loss",
        seed=3,
        executor="inprocess",
        run_dir=run_dir,
        progress=False,
        **options,
    )
    store = firepbt.Store.open(run_dir)
    rows = [
        (d.member, d.step, d.kind, d.donor, d.source_step, d.hyperparameters, d.reason)
        for d in store.decisions()
    ]
    store.close()
    text = json.dumps(rows, sort_keys=True, default=str)
    return {"sha256": hashlib.sha256(text.encode()).hexdigest(), "decisions": len(rows)}


def main() -> None:
    with tempfile.TemporaryDirectory() as root:
        out = {name: decisions_digest(name, opts, Path(root)) for name, opts in scenarios().items()}
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    print()


if __name__ == "__main__":
    main()
