"""Batches claimed one step ahead, so a worker process runs the next while this one commits.

The broker's deliveries and the saga executor's sagas go the same way when worker
processes run them (`adapters.local.offload`): a batch is claimed (committed, so a
runtime that dies leaves it to reappear) and handed out at once; then, before the batch
is run here, the next one is claimed and handed out too. Here, running a batch settles
each of its members from what the worker did, or runs it, inside the write lock, while
the worker is already at the next batch. The one batch that waits ahead is run here
when the workers stop (`finish`), rather than left claimed until its claim runs out.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

#: What a worker made of a batch, one entry per member (None: run it here).
Results = Sequence[Any | None]
#: Claims the next batch (empty: nothing was due).
Claim = Callable[[], list[Any]]
#: Hands a claimed batch to the workers; `follows`: the batch handed out before it is not
#: run yet. Returns what waits for the results, or None: the batch runs here.
HandOut = Callable[[list[Any], bool], Callable[[], Results] | None]
#: Runs a claimed batch here, with the workers' results (None: without any).
Run = Callable[[list[Any], Results | None], None]


class Ahead:
    """One kind of batch's pipeline: at most one batch claimed and handed out ahead."""

    def __init__(self) -> None:
        self._batch: tuple[list[Any], Callable[[], Results] | None] | None = None
        self._lock = threading.Lock()

    def step(self, claim: Claim, run: Run, hand_out: HandOut | None) -> bool:
        """Run the next batch (the one ahead, or one claimed now); False when none was
        due. Without `hand_out` (no workers) a batch is claimed and run, nothing more."""
        if hand_out is None:
            claimed = claim()
            if not claimed:
                return False
            run(claimed, None)
            return True
        with self._lock:
            batch, self._batch = self._batch, None
            if batch is None:
                claimed = claim()
                if not claimed:
                    return False
                batch = claimed, hand_out(claimed, False)
            claimed, results = batch
            if results is not None:
                following = claim()
                if following:
                    self._batch = following, hand_out(following, True)
            run(claimed, results() if results is not None else None)
        return True

    def finish(self, run: Run, timeout: float) -> bool:
        """Run the batch waiting ahead, if any, here and without the workers' results (the
        workers are stopping); False when there was none, or when a `step` still held it
        after `timeout` seconds."""
        if not self._lock.acquire(timeout=timeout):
            return False
        try:
            batch, self._batch = self._batch, None
            if batch is None:
                return False
            run(batch[0], None)
            return True
        finally:
            self._lock.release()
