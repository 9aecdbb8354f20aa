"""`switchyard catalog export`: AsyncAPI 3.0 valid against the official schema, JSON Schema
files valid as draft 2020-12, the README's catalog current, the same bytes in every process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from jsonschema.validators import Draft202012Validator, validator_for

from adapters.aws.topology import Names
from adapters.contracts import export
from cli import catalog as catalog_cli
from cli.main import main
from handlers.app import APP
from handlers.core.app import App, Catalog, Consumer, EventType, Saga
from handlers.core.schema import validate

ROOT = Path(__file__).resolve().parents[2]
#: Installed by `make test` (or `make asyncapi-specs`) from the npm package @asyncapi/specs.
OFFICIAL = ROOT / "tests/asyncapi/node_modules/@asyncapi/specs/schemas/3.0.0.json"


def _noop(ctx: Any) -> None:
    return None


#: A second app description: two types, one consumer, nothing else.
TINY = App(
    name="tiny",
    catalog=Catalog([
        EventType("org.example.light.switched", "lights", "Light Switched",
                  {"type": "object", "required": ["room", "on"],
                   "properties": {"room": {"type": "string", "minLength": 1},
                                  "on": {"type": "boolean"}}},
                  "Someone flipped a switch."),
        EventType("org.example.bulb.failed", "lights", "Bulb Failed",
                  {"type": "object", "required": ["room"],
                   "properties": {"room": {"type": "string"},
                                  "watts": {"type": "integer", "minimum": 1,
                                            "maximum": 200}}}),
    ]),
    consumers=(Consumer("counter", _noop, consumes=("org.example.light.switched",)),),
    saga=Saga("none", steps=()),
    tables=(),
)


@pytest.fixture(scope="module")
def official() -> jsonschema.protocols.Validator:
    if not OFFICIAL.is_file():
        pytest.fail(f"the official AsyncAPI schema is missing ({OFFICIAL.relative_to(ROOT)}): "
                    "run `make asyncapi-specs` (needs npm)")
    schema = json.loads(OFFICIAL.read_text(encoding="utf-8"))
    cls = validator_for(schema)
    assert cls is jsonschema.Draft7Validator  # what the official 3.0.0 schema declares
    return cls(schema)


def _errors(validator: jsonschema.protocols.Validator, document: Any) -> list[str]:
    """Every error, with the innermost reasons of `oneOf`/`anyOf` failures spelled out."""

    def leaves(error: jsonschema.ValidationError) -> list[str]:
        here = f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        return [here, *(line for sub in error.context or () for line in leaves(sub))]

    return [line for e in sorted(validator.iter_errors(document), key=str)
            for line in leaves(e)]


@pytest.mark.parametrize("app", [APP, TINY], ids=["order-system", "tiny"])
def test_asyncapi_is_valid_against_the_official_3_0_schema(official, app: App) -> None:  # type: ignore[no-untyped-def]
    document = json.loads(export.dumps(export.asyncapi(app, "1.2.3")))
    assert _errors(official, document) == []


def test_the_official_schema_catches_what_is_wrong(official) -> None:  # type: ignore[no-untyped-def]
    # The validation above can fail: a 2.x verb, a binding field SQS does not define, a
    # message without payload type, each refused.
    document = export.asyncapi(TINY)
    document["operations"]["receive.counter"]["action"] = "subscribe"
    document["channels"]["consumers.counter"]["bindings"]["sqs"]["queue"]["fifoQueue"] = "no"
    document["info"].pop("version")
    problems = " ".join(_errors(official, document))
    assert "'subscribe' is not one of ['send', 'receive']" in problems
    assert "'no' is not of type 'boolean'" in problems
    assert "'version' is a required property" in problems


def test_asyncapi_describes_bus_routes_producers_and_messages() -> None:
    document = export.asyncapi(APP, "0.1.0")
    assert document["asyncapi"] == "3.0.0"
    assert document["info"] == {**document["info"], "title": "switchyard", "version": "0.1.0"}
    bus = document["channels"]["bus"]["messages"]
    assert list(bus) == [t.type for t in APP.catalog]
    for consumer in APP.consumers:
        channel = document["channels"][f"consumers.{consumer.name}"]
        assert list(channel["messages"]) == list(consumer.consumes)
        # The names the AWS stack gives them (prefix "switchyard" by default).
        names = Names("switchyard")
        assert channel["bindings"]["sqs"]["queue"] == {"name": names.queue(consumer.name),
                                                       "fifoQueue": False}
        assert channel["bindings"]["sqs"]["deadLetterQueue"] == {
            "name": names.dlq(consumer.name), "fifoQueue": False}
        receive = document["operations"][f"receive.{consumer.name}"]
        assert receive["action"] == "receive"
        assert receive["channel"] == {"$ref": f"#/channels/consumers.{consumer.name}"}
        assert [m["$ref"].rsplit("/", 1)[1] for m in receive["messages"]] == \
            list(consumer.consumes)
    sends = {k: [m["$ref"].rsplit("/", 1)[1] for m in op["messages"]]
             for k, op in document["operations"].items() if op["action"] == "send"
             and op["channel"] == {"$ref": "#/channels/bus"}}
    assert sends["send.file-processor"] == list(APP.consumer("file-processor").emits)
    assert sends["send.saga.order"] == list(APP.saga.emits)
    assert sends["send.schedule.inventory-audit"] == ["com.switchyard.inventory.audit"]
    assert sends["send.bucket.uploads"] == ["com.switchyard.storage.object.finalized"]
    assert sends["send.external"] == [t.type for t in APP.catalog]
    assert document["channels"]["notifier"]["bindings"]["sns"]["name"] == \
        names.notifications_topic()
    assert "notify.notifications" in document["operations"]
    for t in APP.catalog:
        message = document["components"]["messages"][t.type]
        assert (message["name"], message["title"], message["summary"]) == \
            (t.type, t.detail_type, t.description)
        assert message["payload"] == t.schema
        headers = message["headers"]
        assert headers["properties"]["type"] == {**headers["properties"]["type"],
                                                 "const": t.type}
        assert headers["properties"]["source"]["const"] == t.source
        assert headers["properties"]["specversion"]["const"] == "1.0"
        assert message["bindings"]["googlepubsub"]["attributes"]["ce-type"] == t.type
        assert message["x-eventbridge"] == {"source": t.source, "detail-type": t.detail_type}


def test_every_ref_in_the_document_resolves() -> None:
    document = export.asyncapi(APP)

    def refs(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            if "$ref" in node:
                yield node["$ref"]
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    found = list(refs(document))
    assert len(found) > 50
    for ref in found:
        node: Any = document
        for part in ref.removeprefix("#/").split("/"):
            assert part in node, f"{ref} does not resolve"
            node = node[part]


def test_cloudevents_headers_accept_a_real_event_and_refuse_a_wrong_type() -> None:
    headers = export.cloudevents_headers(APP.catalog["com.switchyard.order.created"])
    check = jsonschema.Draft7Validator(headers)
    good = {"specversion": "1.0", "id": "e-1", "source": "orders",
            "type": "com.switchyard.order.created", "time": "2026-01-01T00:00:00Z",
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    assert list(check.iter_errors(good)) == []
    assert list(check.iter_errors({**good, "type": "com.switchyard.order.cancelled"}))
    assert list(check.iter_errors({**good, "traceparent": "nope"}))


# --- JSON Schema files --------------------------------------------------------------------


def test_json_schema_files_are_draft_2020_12_schemas(tmp_path: Path) -> None:
    assert main(["catalog", "export", "--format", "jsonschema", "--out", str(tmp_path)]) == 0
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == sorted(f"{t.type}.schema.json" for t in APP.catalog)
    for file in files:
        schema = json.loads(file.read_text(encoding="utf-8"))
        Draft202012Validator.check_schema(schema)
        assert validator_for(schema) is Draft202012Validator
        type_ = file.name.removesuffix(".schema.json")
        assert schema["$id"] == f"urn:switchyard:schema:{type_}"
        assert schema["title"] == APP.catalog[type_].detail_type


def _golden_events() -> list[tuple[str, str, Any]]:
    """(file, type, data) of every event the golden files expect an adapter to produce."""
    found = []
    for path in sorted((ROOT / "tests/events").rglob("*.json")):
        expected = json.loads(path.read_text(encoding="utf-8")).get("expected")
        for event in expected if isinstance(expected, list) else [expected]:
            if isinstance(event, dict) and APP.catalog.get(str(event.get("type"))) \
                    and isinstance(event.get("data"), dict):
                found.append((path.name, event["type"], event["data"]))
    return found


GOLDEN = _golden_events()


def test_golden_files_hold_the_seed_examples() -> None:
    assert len(GOLDEN) >= 5
    assert {"com.switchyard.order.created", "com.switchyard.inventory.updated",
            "com.switchyard.workflow.triggered"} <= {t for _, t, _ in GOLDEN}


@pytest.mark.parametrize(("name", "type_", "data"), GOLDEN,
                         ids=[f"{n}:{t.rsplit('.', 2)[-2]}" for n, t, _ in GOLDEN])
def test_seed_examples_validate_against_their_exported_schema(name: str, type_: str,
                                                              data: Any) -> None:
    schema = export.json_schema(APP.catalog[type_])
    assert list(Draft202012Validator(schema).iter_errors(data)) == []
    # ... and the exported schema refuses what the runtime's validator refuses.
    broken = {k: v for k, v in data.items() if k not in schema["required"][:1]}
    assert list(Draft202012Validator(schema).iter_errors(broken))
    assert validate(APP.catalog[type_].schema, broken)


# --- determinism --------------------------------------------------------------------------


def _export_in_subprocess(fmt: str, seed: str, tmp_path: Path) -> bytes:
    out = tmp_path / f"{fmt}-{seed}"
    env = {**os.environ, "PYTHONHASHSEED": seed}
    env.pop("SWITCHYARD_APP", None)
    subprocess.run([sys.executable, "-m", "cli", "catalog", "export", "--format", fmt,
                    "--out", str(out)], cwd=ROOT, env=env, check=True, timeout=120)
    if out.is_dir():
        return b"".join(f.name.encode() + f.read_bytes() for f in sorted(out.iterdir()))
    return out.read_bytes()


@pytest.mark.parametrize("fmt", ["asyncapi", "jsonschema", "markdown"])
def test_export_is_byte_identical_across_processes_and_hash_seeds(fmt: str,
                                                                  tmp_path: Path) -> None:
    first = _export_in_subprocess(fmt, "1", tmp_path)
    second = _export_in_subprocess(fmt, "4242", tmp_path)
    assert first == second
    assert len(first) > 1000


# --- README and CLI -----------------------------------------------------------------------


def test_readme_event_catalog_is_current() -> None:
    shown = catalog_cli.readme_block((ROOT / "README.md").read_text(encoding="utf-8"))
    assert shown is not None, "README.md has no catalog markers"
    assert shown == export.markdown(APP), (
        f"the event catalog in README.md is stale; regenerate it with "
        f"`.venv/bin/{catalog_cli.REGENERATE}`")


def test_markdown_lists_fields_with_constraints() -> None:
    text = export.markdown(APP)
    assert ("| `orders` / `Order Created` | `com.switchyard.order.created` | file-processor "
            "| orders, order-analytics |") in text
    assert "| `items[].quantity` | integer | yes | > 0 |" in text
    assert '| `action` | string | yes | one of `"restock"`, `"remove"` |' in text
    assert "| `workflow` / `Workflow Triggered` | `com.switchyard.workflow.triggered` " \
           "| external | orders |" in text


def test_readme_update_replaces_only_the_block(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{catalog_cli._BEGIN}\nold\n{catalog_cli._END}\noutro\n")
    assert main(["catalog", "export", "--format", "markdown", "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith(f"{catalog_cli._END}\noutro\n")
    assert catalog_cli.readme_block(text) == export.markdown(APP)


@pytest.mark.parametrize(("argv", "message"), [
    (["--format", "jsonschema"], "--format jsonschema writes one file per type: give --out"),
    (["--app", "handlers.app"], "must look like 'package.module:ATTRIBUTE'"),
    (["--app", "handlers.app:CLAIMS"], "does not name an App"),
    (["--app", "no_such_module:APP"], "No module named 'no_such_module'"),
    (["--format", "asyncapi", "--readme", "README.md"], "--readme takes --format markdown"),
])
def test_bad_export_input_is_one_clear_line(argv: list[str], message: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["catalog", "export", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_unwritable_schema_folder_is_one_clear_line(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["catalog", "export", "--format", "jsonschema", "--out", str(blocker)]) == 2
    assert "is a file; --format jsonschema needs a directory" in capsys.readouterr().err
    assert main(["catalog", "export", "--format", "jsonschema", "--out",
                 str(blocker / "sub")]) == 2
    err = capsys.readouterr().err
    assert "cannot write" in err and err.count("\n") == 1


def test_readme_without_markers_is_a_clear_error(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("nothing here\n")
    assert main(["catalog", "export", "--format", "markdown", "--readme", str(readme)]) == 2
    assert "no catalog markers" in capsys.readouterr().err
    assert readme.read_text() == "nothing here\n"


def test_export_of_another_app_by_spec(tmp_path: Path) -> None:
    out = tmp_path / "tiny.json"
    assert main(["catalog", "export", "--app", f"{__name__}:TINY", "--prefix", "sy-prod",
                 "--out", str(out)]) == 0
    document = json.loads(out.read_text())
    assert document["channels"]["consumers.counter"]["bindings"]["sqs"]["queue"]["name"] == \
        "sy-prod-counter"
    assert document["info"]["title"] == "tiny"
    assert list(document["components"]["messages"]) == ["org.example.bulb.failed",
                                                        "org.example.light.switched"]


def test_the_exporter_imports_only_the_standard_library() -> None:
    # `catalog check --against REF` loads it by file path beside an older checkout's
    # `handlers`, where nothing else of this repository can be assumed.
    import ast

    tree = ast.parse(Path(export.__file__).read_text(encoding="utf-8"))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported and imported <= set(sys.stdlib_module_names) | {"__future__"}, imported
