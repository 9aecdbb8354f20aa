"""The Publisher contract (`publisher_contract.py`) on the local runtime's bus and the
in-memory fake. Neither can fail part of a call (the local bus appends a whole call in one
SQLite transaction; the fake appends to a list), so failure case 11 is expressed by
EventBridge and Pub/Sub only (tests/aws, tests/gcp); the skip says so."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tests.contract.publisher_contract as contract
from adapters.local.effects import BusPublisher
from adapters.local.runtime import MAX_EVENT_BYTES, Runtime
from adapters.memory import MemoryPublisher
from handlers.core import jsonformat
from handlers.core.events import Event

for _name in dir(contract):
    if _name.startswith("test_"):
        globals()[_name] = getattr(contract, _name)


def _json_size(event: Event) -> int:
    return len(jsonformat.dumps(event).encode())


class LocalHarness:
    """The local bus's own publisher: emitted events go onto the SQLite event log. Like
    the EventBridge and Pub/Sub runs, this is the transport; the claim check that wraps
    it in the runtime has its own scenario (claim_check_carries_a_2mb_event)."""

    per_call = None
    no_partial_failures = "the local bus appends a whole publish in one SQLite transaction"
    limit_bytes = MAX_EVENT_BYTES

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.publisher = BusPublisher(runtime)
        self._calls: list[list[str]] = []
        ingest = runtime.ingest

        def recording(events: Any, origin: str = "http") -> list[str]:
            ids = ingest(events, origin)  # refuses (raises) before writing anything
            self._calls.append(list(ids))
            return ids

        runtime.ingest = recording  # type: ignore[method-assign]

    size_of = staticmethod(_json_size)

    def received(self) -> list[Event]:
        rows = self.runtime.db.read("SELECT body FROM events WHERE origin = 'emit' ORDER BY seq")
        return [jsonformat.loads(body) for (body,) in rows]

    def sends(self) -> list[list[str]]:
        return list(self._calls)

    def fail_next(self, ids: set[str]) -> None:
        raise AssertionError(self.no_partial_failures)


class MemoryHarness:
    per_call = None
    no_partial_failures = "the in-memory fake appends to a list"

    def __init__(self) -> None:
        self.publisher = MemoryPublisher()
        self.limit_bytes = self.publisher.max_event_bytes

    size_of = staticmethod(_json_size)

    def received(self) -> list[Event]:
        return list(self.publisher.published)

    def sends(self) -> list[list[str]]:
        return [[e.id for e in self.publisher.published]] if self.publisher.published else []

    def fail_next(self, ids: set[str]) -> None:
        raise AssertionError(self.no_partial_failures)


@pytest.fixture(params=["local", "memory"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "memory":
        yield MemoryHarness()
        return
    runtime = Runtime(tmp_path / "bus.db")
    try:
        yield LocalHarness(runtime)
    finally:
        runtime.close()


def test_the_whole_contract_is_collected() -> None:
    names = [n for n in dir(contract) if n.startswith("test_")]
    assert len(names) >= 6 and all(n in globals() for n in names)
