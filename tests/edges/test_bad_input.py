"""Bad input at every edge: each adapter entry point gets the
malformed inputs (missing or wrong attributes, bad JSON, bad base64, a payload one byte
over its transport's limit, plus garbage, wrong content types, huge headers) and must
answer with an error that names the problem, and have no effect: nothing stored, nothing
published, nothing started; a queue delivery is dead-lettered at once with the reason and
not reported for retry.

Edges: the local runtime's HTTP ingress (a real socket), the Lambda SQS batch, direct
EventBridge, API Gateway and Step Functions task entries (moto), and the Cloud Functions
push, Eventarc, ingest and Workflows step entries (in-memory ports; the emulators add
nothing to what is checked here).
"""

from __future__ import annotations

import base64
import http.client
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from adapters.aws import lambda_entry
from adapters.aws.eventbridge_limits import MAX_DELIVERABLE_BYTES
from adapters.aws.runtime import AwsRuntime, reset_runtime, runtime
from adapters.aws.settings import Settings as AwsSettings
from adapters.aws.topology import TableSpec
from adapters.gcp import pubsub_binding as pb
from adapters.gcp.entry import REASON_ATTRIBUTE, Runtime, process_ingest, process_push, process_step
from adapters.gcp.pubsub_binding import PubSubMessage
from adapters.gcp.settings import Settings as GcpSettings
from adapters.local.http_server import make_server
from adapters.local.runtime import MAX_EVENT_BYTES
from adapters.local.runtime import Runtime as LocalRuntime
from adapters.memory import MemoryPublisher, memory_ports
from handlers.app import APP
from handlers.core import jsonformat
from handlers.core.events import ensure_traceparent
from tests.edges.cases import EVENTS, GARBAGE, GOOD, Bad

STRUCTURED = "application/cloudevents+json"


def ids(cases: list[Bad]) -> list[str]:
    return [c.name for c in cases]


def assert_names(text: str, words: tuple[str, ...]) -> None:
    for word in words:
        assert word in text, f"{word!r} not named in: {text}"


def padded(size: int, measure: Any) -> dict[str, Any]:
    """A structured event whose size, as `measure` counts it, is exactly `size`."""
    def make(pad: int) -> dict[str, Any]:
        return {**GOOD, "id": "edge-big", "data": {**GOOD["data"], "pad": "x" * pad}}
    pad = size - measure(make(0))
    event = make(pad)
    assert measure(event) == size
    return event


# --- local runtime: HTTP ingress over a real socket ------------------------------------

@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalRuntime, int]]:
    rt = LocalRuntime(tmp_path_factory.mktemp("edges") / "edges.db")
    server = make_server(rt, port=0, threads=2)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield rt, server.effective_port
    server.close()
    thread.join(10)
    rt.close()


def post(port: int, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        try:
            conn.request("POST", "/events", body=body, headers=headers)
        except (BrokenPipeError, ConnectionResetError):
            # The server may answer (431, 413) and close before the body is sent, as
            # HTTP allows; its answer is still there to read.
            pass
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def _local_size(event: dict[str, Any]) -> int:
    # What the bus stores: the event with the traceparent the ingress starts.
    return len(jsonformat.dumps(ensure_traceparent(jsonformat.from_dict(event))).encode())


LOCAL_EXTRA = [
    # Without a CloudEvents marker the body must be declared JSON: the shared ingress
    # policy refuses anything else (400, naming what was sent), which is also the local
    # server's defence against cross-site posts (forms, text/plain, no type).
    (Bad("wrong content type", raw=b"hello", words=("'text/plain'",)),
     {"content-type": "text/plain"}, 400),
    (Bad("no content type", raw=b"hello", words=("no Content-Type",)), {}, 400),
    (Bad("garbage as JSON", raw=GARBAGE, words=("not valid JSON",)),
     {"content-type": "application/json"}, 400),
    (Bad("JSON that is no event", raw=b'{"hello": 1}', words=("not an event", "'Entries'")),
     {"content-type": "application/json"}, 400),
    (Bad("garbage as octet-stream", raw=GARBAGE, words=("'application/octet-stream'",)),
     {"content-type": "application/octet-stream"}, 400),
    (Bad("64 KiB header", json.dumps(GOOD).encode() and GOOD,
         words=("header",)), {"content-type": STRUCTURED, "x-huge": "h" * 65536}, 431),
]


@pytest.mark.parametrize("case", EVENTS, ids=ids(EVENTS))
def test_local_http_refuses_malformed_events(local: tuple[LocalRuntime, int],
                                             case: Bad) -> None:
    rt, port = local
    status, text = post(port, case.body(), {"content-type": STRUCTURED})
    assert status == 400, text
    assert_names(text, case.words)
    assert rt.counts()["events"] == 0 and rt.counts()["queued"] == 0


@pytest.mark.parametrize(("case", "headers", "status"), LOCAL_EXTRA,
                         ids=[c.name for c, _, _ in LOCAL_EXTRA])
def test_local_http_refuses_wrong_content_types_garbage_and_huge_headers(
        local: tuple[LocalRuntime, int], case: Bad, headers: dict[str, str],
        status: int) -> None:
    rt, port = local
    got, text = post(port, case.body(), headers)
    assert got == status, text
    assert_names(text, case.words)
    assert rt.counts()["events"] == 0


def test_local_http_one_byte_over_the_event_limit_is_413(
        local: tuple[LocalRuntime, int]) -> None:
    rt, port = local
    over = padded(MAX_EVENT_BYTES + 1, _local_size)
    status, text = post(port, json.dumps(over).encode(), {"content-type": STRUCTURED})
    assert status == 413, text
    assert_names(text, (f"{MAX_EVENT_BYTES + 1} bytes", str(MAX_EVENT_BYTES)))
    assert rt.counts()["events"] == 0


# --- AWS: SQS batch, direct EventBridge, API Gateway, Step Functions task ---------------

TABLES = {t: f"t-{t}" for t in APP.tables}


@pytest.fixture(scope="module")
def aws_dlq(aws_module: None) -> str:
    ddb = boto3.client("dynamodb")
    for logical, physical in TABLES.items():
        ddb.create_table(**TableSpec(logical).create_table_kwargs(physical))
    return str(boto3.client("sqs").create_queue(QueueName="inventory-dlq")["QueueUrl"])


@pytest.fixture
def lam(aws_dlq: str) -> Iterator[dict[str, Any]]:
    sqs, dlq = boto3.client("sqs"), aws_dlq
    settings = AwsSettings(consumer="inventory", tables=TABLES, dlq_url=dlq, bus_name="bus")
    reset_runtime(AwsRuntime(settings, APP))
    published = MemoryPublisher()
    runtime().ports.publisher = published
    sagas: list[str] = []
    runtime().ports.sagas = type("NoSagas", (), {
        "start": lambda self, saga_id, *a: sagas.append(saga_id) or True})()
    made = {"dlq": dlq, "sqs": sqs, "published": published, "sagas": sagas}
    _dead_letters(made)  # whatever an earlier test left (each test checks its own letters)
    yield made
    reset_runtime(None)


def _no_effect(lam: dict[str, Any]) -> None:
    store = runtime().store
    assert store.get("inventory", "EDGE") is None
    for table in TABLES.values():
        assert boto3.client("dynamodb").scan(TableName=table)["Count"] == 0, table
    assert lam["published"].published == [] and lam["sagas"] == []


def _dead_letters(lam: dict[str, Any]) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    while True:
        messages = lam["sqs"].receive_message(QueueUrl=lam["dlq"], MaxNumberOfMessages=10,
                                              MessageAttributeNames=["All"]).get("Messages", [])
        if not messages:
            return got
        got.extend(messages)
        for m in messages:
            lam["sqs"].delete_message(QueueUrl=lam["dlq"], ReceiptHandle=m["ReceiptHandle"])


def delivered(**changes: Any) -> dict[str, Any]:
    """An event as EventBridge delivers it, carrying GOOD in our envelope."""
    metadata = {k: v for k, v in GOOD.items() if k not in ("source", "data")}
    event = {"version": "0", "id": "eb-1", "detail-type": "Inventory Updated",
             "source": "inventory", "account": "123456789012", "time": "2026-01-01T00:00:00Z",
             "region": "us-east-1", "resources": [],
             "detail": {"metadata": metadata, "data": GOOD["data"]}}
    for key, value in changes.items():
        if value is None:
            event.pop(key.replace("_", "-"))
        else:
            event[key.replace("_", "-")] = value
    return event


EB_CASES: list[tuple[str, Any, tuple[str, ...]]] = [
    ("missing id", delivered(id=None), ("id",)),
    ("missing source", delivered(source=None), ("source",)),
    ("missing detail-type", delivered(detail_type=None), ("detail-type",)),
    ("missing detail", delivered(detail=None), ("detail",)),
    ("wrong specversion", delivered(detail={"metadata": {**GOOD, "specversion": "0.3"},
                                            "data": {}}), ("specversion", "'0.3'")),
    ("not an object", ["garbage"], ("JSON object",)),
]
SQS_BODIES: list[tuple[str, str, tuple[str, ...]]] = [
    *[(name, json.dumps(evt), words) for name, evt, words in EB_CASES],
    ("bad JSON", '{"id": "x", ', ("not valid JSON",)),
    ("garbage", GARBAGE.decode("latin-1"), ("not valid JSON",)),
]


def sqs_record(n: int, body: str) -> dict[str, Any]:
    return {"messageId": f"m-{n}", "receiptHandle": f"rh-{n}", "body": body,
            "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
            "eventSource": "aws:sqs"}


def test_sqs_batch_dead_letters_every_malformed_record_at_once(lam: dict[str, Any]) -> None:
    records = [sqs_record(n, body) for n, (_, body, _) in enumerate(SQS_BODIES)]
    answer = lambda_entry.sqs_handler({"Records": records})
    assert answer == {"batchItemFailures": []}  # none retried: each dead-lettered now
    letters = {m["MessageAttributes"]["source_message_id"]["StringValue"]: m
               for m in _dead_letters(lam)}
    assert sorted(letters) == sorted(r["messageId"] for r in records)
    for n, (name, body, words) in enumerate(SQS_BODIES):
        letter = letters[f"m-{n}"]
        assert letter["Body"] == body, name  # the original, for redrive after a fix
        assert_names(letter["MessageAttributes"]["reason"]["StringValue"], words)
    _no_effect(lam)


# Lambda hands a direct invocation a JSON object, so the non-object case is SQS's only.
DIRECT_CASES = [c for c in EB_CASES if isinstance(c[1], dict)]


@pytest.mark.parametrize(("name", "event", "words"), DIRECT_CASES,
                         ids=[c[0] for c in DIRECT_CASES])
def test_direct_eventbridge_dead_letters_malformed_events(
        lam: dict[str, Any], name: str, event: Any, words: tuple[str, ...]) -> None:
    answer = lambda_entry.eventbridge_handler(event)
    assert answer["status"] == "dead-lettered"
    assert_names(answer["reason"], words)
    [letter] = _dead_letters(lam)
    assert_names(letter["MessageAttributes"]["reason"]["StringValue"], words)
    _no_effect(lam)


def _api(body: bytes, content_type: str = STRUCTURED, b64: bool = False,
         raw_body: str | None = None) -> dict[str, Any]:
    return lambda_entry.api_handler({
        "headers": {"Content-Type": content_type}, "isBase64Encoded": b64,
        "body": raw_body if raw_body is not None else
        (base64.b64encode(body).decode() if b64 else body.decode("latin-1"))})


API_EXTRA = [
    ("wrong content type", b"hello", "text/plain", ("not an event",)),
    ("garbage octet-stream", GARBAGE, "application/octet-stream", ("not an event",)),
]


@pytest.mark.parametrize("case", EVENTS, ids=ids(EVENTS))
def test_api_gateway_refuses_malformed_events(lam: dict[str, Any], case: Bad) -> None:
    # API Gateway passes a binary body base64-encoded, which is how garbage arrives.
    answer = _api(case.body(), b64=True)
    assert answer["statusCode"] == 400, answer
    assert_names(answer["body"], case.words)
    _no_effect(lam)


@pytest.mark.parametrize(("name", "body", "content_type", "words"), API_EXTRA,
                         ids=[c[0] for c in API_EXTRA])
def test_api_gateway_refuses_wrong_content_types(lam: dict[str, Any], name: str, body: bytes,
                                                 content_type: str,
                                                 words: tuple[str, ...]) -> None:
    answer = _api(body, content_type, b64=True)
    assert answer["statusCode"] == 400, answer
    assert_names(answer["body"], words)
    _no_effect(lam)


def test_api_gateway_refuses_a_body_that_is_not_base64(lam: dict[str, Any]) -> None:
    answer = _api(b"", b64=True, raw_body="%%% not base64 %%%")
    assert answer["statusCode"] == 400, answer
    assert_names(answer["body"], ("base64",))
    _no_effect(lam)


def test_api_gateway_one_byte_over_the_entry_limit_is_413(lam: dict[str, Any]) -> None:
    # The real publisher measures the entry; it refuses before calling PutEvents.
    from adapters.aws.eventbridge_limits import entry_size
    from adapters.aws.eventbridge_publisher import EventBridgePublisher
    from handlers.core.eventbridge_binding import to_put_events_entry

    class NoCalls:
        def put_events(self, **_: Any) -> Any:
            raise AssertionError("nothing may be sent")

    runtime().ports.publisher = EventBridgePublisher(NoCalls(), "bus", APP.catalog)
    over = padded(MAX_DELIVERABLE_BYTES + 1, lambda e: entry_size(to_put_events_entry(
        ensure_traceparent(jsonformat.from_dict(e)), APP.catalog, "bus")))
    answer = _api(json.dumps(over).encode())
    assert answer["statusCode"] == 413, answer
    assert_names(answer["body"], (f"{MAX_DELIVERABLE_BYTES + 1} bytes",
                                  str(MAX_DELIVERABLE_BYTES)))


STEP_CASES: list[tuple[str, Any, tuple[str, ...]]] = [
    ("empty", {}, ("'step'", "'phase'", "'state'")),
    ("missing state", {"step": "payment", "phase": "action"}, ("'state'",)),
    ("bad phase", {"step": "payment", "phase": "sideways",
                   "state": {"saga_id": "s-1", "input": {}}}, ("'phase'", "'compensate'")),
    ("state without saga_id", {"step": "payment", "phase": "action", "state": {}},
     ("'saga_id'",)),
    ("state not an object", {"step": "payment", "phase": "action", "state": "garbage"},
     ("'state'",)),
    ("unknown step", {"step": "teleport", "phase": "action",
                      "state": {"saga_id": "s-1", "input": {}}}, ("teleport",)),
]


@pytest.mark.parametrize(("name", "event", "words"), STEP_CASES, ids=[c[0] for c in STEP_CASES])
def test_step_functions_task_refuses_malformed_input_permanently(
        lam: dict[str, Any], name: str, event: Any, words: tuple[str, ...]) -> None:
    # PermanentStepError is the error type the compiled ASL never retries.
    with pytest.raises(lambda_entry.PermanentStepError) as caught:
        lambda_entry.step_handler(event)
    assert_names(str(caught.value), words)
    _no_effect(lam)


# --- GCP: push, Eventarc, ingest and Workflows step entries ----------------------------

class DeadLetters:
    def __init__(self) -> None:
        self.letters: list[PubSubMessage] = []

    def publish_messages(self, messages: list[PubSubMessage]) -> None:
        self.letters.extend(messages)


@pytest.fixture
def gcf() -> Runtime:
    return Runtime(APP, GcpSettings(project="p", consumer="inventory"), memory_ports(),
                   DeadLetters(), bus=MemoryPublisher())


def _gcp_no_effect(rt: Runtime) -> None:
    assert rt.ports.store.items("inventory") == {}  # type: ignore[attr-defined]
    assert rt.ports.store.items("processed") == {}  # type: ignore[attr-defined]
    assert rt.ports.publisher.published == []  # type: ignore[attr-defined]
    assert rt.ports.sagas.started == {}  # type: ignore[attr-defined]
    assert rt.bus.published == []


def _attrs(**changes: str | None) -> dict[str, str]:
    attrs = {"ce-specversion": "1.0", "ce-id": "edge-1", "ce-source": "inventory",
             "ce-type": GOOD["type"], "content-type": "application/json"}
    for key, value in changes.items():
        name = "ce-" + key
        if value is None:
            attrs.pop(name)
        else:
            attrs[name] = value
    return attrs


def _envelope(attrs: dict[str, str], data: str) -> dict[str, Any]:
    return {"message": {"attributes": attrs, "data": data, "messageId": "m-1"},
            "subscription": "projects/p/subscriptions/s"}


DATA = base64.b64encode(json.dumps(GOOD["data"]).encode()).decode()
PUSH_CASES: list[tuple[str, bytes, tuple[str, ...]]] = [
    *[(f"binary, {key}", json.dumps(_envelope(_attrs(**{key: None}), DATA)).encode(),
       (f"'{key}'",)) for key in ("id", "source", "type", "specversion")],
    ("binary, wrong specversion", json.dumps(_envelope(_attrs(specversion="0.3"), DATA))
     .encode(), ("specversion", "'0.3'")),
    ("bad base64", json.dumps(_envelope(_attrs(), "!!! not base64 !!!")).encode(),
     ("base64",)),
    *[(f"structured, {c.name}", json.dumps(_envelope(
        {"content-type": STRUCTURED}, base64.b64encode(c.body()).decode())).encode(), c.words)
      for c in EVENTS],
    ("bad JSON envelope", b'{"message": ', ("not valid JSON",)),
    ("garbage envelope", GARBAGE, ("not valid JSON",)),
    ("no message", b'{"subscription": "s"}', ("'message'",)),
]


@pytest.mark.parametrize(("name", "body", "words"), PUSH_CASES, ids=[c[0] for c in PUSH_CASES])
def test_pubsub_push_dead_letters_malformed_messages_at_once(
        gcf: Runtime, name: str, body: bytes, words: tuple[str, ...]) -> None:
    status = process_push(gcf, {"content-type": "application/json"}, body)
    assert status == ("", 204)  # acked: Pub/Sub must not redeliver it
    [letter] = gcf.dead_letters.letters
    assert_names(letter.attributes[REASON_ATTRIBUTE], words)
    _gcp_no_effect(gcf)


EVENTARC_HEADERS = {"content-type": "application/json", "ce-specversion": "1.0",
                    "ce-id": "arc-1", "ce-source": "//pubsub.googleapis.com/projects/p/topics/t",
                    "ce-type": pb.MESSAGE_PUBLISHED}


@pytest.mark.parametrize(("name", "body", "words"),
                         [c for c in PUSH_CASES if not c[0].endswith("envelope")],
                         ids=[c[0] for c in PUSH_CASES if not c[0].endswith("envelope")])
def test_eventarc_dead_letters_malformed_messages_at_once(
        gcf: Runtime, name: str, body: bytes, words: tuple[str, ...]) -> None:
    status = process_push(gcf, EVENTARC_HEADERS, body)
    assert status == ("", 204)
    [letter] = gcf.dead_letters.letters
    assert_names(letter.attributes[REASON_ATTRIBUTE], words)
    _gcp_no_effect(gcf)


def test_eventarc_wrapper_missing_its_own_attributes_is_dead_lettered(gcf: Runtime) -> None:
    headers = {k: v for k, v in EVENTARC_HEADERS.items() if k != "ce-id"}
    body = json.dumps(_envelope(_attrs(), DATA)).encode()
    assert process_push(gcf, headers, body) == ("", 204)
    [letter] = gcf.dead_letters.letters
    assert_names(letter.attributes[REASON_ATTRIBUTE], ("'id'",))
    _gcp_no_effect(gcf)


@pytest.mark.parametrize("case", EVENTS, ids=ids(EVENTS))
def test_gcp_ingest_refuses_malformed_events(gcf: Runtime, case: Bad) -> None:
    body, status, _ = process_ingest(gcf, "POST", "/events", {"content-type": STRUCTURED},
                                     case.body())
    assert status == 400, body
    assert_names(body, case.words)
    _gcp_no_effect(gcf)


def test_gcp_ingest_refuses_wrong_content_types(gcf: Runtime) -> None:
    body, status, _ = process_ingest(gcf, "POST", "/events", {"content-type": "text/plain"},
                                     b"hello")
    assert status == 400 and "not an event" in body
    _gcp_no_effect(gcf)


STEP_BODIES: list[tuple[str, bytes, tuple[str, ...]]] = [
    ("bad JSON", b'{"saga_id": ', ("not JSON",)),
    ("garbage", GARBAGE, ("not JSON",)),
    *[(name, json.dumps({"saga_id": "s-1", **event}).encode(), words)
      for name, event, words in STEP_CASES if name not in ("state without saga_id",)],
    ("missing saga_id", json.dumps({"step": "payment", "phase": "action",
                                    "state": {}}).encode(), ("'saga_id'",)),
]


@pytest.mark.parametrize(("name", "body", "words"), STEP_BODIES, ids=[c[0] for c in STEP_BODIES])
def test_workflows_step_endpoint_refuses_malformed_requests(
        gcf: Runtime, name: str, body: bytes, words: tuple[str, ...]) -> None:
    text, status, _ = process_step(gcf, body)
    assert status == 422, text  # the compiled workflow never retries a 422
    assert_names(text, words)
    _gcp_no_effect(gcf)


def test_the_tables_cover_every_malformed_input_and_limit_case() -> None:
    names = {c.name for c in EVENTS}
    assert {"missing id", "missing source", "missing type", "missing specversion",
            "wrong specversion", "bad JSON"} <= names
    assert any("base64" in c[0] for c in PUSH_CASES)
    assert Path(__file__).read_text().count("one_byte_over") >= 2
