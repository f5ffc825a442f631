"""Each member's own global random state.

Training code draws from process-global generators: Python's ``random``, numpy's global
generator (``np.random.rand``, a ``shuffle``), torch's CPU generator (dropout, a shuffling
``DataLoader``, ``randperm``) and its CUDA generators. A worker trains many members in one
process, one segment after another, so without care a member's draws would depend on which
worker ran it and what ran there before: runs would not repeat and replays would not reproduce.

So these generators belong to the member. Before a member's first segment they are seeded from
its seed; after every segment their state is kept with its checkpoint (``MemberState.random``),
and the next segment that starts from that checkpoint restores it: on the same worker, on
another, after a resume or in a replay. The state is part of the checkpoint as the optimizer's
moments are, so an exploit copies the donor's random state with its weights, and a replay, which
trains one lineage from its first seed, draws exactly what the lineage drew. Around the segment the
process's own state is put back, so a run on the in-process executor leaves its caller's
generators as they were.

Generators of modules that are not imported are left alone: numpy's and torch's are captured only
once the process has imported them, CUDA's only once CUDA is initialised. A module that a
trainable's constructor imports is seeded when the constructor returns; draws made before that,
or by a module first imported while training, are not the member's (numpy seeds its generator
from the operating system at import): import numpy and torch at the top of the trainable's
module. A generator that code
creates itself (``np.random.default_rng(seed)``, ``torch.Generator``) is its own business: keep its
state in ``save()``.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

RandomState = dict[str, Any]


def loaded() -> frozenset[str]:
    """The generator modules this process has imported, of ``random``, numpy and torch."""
    return frozenset(name for name in ("random", "numpy", "torch") if name in sys.modules)


def seed_all(seed: int, skip: frozenset[str] = frozenset()) -> None:
    """Seed every loaded global generator from ``seed`` (numpy's with it modulo 2**32), except
    those of the modules named in ``skip``."""
    if "random" not in skip:
        random.seed(seed)
    numpy = sys.modules.get("numpy")
    if numpy is not None and "numpy" not in skip:
        numpy.random.seed(seed % 2**32)
    torch = sys.modules.get("torch")
    if torch is not None and "torch" not in skip:
        torch.manual_seed(seed)  # CUDA's generators too, lazily where CUDA is not initialised


def capture() -> RandomState:
    """The state of every loaded global generator (a picklable dict)."""
    state: RandomState = {"python": random.getstate()}
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        state["numpy"] = numpy.random.get_state()
    torch = sys.modules.get("torch")
    if torch is not None:
        state["torch"] = torch.get_rng_state()
        if _cuda_initialised(torch):
            state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore(state: Mapping[str, Any]) -> None:
    """Set the global generators to ``state`` (from ``capture``). A generator the state does not
    hold is left as it is; CUDA's are restored for as many devices as this process sees."""
    if "python" in state:
        random.setstate(state["python"])
    numpy = sys.modules.get("numpy")
    if numpy is not None and "numpy" in state:
        numpy.random.set_state(state["numpy"])
    torch = sys.modules.get("torch")
    if torch is not None and "torch" in state:
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            for index, rng in enumerate(state["cuda"][: torch.cuda.device_count()]):
                torch.cuda.set_rng_state(rng, index)


@contextmanager
def kept() -> Iterator[None]:
    """Put the process's global random state back as it was when the block ends."""
    outer = capture()
    try:
        yield
    finally:
        restore(outer)


def _cuda_initialised(torch: Any) -> bool:
    cuda = torch.cuda
    return bool(cuda.is_available() and cuda.is_initialized())
