"""The local runtime's threads: workers that deliver and run sagas, the sources timer, and
the WAL checkpointer (which keeps SQLite's checkpoints out of the workers' commits).

A worker alternates between one delivery and one saga's run of due steps, so a backlog of
either never starves the other; it sleeps on a condition that `wake` (new events, a saga
started, a redrive) interrupts.

Workers take turns: one unit of work (its claim, its transaction and the log lines after
its commit) at a time. A unit's handlers run inside the database's one write transaction,
so two units' handlers never ran at once anyway; what ran side by side (claims, reads,
log lines) only contended for the GIL and the write lock: on the soak mix, 4 workers
without turns did about 20% fewer events per second, at more CPU per event. Producers
are not in the turn: their writes still go first at the write lock. `run_until_idle`
does the same work in the calling thread, for the demo and the tests.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Final, Protocol

log = logging.getLogger("switchyard.local")

#: One unit of work; True when there was some.
Work = Callable[[], bool]
#: When the next unit of work falls due (None: nothing pending).
Due = Callable[[], float | None]
#: How often the checkpointer copies the WAL back (it skips a round with nothing new).
CHECKPOINT_INTERVAL: Final = 0.25


class Checkpoints(Protocol):
    """The database's WAL checkpoints (`adapters.local.database.Database`)."""

    background_checkpoints: bool

    def checkpoint(self) -> bool: ...


class Signal:
    """Wakes sleeping workers early: there is work now."""

    def __init__(self) -> None:
        self._condition = threading.Condition()

    def wake(self) -> None:
        with self._condition:
            self._condition.notify_all()

    def wait(self, timeout: float) -> None:
        with self._condition:
            self._condition.wait(timeout)


class Helpers(Protocol):
    """Processes the workers use while they run (`adapters.local.offload.Offload`)."""

    def start(self) -> None: ...
    def ready(self) -> bool: ...
    def stop(self) -> None: ...


class Workers:
    def __init__(self, signal: Signal, stopping: threading.Event, deliver: Work,
                 advance_saga: Work, dues: tuple[Due, ...], poll_interval: float,
                 checkpoints: Checkpoints | None = None, helpers: Helpers | None = None,
                 finish: Work | None = None) -> None:
        self._signal = signal
        self.stopping = stopping
        self._deliver = deliver
        self._advance_saga = advance_saga
        self._dues = dues
        self._poll_interval = poll_interval
        self._checkpoints = checkpoints
        self._helpers = helpers
        #: What the workers leave half done when they stop (a batch claimed ahead).
        self._finish = finish
        self._threads: list[threading.Thread] = []
        self._turn = False
        #: Held by the worker doing a unit of work (see the module docstring).
        self._working = threading.Lock()

    def start(self, workers: int, timer: Callable[[], object] | None = None,
              timer_interval: float = 1.0) -> None:
        if workers < 1:  # events would be accepted and never processed
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.stopping.clear()
        if self._helpers is not None:
            self._helpers.start()
        for n in range(workers):
            thread = threading.Thread(target=self._loop, name=f"switchyard-worker-{n}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)
        if timer is not None:
            ticker = threading.Thread(target=self._timer, args=(timer, timer_interval),
                                      name="switchyard-timer", daemon=True)
            ticker.start()
            self._threads.append(ticker)
        if self._checkpoints is not None:
            self._checkpoints.background_checkpoints = True
            checkpointer = threading.Thread(target=self._checkpointer,
                                            name="switchyard-checkpointer", daemon=True)
            checkpointer.start()
            self._threads.append(checkpointer)

    def start_helpers(self, timeout: float) -> bool:
        """Start the helper processes and wait until they answer; False without any."""
        if self._helpers is None:
            return False
        self._helpers.start()
        deadline = time.monotonic() + timeout
        while not self._helpers.ready():
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker processes not ready after {timeout:g}s")
            time.sleep(0.01)
        return True

    def _checkpointer(self) -> None:
        """PASSIVE checkpoints on a connection of its own: SQLite copies the WAL back
        without the GIL while the workers go on committing."""
        assert self._checkpoints is not None
        while not self.stopping.wait(CHECKPOINT_INTERVAL):
            try:
                self._checkpoints.checkpoint()
            except Exception:  # noqa: BLE001 - a missed checkpoint is caught up next round
                log.exception("checkpoint error")

    def _timer(self, poll: Callable[[], object], interval: float) -> None:
        """Uploads, schedules and expiry: the managed event sources of the clouds."""
        while not self.stopping.is_set():
            try:
                poll()
            except Exception:  # noqa: BLE001 - the timer must outlive any one failure
                log.exception("event source error")
            self.stopping.wait(interval)

    def stop(self, timeout: float = 10.0) -> None:
        self.stopping.set()
        self._signal.wake()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()
        if self._finish is not None:
            try:
                self._finish()
            except Exception:  # noqa: BLE001 - it reappears after the visibility timeout
                log.exception("worker error")
        if self._helpers is not None:
            self._helpers.stop()
        if self._checkpoints is not None:
            self._checkpoints.background_checkpoints = False

    def _loop(self) -> None:
        while not self.stopping.is_set():
            try:
                with self._working:
                    worked = self.work_once()
                if worked:
                    continue
            except Exception:  # noqa: BLE001 - a worker must outlive any one failure
                log.exception("worker error")
            self._signal.wait(self._poll_interval)

    def work_once(self) -> bool:
        """Do one unit of work (a delivery, or a saga's run of due steps); False when
        nothing was due. Alternates which kind goes first, so a backlog of deliveries
        never starves the sagas (or the other way round)."""
        self._turn = not self._turn
        if self._turn:
            return self._deliver() or self._advance_saga()
        return self._advance_saga() or self._deliver()

    def run_until_idle(self, timeout: float = 60.0) -> None:
        """Process in the calling thread until no delivery or saga step is pending."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.work_once():
                continue
            dues = [d for d in (due() for due in self._dues) if d is not None]
            if not dues:
                return
            time.sleep(min(max(min(dues) - time.time(), 0.001), 0.05))
        raise TimeoutError(f"runtime not idle after {timeout}s")
