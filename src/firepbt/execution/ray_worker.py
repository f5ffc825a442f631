"""The worker side of the Ray executor: the body of each worker actor.

Segments run in the actor's own process, where ``run_segment``'s keep-alive cache holds this
worker's trainables between segments and its held checkpoints. An actor on a node that does not
see the run directory (and the run has no ``storage``) *relays* its checkpoints: the controller
sends it a segment's source as bytes (through Ray's object store), and the checkpoints it would
write come back to the controller with its results, or when another worker needs one
(``fetch``); the controller writes them into the run directory, which keeps the durable copy.
"""

from __future__ import annotations

import os
import socket
from dataclasses import replace
from typing import Any

from firepbt.errors import CheckpointError
from firepbt.execution import worker
from firepbt.execution.bootstrap import init_worker
from firepbt.execution.storage_probe import answer_probe
from firepbt.segments import Segment, SegmentResult


class RayWorker:
    """A worker actor: ``ray.remote(RayWorker)``."""

    def __init__(self, threads: int, environment: dict[str, str] | None = None) -> None:
        # Before the trainable's module (torch, say) is first imported. Ray sets the actor's
        # CUDA_VISIBLE_DEVICES to the GPUs it reserved for it.
        init_worker(threads, environment)
        import ray

        node = ray.get_runtime_context().get_node_id()[:8]
        self.name = f"{socket.gethostname()}/node-{node}/pid-{os.getpid()}"

    def ready(self, probe: tuple[str, str] | None) -> tuple[str, str]:
        """(the worker's name, "") once it is up and reaches the checkpoints, or (its name, why
        not, naming its node)."""
        if probe is None:
            return self.name, ""
        why = answer_probe(*probe, self.name)
        return self.name, f"on its node, {why}" if why else ""

    def run(
        self, segment: Segment, source: Any = None, relay: bool = False
    ) -> tuple[SegmentResult, bytes | None]:
        """Run ``segment``; (its result, the bytes of its checkpoint when this worker ``relay``s
        and the checkpoint was due to be written). ``source``: the bytes of the segment's source,
        sent by the controller to a relaying worker (Ray hands them over resolved)."""
        if relay:  # from now on, checkpoints go to the controller, not into the run directory
            worker.relay_checkpoints()
        lent = segment.source.path if source is not None and segment.source else None
        if lent is not None:
            worker.hold(lent, source)
        try:
            result = replace(worker.run_segment(segment), worker=self.name)
        finally:
            if lent is not None:
                worker.drop_held(lent)
        made = result.checkpoint
        if made is None:
            return result, None
        if made.holder:
            result = replace(result, checkpoint=replace(made, holder=self.name))
        return result, worker.outgoing(made.path)

    def flush(self, path: str) -> tuple[str, str]:
        """(sha256, "") of the held checkpoint written out, or ("", why it could not be)."""
        try:
            return worker.flush_held(path), ""
        except CheckpointError as e:
            return "", str(e)

    def fetch(self, path: str) -> bytes | None:
        """The bytes of a checkpoint this relaying worker holds (None: it holds none there)."""
        return worker.held(path)

    def drop(self, path: str) -> None:
        worker.drop_held(path)
