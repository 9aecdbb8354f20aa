"""`switchyard dlq|status|replay --stack S --outputs FILE` against the stack in moto.

The outputs file is the `switchyard` output as the stack exports it, built from the moto
resources (`tests/aws/moto_stack.py`, the same generators `infra/aws` deploys). Dead
letters are real: a permanent refusal and a poison trigger, dead-lettered by the Lambda
entry; redriven after the fault is removed and processed exactly once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.aws.stepfunctions_starter import saga_traceparent
from adapters.stack_outputs import OUTPUT_NAME, OUTPUT_VERSION
from cli.main import main
from cli.ops import aws as aws_ops
from cli.ops.commands import EXIT_DEAD_LETTERS, EXIT_FAILED
from handlers.app import APP
from handlers.catalog import INVENTORY_UPDATED, ORDER_COMPLETED
from handlers.core.eventbridge_binding import from_eventbridge_event
from handlers.core.observability import trace_id_of
from tests.aws.moto_stack import MotoStack
from tests.aws.test_end_to_end import order_entry, restock_entry, trigger_entry

STACK = "dev-aws"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def outputs_of(stack: MotoStack) -> dict[str, Any]:
    """What `pulumi stack output --json` prints for the stack (its `switchyard` part)."""
    archive = stack.client("events").describe_archive(ArchiveName=stack.names.archive())
    return {"busName": stack.names.bus(), OUTPUT_NAME: {
        "version": OUTPUT_VERSION, "cloud": "aws", "prefix": stack.names.prefix,
        "busName": stack.names.bus(), "busArn": stack.bus_arn,
        "archiveName": stack.names.archive(), "archiveArn": archive["ArchiveArn"],
        "stateMachineArn": stack.state_machine_arn,
        "consumers": {c: {"queueUrl": stack.queue_urls[c], "dlqUrl": stack.dlq_urls[c],
                          "ruleArn": stack.rule_arns[c], "targetDlqUrl": stack.dlq_urls[c]}
                      for c in stack.queue_urls}}}


@pytest.fixture
def stack(aws: None) -> Iterator[MotoStack]:
    stack = MotoStack.create(APP, max_deliveries=3)
    with stack.lambda_service():
        yield stack


@pytest.fixture
def outputs(stack: MotoStack, tmp_path: Path) -> Path:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(outputs_of(stack)))
    return path


def ops(capsys: pytest.CaptureFixture[str], outputs: Path, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()  # drop what the functions printed (their metric lines)
    code = main([*argv, "--stack", STACK, "--outputs", str(outputs)])
    out, err = capsys.readouterr()
    return code, out, err


def letters(capsys: pytest.CaptureFixture[str], outputs: Path, *extra: str
            ) -> list[dict[str, Any]]:
    code, out, _ = ops(capsys, outputs, "dlq", "list", "--json", *extra)
    assert code == 0
    return list(json.loads(out))


def removal_entry(item: str, quantity: int, event_id: str) -> dict[str, Any]:
    return {"Source": "inventory", "DetailType": "Inventory Updated", "Detail": json.dumps(
        {"metadata": {"event_id": event_id},
         "data": {"item_id": item, "quantity": quantity, "action": "remove"}})}


def test_dead_letters_listed_redriven_after_the_fix_exactly_once(
        stack: MotoStack, outputs: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    stack.put_events(removal_entry("Z", 2, "remove-z-1"), trigger_entry("late"))
    stack.run_until_quiet()

    found = {d["consumer"]: d for d in letters(capsys, outputs)}
    assert set(found) == {"inventory", "orders"}
    inventory, orders = found["inventory"], found["orders"]
    assert (inventory["event_id"], inventory["type"]) == ("remove-z-1", INVENTORY_UPDATED)
    assert "only 0 available" in inventory["reason"] and inventory["attempts"] == 1
    assert orders["event"]["data"]["order_id"] == "late"
    assert orders["attempts"] == 3 and "maxDeliveries=3" in orders["reason"]
    assert orders["location"] == stack.dlq_urls["orders"]
    # Listing leaves them where they were, visible at once.
    assert [d["event_id"] for d in letters(capsys, outputs, "--reason", "ONLY 0")] == [
        "remove-z-1"]
    assert [d["consumer"] for d in letters(capsys, outputs, "--consumer", "orders")] == [
        "orders"]
    code, out, err = ops(capsys, outputs, "status")
    assert code == EXIT_DEAD_LETTERS and "2 dead letters" in err
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:]}
    assert rows["inventory"][1:4] == ["0", "0", "1"] and rows["notifications"][3] == "0"

    code, out, _ = ops(capsys, outputs, "dlq", "redrive", "--dry-run")
    assert code == 0 and "would redrive 2 entries" in out
    assert len(letters(capsys, outputs)) == 2

    # The fix: the stock and the order arrive.
    stack.put_events(restock_entry("Z", 5), order_entry("late", [("Z", 1, 1.0)]))
    stack.run_until_quiet()
    assert stack.item("inventory", "Z")["available"] == 4  # type: ignore[index]

    # A redrive that dies between sending back and deleting from the DLQ...
    real_delete = aws_ops.AwsOps._delete
    monkeypatch.setattr(aws_ops.AwsOps, "_delete", _raise)
    code, out, err = ops(capsys, outputs, "dlq", "redrive", "--type", INVENTORY_UPDATED)
    assert code == EXIT_FAILED and "NOT redriven inventory/remove-z-1" in err
    monkeypatch.setattr(aws_ops.AwsOps, "_delete", real_delete)
    stack.run_until_quiet()
    assert stack.item("inventory", "Z")["available"] == 2  # type: ignore[index]
    # ...is simply redriven again: delivered twice, applied once.
    code, out, _ = ops(capsys, outputs, "dlq", "redrive")
    assert code == 0 and "redriven 2 entries" in out
    stack.run_until_quiet()
    assert stack.receives[("inventory", "remove-z-1")] == 3  # the dead letter + 2 redrives
    assert stack.item("inventory", "Z") == {"item_id": "Z", "available": 2, "reserved": 1}
    assert letters(capsys, outputs) == []
    assert ops(capsys, outputs, "status")[0] == 0
    assert "redriven 0 entries" in ops(capsys, outputs, "dlq", "redrive")[1]


def _raise(self: Any, url: str, message: Any) -> None:
    raise ConnectionError("lost the connection to SQS")


def test_eventbridge_target_dead_letters_are_read_and_redriven(
        stack: MotoStack, outputs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """What EventBridge puts in a target's DLQ when it cannot deliver (its documented
    message attributes). moto never fails a delivery to SQS, so the message is placed the
    way EventBridge places it: the event as the body, the error as attributes."""
    event = {"version": "0", "id": "eb-1", "detail-type": "Inventory Updated",
             "source": "inventory", "account": "123456789012", "time": "2026-01-01T00:00:00Z",
             "region": "us-east-1", "resources": [],
             "detail": {"item_id": "T", "quantity": 3, "action": "restock"}}
    attributes = {"ERROR_CODE": "SQS.AWS.SDK.Exception", "ERROR_MESSAGE": "Access denied",
                  "RETRY_ATTEMPTS": "24", "RULE_ARN": stack.rule_arns["inventory"],
                  "TARGET_ARN": stack.queue_arns["inventory"]}
    stack.client("sqs").send_message(
        QueueUrl=stack.dlq_urls["inventory"], MessageBody=json.dumps(event),
        MessageAttributes={k: {"DataType": "String", "StringValue": v}
                           for k, v in attributes.items()})
    [letter] = letters(capsys, outputs)
    assert letter["reason"] == ("EventBridge could not deliver to the queue: "
                                "SQS.AWS.SDK.Exception: Access denied")
    assert (letter["attempts"], letter["event_id"]) == (24, "eb-1")
    assert "redriven 1 entry" in ops(capsys, outputs, "dlq", "redrive")[1]
    stack.run_until_quiet()
    assert stack.item("inventory", "T") == {"item_id": "T", "available": 3}


def _state(stack: MotoStack) -> dict[str, Any]:
    return {table: sorted(json.dumps(i, sort_keys=True, default=str)
                          for i in stack.scan(table))
            for table in ("orders", "inventory", "payments")}


def test_replay_from_the_archive_changes_nothing(
        stack: MotoStack, outputs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """moto runs StartReplay: every archived event goes back through the rules at once
    (it ignores the time window and FilterArns; AWS honours both). Our events keep their
    CloudEvent id in the envelope, orders are keyed by order id, so nothing changes."""
    stack.put_events(restock_entry("P", 5, event_id="restock-p-1"),
                     order_entry("p1", [("P", 2, 3.0)]), order_entry("p2", [("P", 9, 1.0)]))
    stack.run_until_quiet()
    before = _state(stack)
    receives = sum(stack.receives.values())

    code, out, _ = ops(capsys, outputs, "replay", "--from", "1h", "--dry-run", "--json")
    assert code == 0
    request = json.loads(out)["details"]["request"]
    assert request["EventSourceArn"].endswith(f":archive/{stack.names.archive()}")
    assert request["Destination"] == {"Arn": stack.bus_arn}
    assert stack.client("events").list_replays()["Replays"] == []
    code, out, _ = ops(capsys, outputs, "replay", "--from", "1h", "--type", INVENTORY_UPDATED,
                       "--dry-run", "--json")
    assert json.loads(out)["details"]["request"]["Destination"]["FilterArns"] == [
        stack.rule_arns["inventory"]]

    code, out, _ = ops(capsys, outputs, "replay", "--from", "1h")
    assert code == 0 and out.strip().endswith("COMPLETED")
    stack.run_until_quiet()
    assert sum(stack.receives.values()) > receives  # the events really came back
    assert _state(stack) == before
    assert all(not stack.drain(url) for url in stack.dlq_urls.values())


def _emitted(stack: MotoStack, type_: str) -> list[Any]:
    return [e for e in (from_eventbridge_event(b, APP.catalog) for b in stack.observed()
                        if "detail-type" in b) if e.type == type_]


def test_trace_context_flows_through_the_state_machine(stack: MotoStack) -> None:
    """The trigger's traceparent is the execution's input and is on every event the saga
    steps emit; a trigger without one (a plain seed entry) gets one for its saga."""
    traced = order_entry("t1", [("Q", 1, 1.0)])
    traced["Detail"] = json.dumps({"metadata": {"trace_id": TRACEPARENT},
                                   "data": json.loads(traced["Detail"])})
    stack.put_events(restock_entry("Q", 2), traced, order_entry("t2", [("Q", 1, 1.0)]))
    stack.run_until_quiet()
    completed = {e.subject or e.data["order_id"]: e for e in _emitted(stack, ORDER_COMPLETED)}
    for order_id, expected in (("t1", TRACEPARENT), ("t2", saga_traceparent("order-t2"))):
        execution = stack.execution(f"order-{order_id}")
        assert json.loads(execution["input"])["traceparent"] == expected
        assert trace_id_of(completed[order_id].traceparent) == trace_id_of(expected)


def test_discard_and_purge_delete_from_the_dlq_after_recording_each_letter(
        stack: MotoStack, outputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGNAME", "ops-oncall")
    stack.put_events(removal_entry("D", 2, "remove-d-1"), removal_entry("E", 1, "remove-e-1"),
                     trigger_entry("never"))
    stack.run_until_quiet()
    assert len(letters(capsys, outputs)) == 3
    audit = tmp_path / "discards.jsonl"

    code, out, _ = ops(capsys, outputs, "dlq", "discard", "remove-d-1", "--dry-run",
                       "--audit-log", str(audit))
    assert code == 0 and "would discard 1 dead letter" in out and not audit.exists()
    assert len(letters(capsys, outputs)) == 3
    # No record, no delete: a full disk stops the discard before anything goes.
    code, _, err = ops(capsys, outputs, "dlq", "discard", "remove-d-1", "--audit-log",
                       "/dev/full")
    assert code == EXIT_FAILED and "cannot write the discard record to /dev/full" in err
    assert "nothing was discarded" in err and len(letters(capsys, outputs)) == 3

    # A delete that fails leaves the letter where it was and says so, in the record too.
    monkeypatch.setattr(aws_ops.AwsOps, "_delete", _raise)
    code, _, err = ops(capsys, outputs, "dlq", "discard", "remove-d-1", "--audit-log",
                       str(audit))
    assert code == EXIT_FAILED and "NOT discarded inventory/remove-d-1" in err
    monkeypatch.undo()
    monkeypatch.setenv("LOGNAME", "ops-oncall")
    assert [json.loads(x)["outcome"] for x in audit.read_text().splitlines()] == [
        "discarded", "failed"]
    assert len(letters(capsys, outputs)) == 3

    code, out, _ = ops(capsys, outputs, "dlq", "discard", "remove-d-1", "--audit-log",
                       str(audit))
    assert code == 0 and "discarded 1 dead letter" in out and str(audit) in out
    line = json.loads(audit.read_text().splitlines()[-1])
    assert (line["event_id"], line["consumer"], line["outcome"]) == (
        "remove-d-1", "inventory", "discarded")
    assert line["discarded_by"] == "ops-oncall" and line["stack"] == STACK
    assert "only 0 available" in line["reason"] and line["event"]["data"]["item_id"] == "D"
    assert line["location"] == stack.dlq_urls["inventory"]
    left = letters(capsys, outputs)
    assert sorted(d["consumer"] for d in left) == ["inventory", "orders"]
    assert "remove-d-1" not in {d["event_id"] for d in left}

    assert ops(capsys, outputs, "dlq", "purge")[0] == 2  # no filter: needs --all
    code, out, _ = ops(capsys, outputs, "dlq", "purge", "--consumer", "inventory",
                       "--audit-log", str(audit))
    assert code == 0 and "discarded 1 dead letter" in out
    code, _, err = ops(capsys, outputs, "status")
    assert code == EXIT_DEAD_LETTERS and "1 dead letter:" in err
    monkeypatch.chdir(tmp_path)  # the default audit file lands in the working directory
    code, out, _ = ops(capsys, outputs, "dlq", "purge", "--all")
    assert code == 0 and "discarded 1 dead letter" in out
    [default] = [json.loads(x) for x in
                 (tmp_path / "switchyard-discards.jsonl").read_text().splitlines()]
    assert default["consumer"] == "orders"
    assert letters(capsys, outputs) == []
    assert ops(capsys, outputs, "status")[0] == 0
    assert all(not stack.drain(url) for url in stack.dlq_urls.values())


def test_a_cloud_replay_warns_that_failures_are_dead_lettered_again(
        stack: MotoStack, outputs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = ops(capsys, outputs, "replay", "--from", "1h", "--dry-run")
    assert code == 0 and "are dead-lettered again" in err


def test_no_credentials_is_one_line(tmp_path: Path) -> None:
    """Without moto and without any credential source, botocore raises
    NoCredentialsError at the first call: the command says what to configure."""
    import os
    import subprocess
    import sys

    path = tmp_path / "outputs.json"
    queue = "https://sqs.us-east-1.amazonaws.com/123456789012/q"
    path.write_text(json.dumps({OUTPUT_NAME: {
        "version": OUTPUT_VERSION, "cloud": "aws", "prefix": "p", "region": "us-east-1",
        "busName": "b", "busArn": "arn:aws:events:us-east-1:123456789012:event-bus/b",
        "archiveName": "a", "archiveArn": "arn:aws:events:us-east-1:123456789012:archive/a",
        "consumers": {c: {"queueUrl": queue, "dlqUrl": queue}
                      for c in APP.consumer_names()}}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
               AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_EC2_METADATA_DISABLED="true",
               HOME=str(tmp_path))
    done = subprocess.run([sys.executable, "-m", "cli", "status", "--stack", "prod",
                           "--outputs", str(path)], capture_output=True, text=True,
                          env=env, cwd=Path(__file__).resolve().parents[2], timeout=120)
    assert done.returncode == EXIT_FAILED, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip() == ("switchyard status: no AWS credentials found: configure "
                                   "them (`aws configure`, AWS_PROFILE, or "
                                   "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)")
