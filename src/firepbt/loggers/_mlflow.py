"""Per-member MLflow runs, nested under one parent run: ``pip install 'firepbt[mlflow]'``."""

from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path
from typing import Any

from firepbt.callbacks import (
    Callback,
    MemberFailure,
    MemberPoint,
    RunStart,
    decision_step,
    describe,
    describe_failure,
    scalars,
)
from firepbt.decisions import Continue, Decision, Start
from firepbt.loggers._tensorboard import worker_name

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")  # file:, sqlite:, http(s):, databricks, ...
RUN_TAG = "firepbt.run"  # the parent run's tag: a digest of the run directory's path
MEMBER_TAG = "firepbt.member"
PARENT_TAG = "mlflow.parentRunId"
_STATUS = {"finished": "FINISHED", "failed": "FAILED", "interrupted": "KILLED", "error": "FAILED"}


def tracking_uri(where: str | Path) -> tuple[str, str | None]:
    """The tracking URI ``where`` names, and where a new experiment keeps its artifacts: a URI
    (``sqlite:///...``, ``http://...``, ``file:...``) as it is; a directory as a local SQLite
    store ``DIR/mlflow.db`` with artifacts in ``DIR/artifacts`` (MLflow 3 refuses its older
    plain-file store unless ``MLFLOW_ALLOW_FILE_STORE=true``; give a ``file:`` URI for it)."""
    text = str(where)
    if _URI.match(text) and not re.match(r"^[A-Za-z]:[\\/]", text):  # not a Windows drive
        return text, None
    directory = Path(text).absolute()
    return f"sqlite:///{directory / 'mlflow.db'}", (directory / "artifacts").as_uri()


def _key(name: str) -> str:
    """A metric or tag name MLflow accepts (letters, digits, ``_ - . / `` and spaces)."""
    return re.sub(r"[^\w./ -]", "_", name)


class MLflowWriter(Callback):
    """Logs each member to its own MLflow run, nested under a parent run named after the run
    directory, in ``experiment``:

    * metrics ``metrics/<name>`` and ``hyperparameters/<name>`` (numeric ones) at each
      evaluation, with the member's step, so an exploit shows as a step in the curve;
    * the member's starting hyperparameters as params;
    * each decision but continue as a tag ``decision.<step>.<kind>`` (an exploit's donor and
      explore record, FIRE PBT's assignments and hand-overs) and each failure as
      ``failure.<step>.<segment>``.

    A resumed run logs to the runs it made before. Runs end FINISHED, FAILED or KILLED.

    Args:
        where: A directory, which holds a local SQLite store (``DIR/mlflow.db``, artifacts in
            ``DIR/artifacts``), or a tracking URI (``sqlite:///...``, ``http://...``,
            ``file:...``), used as it is.
        experiment: The MLflow experiment the runs go in; created when missing.

    >>> writer = MLflowWriter("mlruns")  # firepbt.run(..., callbacks=[writer])
    """

    package = "mlflow"

    def __init__(self, where: str | Path = "mlruns", *, experiment: str = "firepbt") -> None:
        self.uri, self._artifacts = tracking_uri(where)
        self.experiment = experiment
        self._client: Any = None
        self._experiment_id = ""
        self._parent = ""
        self._runs: dict[int, str] = {}
        self._evaluators: frozenset[int] = frozenset()
        self._name = ""

    def on_start(self, run: RunStart) -> None:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=self.uri)
        self._client = client
        self._evaluators = run.evaluators
        self._name = run.name
        found = client.get_experiment_by_name(self.experiment)
        self._experiment_id = (
            found.experiment_id
            if found is not None
            else client.create_experiment(self.experiment, artifact_location=self._artifacts)
        )
        digest = hashlib.sha256(str(run.run_dir.resolve()).encode()).hexdigest()[:20]
        if run.resumed:
            self._reopen(digest)
        if not self._parent:
            params = {
                k: run.config[k]
                for k in ("strategy", "population", "ready_every", "total_steps", "mode", "seed")
                if k in run.config
            }
            tags = {RUN_TAG: digest, "firepbt.run_dir": str(run.run_dir.resolve())}
            self._parent = client.create_run(
                self._experiment_id, tags=tags, run_name=run.name
            ).info.run_id
            self._log(self._parent, params={k: str(v) for k, v in params.items()})

    def _reopen(self, digest: str) -> None:
        """The parent and member runs the run made before it was stopped."""
        client = self._client
        parents = client.search_runs(
            [self._experiment_id], filter_string=f"tags.`{RUN_TAG}` = '{digest}'"
        )
        if not parents:
            return
        self._parent = parents[0].info.run_id
        client.update_run(self._parent, status="RUNNING")
        token = None
        while True:
            children = client.search_runs(
                [self._experiment_id],
                filter_string=f"tags.`{PARENT_TAG}` = '{self._parent}'",
                page_token=token,
            )
            for child in children:
                member = child.data.tags.get(MEMBER_TAG)
                if member is not None:
                    self._runs[int(member)] = child.info.run_id
                    client.update_run(child.info.run_id, status="RUNNING")
            token = children.token
            if not token:
                break

    def _run(self, member: int) -> str:
        run_id = self._runs.get(member)
        if run_id is None:
            name = worker_name(member, member in self._evaluators)
            tags = {PARENT_TAG: self._parent, MEMBER_TAG: str(member)}
            created = self._client.create_run(
                self._experiment_id, tags=tags, run_name=f"{self._name}/{name}"
            )
            run_id = self._runs[member] = created.info.run_id
        return run_id

    def _log(
        self,
        run_id: str,
        metrics: dict[str, float] | None = None,
        step: int = 0,
        params: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
    ) -> None:
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        self._client.log_batch(
            run_id,
            metrics=[Metric(_key(k), v, now, step) for k, v in (metrics or {}).items()],
            params=[Param(_key(k), v) for k, v in (params or {}).items()],
            tags=[RunTag(_key(k), v) for k, v in (tags or {}).items()],
        )

    def on_point(self, point: MemberPoint) -> None:
        self._log(self._run(point.member), scalars(point), point.step)

    def on_decision(self, decision: Decision) -> None:
        if isinstance(decision, Continue):
            return
        step, kind = decision_step(decision), type(decision).__name__.lower()
        params = (
            {k: str(v) for k, v in decision.hyperparameters.items()}
            if isinstance(decision, Start)
            else None
        )
        tags = {f"decision.{step:08d}.{kind}": describe(decision)}
        self._log(self._run(decision.member), params=params, tags=tags)

    def on_failure(self, failure: MemberFailure) -> None:
        tag = f"failure.{failure.step:08d}.{failure.segment}"
        self._log(self._run(failure.member), tags={tag: describe_failure(failure)})

    def on_end(self, status: str) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        state = _STATUS.get(status, "FAILED")
        for run_id in [*self._runs.values(), self._parent]:
            client.set_terminated(run_id, status=state)
        self._runs = {}
