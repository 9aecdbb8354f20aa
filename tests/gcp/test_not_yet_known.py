"""Data not known yet (a trigger that overtook its order) on a push: one immediate retry
in the same request, then a nack that Pub/Sub's retry policy delays."""

from __future__ import annotations

import json

import pytest

from adapters.gcp import entry
from adapters.gcp.pubsub_binding import push_envelope, to_message
from adapters.gcp.settings import Settings
from adapters.memory import memory_ports
from handlers.app import APP
from tests.factories import not_yet_known_until, restock


def _push(monkeypatch: pytest.MonkeyPatch, succeed_on: int | None) -> tuple[int, list[str]]:
    calls = not_yet_known_until(monkeypatch, succeed_on)
    ports = memory_ports()
    rt = entry.Runtime(APP, Settings(project="p", consumer="inventory"), ports, None,
                       ports.publisher)
    event = restock("A", 1)
    body = json.dumps(push_envelope(to_message(event), attempt=1)).encode()
    _, status = entry.process_push(rt, {"Content-Type": "application/json"}, body)
    assert calls and set(calls) == {event.id}
    return status, calls


def test_known_on_the_immediate_retry_is_acked(monkeypatch: pytest.MonkeyPatch) -> None:
    status, calls = _push(monkeypatch, succeed_on=2)
    assert status == 204 and len(calls) == 2


def test_still_not_known_is_nacked_for_the_subscriptions_backoff(
        monkeypatch: pytest.MonkeyPatch) -> None:
    status, calls = _push(monkeypatch, succeed_on=None)
    assert status == 503 and len(calls) == 2
