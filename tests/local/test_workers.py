"""Worker threads take turns: one unit of work at a time, whatever their number."""

from __future__ import annotations

import threading
import time

from adapters.local.workers import Signal, Workers


def test_workers_take_turns_one_unit_of_work_at_a_time() -> None:
    lock = threading.Lock()
    state = {"active": 0, "most": 0, "done": 0}
    finished = threading.Event()

    def unit() -> bool:
        with lock:
            if state["done"] >= 200:
                finished.set()
                return False
            state["active"] += 1
            state["most"] = max(state["most"], state["active"])
        time.sleep(0.0005)  # gives the GIL away: another worker would start here
        with lock:
            state["active"] -= 1
            state["done"] += 1
        return True

    workers = Workers(Signal(), threading.Event(), deliver=unit, advance_saga=unit, dues=(),
                      poll_interval=0.01)
    workers.start(4)
    try:
        assert finished.wait(30)
    finally:
        workers.stop()
    assert state["done"] == 200
    assert state["most"] == 1
