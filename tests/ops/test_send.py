"""`switchyard send --stack S`: reading and checking the input, the answer and exit codes,
and what the command says when this machine cannot send (no SDK, no credentials).

The senders here are fakes (`FakeSender`): what the clouds' buses do with the events is
tested on moto (`tests/aws/test_send.py`) and the Pub/Sub emulator (`tests/gcp/test_send.py`).
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from adapters.stack_outputs import OUTPUT_NAME, OUTPUT_VERSION
from cli.main import main
from cli.ops import send
from cli.ops.send import NotSent, SendError, event_from_fields, events_from_body
from handlers.app import APP
from handlers.catalog import INVENTORY_UPDATED, ORDER_CREATED, WORKFLOW_TRIGGERED
from handlers.core.events import Event
from handlers.core.http_binding import to_batch, to_structured
from tests.factories import restock

CATALOG = APP.catalog
RESTOCK = '{"item_id": "A", "quantity": 5, "action": "restock"}'
SEED_ORDER = json.dumps({"order_id": "123", "customer_id": "456", "items": [
    {"item_id": "A", "quantity": 2, "price": 10.0}], "total": 20.0,
    "timestamp": "2024-01-01T00:00:00Z"})


def aws_outputs(path: Path) -> Path:
    path.write_text(json.dumps({OUTPUT_NAME: {
        "version": OUTPUT_VERSION, "cloud": "aws", "prefix": "sy",
        "busName": "sy-bus", "busArn": "arn:aws:events:eu-west-1:123456789012:event-bus/sy-bus",
        "archiveName": "sy-archive",
        "archiveArn": "arn:aws:events:eu-west-1:123456789012:archive/sy-archive",
        "consumers": {"inventory": {"queueUrl": "https://q/inventory",
                                    "dlqUrl": "https://q/inventory-dlq"}}}}))
    return path


def gcp_outputs(path: Path) -> Path:
    path.write_text(json.dumps({OUTPUT_NAME: {
        "version": OUTPUT_VERSION, "cloud": "gcp", "prefix": "sy", "project": "p",
        "busTopic": "sy-events", "replaySubscription": "sy-replay",
        "consumers": {"inventory": {"subscription": "sy-inventory",
                                    "deadLetterTopic": "sy-inventory-dlq",
                                    "deadLetterSubscription": "sy-inventory-dlq-pull"}}}}))
    return path


class FakeSender:
    """A bus that refuses the ids it is told to, with an error, and keeps the rest."""

    bus = "fake-bus"

    def __init__(self, refuse: dict[str, str] | None = None) -> None:
        self.refuse = refuse or {}
        self.sent: list[Event] = []

    def send(self, events: Sequence[Event]) -> list[NotSent]:
        self.sent.extend(e for e in events if e.id not in self.refuse)
        return [NotSent(e, self.refuse[e.id]) for e in events if e.id in self.refuse]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeSender:
    sender = FakeSender()
    monkeypatch.setattr(send, "connect", lambda outputs, catalog: sender)
    return sender


def run(capsys: pytest.CaptureFixture[str], outputs: Path, *argv: str) -> tuple[int, str, str]:
    code = main(["send", "--stack", "dev", "--outputs", str(outputs), *argv])
    out, err = capsys.readouterr()
    return code, out, err


# --- reading and checking ---------------------------------------------------------------


def test_type_and_data_make_one_event_with_the_catalog_source() -> None:
    event = event_from_fields(CATALOG, INVENTORY_UPDATED, RESTOCK, id_="r-1", subject="A")
    assert (event.id, event.source, event.type, event.subject) == (
        "r-1", "inventory", INVENTORY_UPDATED, "A")
    assert event.data == {"item_id": "A", "quantity": 5, "action": "restock"}
    assert event.time and event.datacontenttype == "application/json"


@pytest.mark.parametrize(("data", "kwargs", "expected"), [
    ("{not json", {}, "--data is not valid JSON: Expecting property name"),
    ('{"item_id": "A"}', {}, "quantity"),
    (RESTOCK, {"id_": ""}, "--id must not be empty"),
    (RESTOCK, {"source": ""}, "attribute 'source' must be a non-empty string"),
])
def test_a_bad_event_is_refused_naming_the_problem(data: str, kwargs: dict[str, Any],
                                                   expected: str) -> None:
    with pytest.raises(SendError) as caught:
        event_from_fields(CATALOG, INVENTORY_UPDATED, data, **kwargs)
    assert expected in caught.value.line()


def test_an_unknown_type_names_the_known_ones() -> None:
    with pytest.raises(SendError) as caught:
        event_from_fields(CATALOG, "com.example.nope", "{}")
    assert "unknown event type 'com.example.nope'" in caught.value.line()
    assert ORDER_CREATED in caught.value.line()


def test_a_file_may_be_an_event_a_batch_or_a_putevents_body() -> None:
    one, two = restock("A", 1), restock("B", 2)
    assert events_from_body(to_structured(one)[1], None, CATALOG) == [one]
    assert events_from_body(to_batch([one, two])[1], None, CATALOG) == [one, two]
    body = json.dumps({"Entries": [
        {"Source": "orders", "DetailType": "Order Created", "Detail": SEED_ORDER},
        {"Source": "workflow", "DetailType": "Workflow Triggered",
         "Detail": json.dumps({"workflow_id": "wf-1", "order_id": "123"}),
         "EventBusName": "someone-elses-bus"}]}).encode()
    events = events_from_body(body, None, CATALOG)
    assert [e.type for e in events] == [ORDER_CREATED, WORKFLOW_TRIGGERED]
    assert events[1].data == {"workflow_id": "wf-1", "order_id": "123"}
    # An explicit content type wins over the guess.
    assert events_from_body(to_structured(one)[1], "application/cloudevents+json",
                            CATALOG) == [one]


def test_every_problem_of_a_file_is_named_and_nothing_is_taken() -> None:
    body = json.dumps({"Entries": [
        {"Source": "inventory", "DetailType": "Inventory Updated", "Detail": RESTOCK},
        {"Source": "inventory", "DetailType": "Inventory Updated",
         "Detail": json.dumps({"item_id": "A", "quantity": -1, "action": "restock"})},
        {"Source": "nobody", "DetailType": "Nothing Happened", "Detail": "{}"},
        {"Source": "orders", "DetailType": "Order Created", "Detail": "{oops"}]}).encode()
    with pytest.raises(SendError) as caught:
        events_from_body(body, None, CATALOG, origin="--file f.json")
    line = caught.value.line()
    assert line.startswith("--file f.json cannot be sent (nothing was sent): ")
    assert "Entries[1]" in line and "quantity" in line
    assert "Entries[2]: unknown DetailType 'Nothing Happened'" in line
    assert "Entries[3].Detail is not valid JSON" in line
    assert "Entries[0]" not in line
    assert "\n" not in line


@pytest.mark.parametrize(("body", "expected"), [
    (b"", "is empty"),
    (b"  \n", "is empty"),
    (b"{oops", "is not valid JSON"),
    (b'{"hello": "world"}', "not an event"),
    (b'{"specversion": "1.0"}', "missing required attribute 'id'"),
    (b'{"specversion": "0.3", "id": "1", "source": "s", "type": "t"}',
     "unsupported specversion '0.3'"),
    (b'{"Entries": []}', "Entries is empty"),
])
def test_a_file_that_is_no_event_says_why(body: bytes, expected: str) -> None:
    with pytest.raises(SendError) as caught:
        events_from_body(body, None, CATALOG)
    assert expected in caught.value.line()


# --- the command ------------------------------------------------------------------------


def test_sent_events_are_printed_one_line_each_with_the_bus(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], fake: FakeSender) -> None:
    code, out, err = run(capsys, aws_outputs(tmp_path / "o.json"), "--type", INVENTORY_UPDATED,
                         "--data", RESTOCK, "--id", "r-1")
    assert (code, err) == (0, "")
    assert out == f"sent r-1 ({INVENTORY_UPDATED}) to fake-bus\n"
    [event] = fake.sent
    assert event.id == "r-1" and event.traceparent  # a trace starts here, as at the ingress


def test_json_answer_is_the_local_apis_with_the_bus(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], fake: FakeSender) -> None:
    batch = tmp_path / "batch.json"
    batch.write_bytes(to_batch([restock("A", 1), restock("B", 2)])[1])
    code, out, _ = run(capsys, aws_outputs(tmp_path / "o.json"), "--file", str(batch), "--json")
    assert code == 0
    ids = [e.id for e in fake.sent]
    assert json.loads(out) == {"accepted": 2, "ids": ids, "bus": "fake-bus"}


def test_stdin_is_read_with_a_dash(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   fake: FakeSender, monkeypatch: pytest.MonkeyPatch) -> None:
    event = restock("S", 3)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(to_structured(event)[1])))
    code, out, _ = run(capsys, gcp_outputs(tmp_path / "o.json"), "--file", "-")
    assert code == 0 and out.startswith(f"sent {event.id} ")
    assert [e.id for e in fake.sent] == [event.id]


def test_entries_the_bus_refuses_are_named_and_exit_1(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], fake: FakeSender) -> None:
    events = [restock("A", 1), restock("B", 2), restock("C", 3)]
    fake.refuse = {events[1].id: "AccessDeniedException: not allowed"}
    batch = tmp_path / "batch.json"
    batch.write_bytes(to_batch(events)[1])
    code, out, err = run(capsys, aws_outputs(tmp_path / "o.json"), "--file", str(batch),
                         "--json")
    assert code == 1
    assert json.loads(out) == {
        "accepted": 2, "ids": [events[0].id, events[2].id], "bus": "fake-bus",
        "failed": [{"id": events[1].id, "type": INVENTORY_UPDATED,
                    "error": "AccessDeniedException: not allowed"}]}
    assert err.splitlines() == [
        f"NOT sent {events[1].id} ({INVENTORY_UPDATED}): AccessDeniedException: not allowed",
        "switchyard send: 1 of 3 events not accepted by fake-bus; the others were sent"]


def test_bad_input_exits_2_before_the_outputs_are_even_read(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], fake: FakeSender) -> None:
    missing = tmp_path / "no-such-outputs.json"
    code, out, err = run(capsys, missing, "--type", INVENTORY_UPDATED, "--data", "{oops")
    assert (code, out) == (2, "")
    assert err.startswith("switchyard send: the event cannot be sent (nothing was sent): "
                          "--data is not valid JSON")
    assert len(err.splitlines()) == 1 and fake.sent == []


@pytest.mark.parametrize(("argv", "expected"), [
    ([], "give --file, or --type with --data"),
    (["--file", "x.json", "--type", INVENTORY_UPDATED], "either --file or --type"),
    (["--file", "/no/such/file.json"], "cannot read --file /no/such/file.json: No such file"),
])
def test_usage_mistakes_exit_2_with_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], fake: FakeSender,
        argv: list[str], expected: str) -> None:
    code, out, err = run(capsys, aws_outputs(tmp_path / "o.json"), *argv)
    assert (code, out) == (2, "")
    assert expected in err and len(err.splitlines()) == 1


def test_outputs_that_cannot_be_read_exit_2(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, tmp_path / "missing.json", "--type", INVENTORY_UPDATED,
                       "--data", RESTOCK)
    assert code == 2 and "cannot read --outputs" in err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({OUTPUT_NAME: {"version": OUTPUT_VERSION, "cloud": "azure"}}))
    code, _, err = run(capsys, bad, "--type", INVENTORY_UPDATED, "--data", RESTOCK)
    assert code == 2 and "cloud must be 'aws' or 'gcp'" in err


def test_a_size_limit_refusal_from_the_sender_exits_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    class TooBig(FakeSender):
        def send(self, events: Sequence[Event]) -> list[NotSent]:
            raise SendError("over 100 bytes; nothing was sent", ["event 'x' is 101 bytes"])

    monkeypatch.setattr(send, "connect", lambda outputs, catalog: TooBig())
    code, _, err = run(capsys, aws_outputs(tmp_path / "o.json"), "--type", INVENTORY_UPDATED,
                       "--data", RESTOCK)
    assert code == 2
    assert err == "switchyard send: over 100 bytes; nothing was sent: event 'x' is 101 bytes\n"


def test_an_unexpected_failure_is_one_line_not_a_traceback(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken(FakeSender):
        def send(self, events: Sequence[Event]) -> list[NotSent]:
            raise RuntimeError("the connection dropped\nmid-way")

    monkeypatch.setattr(send, "connect", lambda outputs, catalog: Broken())
    code, out, err = run(capsys, aws_outputs(tmp_path / "o.json"), "--type", INVENTORY_UPDATED,
                         "--data", RESTOCK)
    assert (code, out) == (1, "")
    assert err.startswith("switchyard send: RuntimeError: the connection dropped")
    assert "Traceback" not in err and len(err.splitlines()) == 1


def test_repeated_ids_are_accounted_per_event(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], fake: FakeSender) -> None:
    event = restock("R", 1)
    batch = tmp_path / "batch.json"
    batch.write_bytes(to_batch([event, event])[1])
    code, out, _ = run(capsys, aws_outputs(tmp_path / "o.json"), "--file", str(batch), "--json")
    assert code == 0 and json.loads(out)["ids"] == [event.id, event.id]


# --- what this machine lacks ------------------------------------------------------------


def test_no_aws_credentials_is_said_once(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance to ask here
    code, out, err = run(capsys, aws_outputs(tmp_path / "o.json"), "--type", INVENTORY_UPDATED,
                         "--data", RESTOCK)
    assert (code, out) == (1, "")
    assert err.startswith("switchyard send: no AWS credentials found")
    assert len(err.splitlines()) == 1


def test_a_missing_aws_profile_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    code, _, err = run(capsys, aws_outputs(tmp_path / "o.json"), "--type", INVENTORY_UPDATED,
                       "--data", RESTOCK)
    assert code == 1 and "no-such-profile" in err and len(err.splitlines()) == 1


def test_no_google_credentials_is_said_once(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PUBSUB_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "no-key.json"))
    code, out, err = run(capsys, gcp_outputs(tmp_path / "o.json"), "--type", INVENTORY_UPDATED,
                         "--data", RESTOCK)
    assert (code, out) == (1, "")
    assert err.startswith("switchyard send: no Google credentials found")
    assert len(err.splitlines()) == 1


def test_credentials_lost_while_sending_are_said_once(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.exceptions import NoCredentialsError

    from adapters.aws.eventbridge_publisher import EventBridgePublisher
    from cli.ops.aws_send import AwsSender

    class NoCredentials:
        calls = 0

        def put_events(self, **kwargs: Any) -> Any:
            NoCredentials.calls += 1
            raise NoCredentialsError()

    def connect(cls: type[AwsSender], outputs: Any, catalog: Any) -> AwsSender:
        sender = cls(outputs, catalog, NoCredentials())
        sender._publisher = EventBridgePublisher(NoCredentials(), outputs.bus_arn, catalog,
                                                 sleep=lambda s: None)
        return sender

    monkeypatch.setattr(AwsSender, "connect", classmethod(connect))
    code, out, err = run(capsys, aws_outputs(tmp_path / "o.json"), "--type", INVENTORY_UPDATED,
                         "--data", RESTOCK)
    assert (code, out) == (1, "")
    assert err.startswith("switchyard send: no AWS credentials found")
    assert len(err.splitlines()) == 1 and NoCredentials.calls >= 1


@pytest.mark.parametrize(("cloud", "module", "package"), [
    ("aws", "boto3", "boto3"), ("gcp", "google.cloud", "google-cloud-pubsub")])
def test_a_missing_sdk_says_what_to_install(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        cloud: str, module: str, package: str) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes `import` raise ImportError
    outputs = (aws_outputs if cloud == "aws" else gcp_outputs)(tmp_path / "o.json")
    code, _, err = run(capsys, outputs, "--type", INVENTORY_UPDATED, "--data", RESTOCK)
    assert code == 1
    assert f"the {cloud.upper()} SDK is not installed" in err
    assert f"pip install -e '.[{cloud}]'" in err and package in err
    assert len(err.splitlines()) == 1
