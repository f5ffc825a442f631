"""A framework's training loop, run in a thread and paused at step boundaries.

Frameworks (Lightning, Hugging Face's Trainer) own their training loop: one call trains to the
end. firepbt trains a member in pieces (``train(steps)``, then ``evaluate``, then more). An
adapter runs the framework's loop once per member in a thread of the worker, with a callback
that calls ``pause_if_due`` after each optimizer step: the loop waits there, its state intact,
while the worker evaluates, saves, or hands it the next piece (``advance``). Only one of the two
threads runs at a time, so the framework's objects and the global random generators are never
used from both at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class Abandoned(Exception):
    """Raised in a paused loop's thread to end it (``PausedLoop.abandon``)."""


class PausedLoop:
    """Runs ``loop`` (the framework's whole training call) in a thread, paused at steps.

    Args:
        loop: Trains to the end; its callback calls ``pause_if_due`` after every step.
        step: The framework's current step count (its global step).
        what: The framework's name, for the error when it stops early.
    """

    def __init__(self, loop: Callable[[], None], step: Callable[[], int], what: str) -> None:
        self._loop, self._step, self._what = loop, step, what
        self.target = 0
        self.error: BaseException | None = None
        self._abandon = False
        self._paused = threading.Event()
        self._go = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def started(self) -> bool:
        return self._thread is not None

    def advance(self, target: int) -> None:
        """Train until the step count reaches ``target`` (starting the loop at the first call);
        an error of the loop is raised here."""
        self.target = target
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        else:
            self._go.set()
        self._paused.wait()
        self._paused.clear()
        if self.error is not None:
            raise self.error
        if self._step() > target:
            raise RuntimeError(
                f"{self._what}'s step count went from below {target} to {self._step()} in one "
                "batch: it counts more than one step per batch (manual optimisation with several "
                "optimizers?), and firepbt's steps are its steps; make ready_every and eval_every "
                "multiples of the steps one batch takes"
            )
        if self._step() != target:
            raise RuntimeError(
                f"{self._what} stopped at step {self._step()}, before step {target}: its "
                "settings end training before the run's budget"
            )

    def pause_if_due(self) -> None:
        """In the loop's thread, after a step: wait here once the target is reached."""
        if self._step() >= self.target:
            self._paused.set()
            self._go.wait()
            self._go.clear()
            if self._abandon:
                raise Abandoned

    def abandon(self) -> None:
        """End the paused loop's thread (it raises ``Abandoned`` where it waits)."""
        if self._thread is not None and self._thread.is_alive():
            self._abandon = True
            self._go.set()
            self._thread.join()

    def _run(self) -> None:
        try:
            self._loop()
        except Abandoned:
            return
        except BaseException as e:  # handed to the thread waiting in advance()
            self.error = e
        finally:
            self._paused.set()
