"""The pipeline that claims batches one step ahead for the worker processes (`Ahead`):
what it claims, hands out and runs, in which order, and what is left when it stops."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from adapters.local.ahead import Ahead, Results


class Recorder:
    """Batches to claim, in order, and every call the pipeline makes."""

    def __init__(self, *batches: list[str], workers: bool = True) -> None:
        self._batches = list(batches)
        self._workers = workers
        self.calls: list[tuple[Any, ...]] = []

    def claim(self) -> list[str]:
        batch = self._batches.pop(0) if self._batches else []
        self.calls.append(("claim", batch))
        return batch

    def hand_out(self, claimed: list[str], follows: bool) -> Callable[[], Results] | None:
        self.calls.append(("hand out", claimed, follows))
        if not self._workers:
            return None
        return lambda: [f"{member} done" for member in claimed]

    def run(self, claimed: list[str], results: Sequence[Any] | None) -> None:
        self.calls.append(("run", claimed, results))


def test_the_next_batch_is_claimed_and_handed_out_before_this_one_runs() -> None:
    ahead, r = Ahead(), Recorder(["a"], ["b"])
    assert ahead.step(r.claim, r.run, r.hand_out)
    assert r.calls == [("claim", ["a"]), ("hand out", ["a"], False),
                       ("claim", ["b"]), ("hand out", ["b"], True),  # after the unrun "a"
                       ("run", ["a"], ["a done"])]
    r.calls.clear()
    assert ahead.step(r.claim, r.run, r.hand_out)  # "b", and nothing more to claim
    assert r.calls == [("claim", []), ("run", ["b"], ["b done"])]
    r.calls.clear()
    assert not ahead.step(r.claim, r.run, r.hand_out)
    assert r.calls == [("claim", [])]


def test_a_batch_the_workers_do_not_take_runs_here_and_nothing_is_claimed_ahead() -> None:
    ahead, r = Ahead(), Recorder(["a"], ["b"], workers=False)
    assert ahead.step(r.claim, r.run, r.hand_out)
    assert r.calls == [("claim", ["a"]), ("hand out", ["a"], False), ("run", ["a"], None)]


def test_a_batch_handed_out_ahead_but_refused_runs_next_without_results() -> None:
    r = Recorder(["a"], ["b"])
    refused = {"b"}

    def hand_out(claimed: list[str], follows: bool) -> Callable[[], Results] | None:
        return None if set(claimed) & refused else r.hand_out(claimed, follows)

    ahead = Ahead()
    assert ahead.step(r.claim, r.run, hand_out)
    r.calls.clear()
    assert ahead.step(r.claim, r.run, hand_out)  # "b" runs, and claims nothing ahead
    assert r.calls == [("run", ["b"], None)]


def test_without_workers_a_batch_is_claimed_and_run_and_nothing_else() -> None:
    ahead, r = Ahead(), Recorder(["a"], ["b"])
    assert ahead.step(r.claim, r.run, None)
    assert r.calls == [("claim", ["a"]), ("run", ["a"], None)]


def test_finishing_runs_the_batch_waiting_ahead_without_its_results() -> None:
    ahead, r = Ahead(), Recorder(["a"], ["b"])
    assert not ahead.finish(r.run, timeout=1.0)  # nothing waits yet
    ahead.step(r.claim, r.run, r.hand_out)
    r.calls.clear()
    assert ahead.finish(r.run, timeout=1.0)
    assert r.calls == [("run", ["b"], None)]
    assert not ahead.finish(r.run, timeout=1.0)


def test_finishing_gives_up_when_a_step_holds_the_batch_past_the_timeout() -> None:
    ahead, r = Ahead(), Recorder(["a"], ["b"])
    ahead.step(r.claim, r.run, r.hand_out)
    r.calls.clear()
    ahead._lock.acquire()  # a step still running (a worker stuck in it)
    try:
        assert not ahead.finish(r.run, timeout=0.01)
    finally:
        ahead._lock.release()
    assert r.calls == []
    assert ahead.finish(r.run, timeout=1.0)  # the batch still waits, and runs now
