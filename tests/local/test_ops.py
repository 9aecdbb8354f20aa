"""`switchyard dlq|status|replay` on the embedded runtime, through the command line.

Real dead letters: a removal of stock that is not there (refused, permanently) and a
saga trigger for an order that never arrived (transient until maxDeliveries). The fault
is then removed, the dead letters redriven, and each is processed exactly once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.local.runtime import Runtime, RuntimeSettings
from cli.main import main
from cli.ops.commands import EXIT_DEAD_LETTERS
from handlers.catalog import INVENTORY_UPDATED, WORKFLOW_TRIGGERED
from handlers.core.events import Event
from tests.factories import order_created, restock, workflow_triggered


@pytest.fixture()
def db(tmp_path: Path) -> Path:
    return tmp_path / "ops.db"


@pytest.fixture()
def rt(db: Path) -> Iterator[Runtime]:
    runtime = Runtime(db, settings=RuntimeSettings(retry_scale=0.001, max_deliveries=3))
    yield runtime
    runtime.close()


def removal(item: str, quantity: int) -> Event:
    return Event.new("inventory", INVENTORY_UPDATED,
                     {"item_id": item, "quantity": quantity, "action": "remove"})


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def dlq_json(capsys: pytest.CaptureFixture[str], db: Path, *extra: str) -> list[dict[str, Any]]:
    code, out, _ = run(capsys, "dlq", "list", "--db", str(db), "--json", *extra)
    assert code == 0
    return list(json.loads(out))


def test_poison_events_are_listed_filtered_redriven_after_the_fix_exactly_once(
        rt: Runtime, db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    poison = removal("Z", 2)
    ghost = workflow_triggered("late")
    rt.ingest([poison, ghost])
    rt.run_until_idle()

    letters = dlq_json(capsys, db)
    by_consumer = {d["consumer"]: d for d in letters}
    assert by_consumer["inventory"]["event_id"] == poison.id
    assert "only 0 available" in by_consumer["inventory"]["reason"]
    assert by_consumer["inventory"]["attempts"] == 1  # permanent: never retried
    assert by_consumer["orders"]["event_id"] == ghost.id
    assert by_consumer["orders"]["attempts"] == 3 and "maxDeliveries=3" in \
        by_consumer["orders"]["reason"]
    # Filters: by consumer, type, reason (any case), event id; a table by default.
    assert [d["event_id"] for d in dlq_json(capsys, db, "--consumer", "inventory")] == [poison.id]
    assert [d["event_id"] for d in dlq_json(capsys, db, "--type", WORKFLOW_TRIGGERED)] == [
        ghost.id]
    assert [d["event_id"] for d in dlq_json(capsys, db, "--reason", "ONLY 0")] == [poison.id]
    code, out, _ = run(capsys, "dlq", "show", ghost.id, "--db", str(db))
    [shown] = json.loads(out)
    assert shown["event"]["data"]["order_id"] == "late" and code == 0
    code, out, _ = run(capsys, "dlq", "list", "--db", str(db))
    assert "2 dead-lettered" in out and "only 0 available" in out
    code, _, err = run(capsys, "dlq", "list", "--db", str(db), "--consumer", "nobody")
    assert code == 2 and "unknown consumer 'nobody'" in err

    code, out, err = run(capsys, "status", "--db", str(db))
    assert code == EXIT_DEAD_LETTERS and "2 dead letters" in err
    assert "cannot remove 2 of item 'Z'" in out

    # Dry run changes nothing.
    code, out, _ = run(capsys, "dlq", "redrive", "--db", str(db), "--dry-run")
    assert "would redrive 2 entries" in out
    assert len(dlq_json(capsys, db)) == 2

    # The fixes: stock arrives, the order arrives. Then redrive only the inventory one.
    rt.ingest([restock("Z", 5), order_created("late", [("Q", 1, 1.0)])])
    rt.run_until_idle()
    code, out, _ = run(capsys, "dlq", "redrive", "--db", str(db), "--reason", "available")
    assert code == 0 and "redriven 1 entry" in out
    rt.run_until_idle()
    assert rt.available("Z") == 3
    assert [d["consumer"] for d in dlq_json(capsys, db)] == ["orders"]
    code, out, _ = run(capsys, "dlq", "redrive", "--db", str(db))
    assert "redriven 1 entry" in out
    rt.run_until_idle()
    assert dlq_json(capsys, db) == []
    # Redriving again redrives nothing; each event was handled once after its fix.
    assert "redriven 0 entries" in run(capsys, "dlq", "redrive", "--db", str(db))[1]
    outcomes = [(r["event_id"], r["outcome"]) for r in rt.timeline()
                if r["event_id"] in (poison.id, ghost.id)]
    assert outcomes.count((poison.id, "processed")) == 1
    assert [o for e, o in outcomes if e == ghost.id].count("dead-lettered") == 1
    assert run(capsys, "status", "--db", str(db))[0] == 0


def _state(rt: Runtime) -> dict[str, Any]:
    return {"orders": rt.orders(), "inventory": rt.store.scan("inventory"),
            "payments": rt.store.scan("payments"), "counts": {
                k: v for k, v in rt.counts().items() if k != "queued"}}


def test_replay_of_processed_events_changes_nothing(
        rt: Runtime, db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rt.ingest([restock("R", 4), order_created("r1", [("R", 3, 2.0)]),
               order_created("r2", [("R", 3, 2.0)])])  # r2: out of stock, refunded
    rt.run_until_idle()
    before = _state(rt)
    assert {o["order_id"]: o["status"] for o in before["orders"]} == {
        "r1": "completed", "r2": "cancelled"}

    code, out, _ = run(capsys, "replay", "--db", str(db), "--from", "1h", "--dry-run")
    assert code == 0 and out.startswith("would replay")
    assert rt.counts()["queued"] == 0
    code, out, _ = run(capsys, "replay", "--db", str(db), "--from", "1h", "--json")
    result = json.loads(out)
    assert result["details"]["deliveries"] > 3  # the emitted events were on the bus too
    rows_before = len(rt.timeline())
    rt.run_until_idle()
    assert _state(rt) == before
    replayed = rt.timeline()[rows_before:]
    assert replayed and {r["outcome"] for r in replayed} <= {"duplicate", "ignored"}


def test_replay_selects_by_type_and_window(rt: Runtime, db: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    rt.ingest([restock("W", 1)])
    rt.run_until_idle()
    code, out, _ = run(capsys, "replay", "--db", str(db), "--from", "1h", "--type",
                       WORKFLOW_TRIGGERED, "--json")
    assert json.loads(out)["replayed"] == 0
    code, out, _ = run(capsys, "replay", "--db", str(db), "--from", "1h", "--to",
                       "2099-01-01T00:00:00Z", "--type", INVENTORY_UPDATED, "--json")
    assert json.loads(out)["replayed"] == 1
    code, _, err = run(capsys, "replay", "--db", str(db), "--from", "yesterday")
    assert code == 2 and "not a time: 'yesterday'" in err
    code, _, err = run(capsys, "replay", "--db", str(db), "--from", "1h", "--type", "x.y")
    assert code == 2 and "unknown event type(s): x.y" in err


def test_discard_and_purge_give_up_on_known_poison_with_a_record(
        rt: Runtime, db: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGNAME", "ops-oncall")  # what getpass.getuser() reads first
    poison, other, ghost = removal("Z", 2), removal("Y", 1), workflow_triggered("never")
    rt.ingest([poison, other, ghost])
    rt.run_until_idle()
    assert run(capsys, "status", "--db", str(db))[0] == EXIT_DEAD_LETTERS

    # Dry run: says what, changes nothing.
    code, out, _ = run(capsys, "dlq", "discard", poison.id, "--db", str(db), "--dry-run")
    assert code == 0 and f"would discard 1 dead letter: ['inventory/{poison.id}']" in out
    assert len(dlq_json(capsys, db)) == 3

    # Discard by id; an id that is not dead-lettered is named, exit 1, the rest is done.
    code, out, err = run(capsys, "dlq", "discard", poison.id, "nope", "--db", str(db))
    assert code == 1 and "discarded 1 dead letter" in out
    assert "(by ops-oncall)" in out and "dlq_discarded" in out
    assert "no dead letter with event id 'nope'" in err
    assert sorted(d["event_id"] for d in dlq_json(capsys, db)) == sorted([other.id, ghost.id])
    [record] = rt.discarded()
    assert (record["event_id"], record["consumer"], record["discarded_by"]) == (
        poison.id, "inventory", "ops-oncall")
    assert "only 0 available" in record["reason"] and record["attempts"] == 1
    assert record["event"]["data"]["item_id"] == "Z" and record["discarded_at"] > 0
    # A discarded letter is gone for redrive too.
    assert "redriven 0 entries" in run(capsys, "dlq", "redrive", "--db", str(db), "--id",
                                       poison.id)[1]

    # Purge by filter; without a filter it wants --all.
    code, out, _ = run(capsys, "dlq", "purge", "--db", str(db), "--consumer", "inventory",
                       "--json")
    result = json.loads(out)
    assert code == 0 and [d["event_id"] for d in result["discarded"]] == [other.id]
    assert result["discarded_by"] == "ops-oncall"
    assert run(capsys, "dlq", "purge", "--db", str(db))[0] == 2
    code, _, err = run(capsys, "status", "--db", str(db))
    assert code == EXIT_DEAD_LETTERS and "1 dead letter:" in err
    code, out, _ = run(capsys, "dlq", "purge", "--all", "--db", str(db))
    assert code == 0 and "discarded 1 dead letter" in out
    assert run(capsys, "status", "--db", str(db))[0] == 0
    assert [r["event_id"] for r in rt.discarded()] == [poison.id, other.id, ghost.id]
    # The timeline says so too, under each event.
    assert {r["event_id"] for r in rt.timeline() if r["outcome"] == "discarded"} == {
        poison.id, other.id, ghost.id}


def test_discard_also_writes_an_audit_file_when_asked(
        rt: Runtime, db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    poison = removal("Z", 2)
    rt.ingest([poison])
    rt.run_until_idle()
    audit = tmp_path / "audit.jsonl"
    code, out, _ = run(capsys, "dlq", "discard", poison.id, "--db", str(db), "--audit-log",
                       str(audit))
    assert code == 0 and str(audit) in out
    [line] = [json.loads(x) for x in audit.read_text().splitlines()]
    assert line["event_id"] == poison.id and line["outcome"] == "discarded"
    assert line["stack"] == "local" and line["discarded_by"]


def test_a_replay_does_not_dead_letter_known_poison_again(
        rt: Runtime, db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    poisons = [removal(f"P{n}", 1) for n in range(3)]
    rt.ingest([*poisons, restock("OK", 1)])
    rt.run_until_idle()
    assert len(dlq_json(capsys, db)) == 3

    code, out, _ = run(capsys, "replay", "--db", str(db), "--from", "1h", "--dry-run")
    assert code == 0 and "3 deliveries are of events already dead-lettered" in out
    # A running server processes the replay while the command waits for it.
    rt.start(2)
    try:
        code, out, _ = run(capsys, "replay", "--db", str(db), "--from", "1h", "--wait", "30")
    finally:
        rt.stop()
    assert code == 0, out
    assert ("3 replayed events failed again with their recorded reason; already "
            "dead-lettered") in out
    assert "0 replayed events newly dead-lettered" in out
    letters = dlq_json(capsys, db)
    assert sorted(d["event_id"] for d in letters) == sorted(p.id for p in poisons)
    again = [r for r in rt.timeline() if r["outcome"] == "already-dead-lettered"]
    assert sorted(r["event_id"] for r in again) == sorted(p.id for p in poisons)
    assert all("only 0 available" in r["detail"] for r in again)

    # After a redrive, a failure is a new dead letter again (the old one is closed).
    run(capsys, "dlq", "redrive", "--db", str(db), "--id", poisons[0].id)
    rt.run_until_idle()
    assert [d["event_id"] for d in dlq_json(capsys, db)].count(poisons[0].id) == 1
    assert len(dlq_json(capsys, db)) == 3
