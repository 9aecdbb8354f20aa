"""`switchyard events sample`: a valid sample of every catalog type, in both wire shapes."""

from __future__ import annotations

import io
import json
import sys
import threading
import urllib.request
from collections.abc import Iterator

import pytest

from adapters.contracts import samples
from adapters.local.http_server import decode_events, make_server
from adapters.local.runtime import Runtime, RuntimeSettings
from cli.main import main
from handlers.app import APP

TYPES = [spec.type for spec in APP.catalog]


@pytest.fixture(scope="module")
def ingress(tmp_path_factory) -> Iterator[tuple[str, Runtime]]:
    """The real local ingress over sockets (no workers: only acceptance is checked)."""
    runtime = Runtime(tmp_path_factory.mktemp("samples") / "s.db",
                      settings=RuntimeSettings(retry_scale=0.001))
    server = make_server(runtime, "127.0.0.1", 0)
    thread = threading.Thread(target=_run, args=(server,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.effective_port}", runtime
    server.close()
    runtime.close()


def _post(url: str, body: bytes, content_type: str) -> tuple[int, dict]:
    request = urllib.request.Request(url + "/events", body, {"Content-Type": content_type},
                                     method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.loads(response.read())


@pytest.mark.parametrize("type_", TYPES)
@pytest.mark.parametrize("fmt", samples.FORMATS)
def test_every_sample_passes_its_schema_and_the_ingress(type_: str, fmt: str, ingress,
                                                         capsys) -> None:
    url, runtime = ingress
    assert main(["events", "sample", type_, "--format", fmt]) == 0
    text = capsys.readouterr().out
    spec = APP.catalog[type_]
    content_type = "application/cloudevents+json" if fmt == "cloudevent" \
        else "application/json"
    [event] = decode_events({"content-type": content_type}, text.encode(), APP.catalog)
    assert event.type == type_ and event.source == spec.source
    assert spec.data_problems(event.data) == []
    status, reply = _post(url, text.encode(), content_type)
    assert status == 202 and reply["ids"] == [event.id]
    assert "warnings" not in reply, reply  # the ingress found nothing wrong with the data
    stored = runtime.db.read("SELECT type FROM events WHERE id = ?", (event.id,))
    assert stored and stored[0][0] == type_


def test_samples_are_deterministic() -> None:
    for spec in APP.catalog:
        first = json.dumps(samples.sample(APP.catalog, spec.type, "putevents"))
        assert first == json.dumps(samples.sample(APP.catalog, spec.type, "putevents"))


def test_an_order_sample_names_the_item_a_restock_sample_stocks() -> None:
    order = samples.sample_data(APP.catalog["com.switchyard.order.created"].schema)
    restock = samples.sample_data(APP.catalog["com.switchyard.inventory.updated"].schema)
    assert restock["action"] == "restock"
    assert order["items"][0]["item_id"] == restock["item_id"]
    assert order["total"] == order["items"][0]["price"] * order["items"][0]["quantity"] > 0


def test_detail_type_names_a_type_too(capsys) -> None:
    assert main(["events", "sample", "Order Created"]) == 0
    assert json.loads(capsys.readouterr().out)["type"] == "com.switchyard.order.created"


def test_list_names_every_type(capsys) -> None:
    assert main(["events", "sample", "--list"]) == 0
    out = capsys.readouterr().out
    assert all(t in out for t in TYPES) and len(out.strip().splitlines()) == len(TYPES)


@pytest.mark.parametrize("argv, message", [
    (["events", "sample", "com.example.nope"], "unknown event type 'com.example.nope'"),
    (["events", "sample"], "give an event TYPE, or --list"),
])
def test_bad_input_is_one_line_exit_2(argv: list[str], message: str, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_unknown_format_is_refused_by_the_parser(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["events", "sample", TYPES[0], "--format", "xml"])
    assert exit_.value.code == 2


def test_a_sample_pipes_into_send(ingress, capsys, monkeypatch) -> None:
    """`switchyard events sample T | switchyard send --file -`."""
    url, runtime = ingress
    assert main(["events", "sample", "Inventory Updated", "--format", "putevents"]) == 0
    body = capsys.readouterr().out
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(body.encode())))
    assert main(["send", "--url", url, "--file", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["accepted"] == 1


@pytest.mark.parametrize("schema, expected", [
    ({"type": "string", "format": "date-time"}, samples.SAMPLE_TIME),
    ({"type": "integer", "minimum": 3, "maximum": 10}, 3),
    ({"type": "integer", "exclusiveMinimum": 4}, 5),
    ({"type": "number", "minimum": 1}, 10.99),
    ({"type": ["null", "string"]}, "value-1"),
    ({"type": "string", "minLength": 12}, "value-1xxxxx"),
    ({"enum": ["b", "a"]}, "b"),
    ({"type": "string", "pattern": "^x", "examples": ["xy"]}, "xy"),
    ({"type": "array", "minItems": 2, "items": {"type": "boolean"}}, [True, True]),
])
def test_generator_keywords(schema: dict, expected: object) -> None:
    from handlers.core.schema import validate

    value = samples.sample_data(schema)
    assert value == expected and validate(schema, value) == []


@pytest.mark.parametrize("schema, problem", [
    ({"type": "string", "pattern": "^[A-Z]{3}$"}, "has a pattern and no `examples`"),
    ({"type": "integer", "minimum": 5, "maximum": 2}, "no integer between"),
    ({"type": "object", "required": ["a"], "properties": {}}, "required a has no schema"),
    ({"type": "string", "format": "ipv4"}, "unsupported format 'ipv4'"),
])
def test_what_cannot_be_generated_is_a_clear_error(schema: dict, problem: str) -> None:
    with pytest.raises(samples.SampleError, match=problem):
        samples.sample_data(schema)


def _run(server) -> None:  # type: ignore[no-untyped-def]
    try:
        server.run()
    except OSError:  # close() from the test's thread pulls the socket out from under select
        pass
