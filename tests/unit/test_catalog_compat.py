"""`switchyard catalog check`: which changes to the contracts break producers or consumers.

One row per kind of change: a mutation of the exported catalog -> the verdict and the
message `check` prints. Then the command itself, against a file and against a git ref.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator

from adapters.contracts import compat, export
from cli.main import main
from handlers.app import APP

ROOT = Path(__file__).resolve().parents[2]
BASE = export.asyncapi(APP, "0.1.0")

CREATED = "com.switchyard.order.created"
UPDATED = "com.switchyard.inventory.updated"
PAID = "com.switchyard.payment.processed"


def _data(doc: dict[str, Any], type_: str) -> dict[str, Any]:
    return doc["components"]["messages"][type_]["payload"]


def _field(doc: dict[str, Any], type_: str, name: str) -> dict[str, Any]:
    return _data(doc, type_)["properties"][name]


def _item(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return _field(doc, CREATED, "items")["items"]["properties"][name]


def _new_type(doc: dict[str, Any]) -> None:
    message = copy.deepcopy(doc["components"]["messages"][PAID])
    message["headers"]["properties"]["type"]["const"] = "com.switchyard.payment.disputed"
    doc["components"]["messages"]["com.switchyard.payment.disputed"] = message


def _source(doc: dict[str, Any]) -> None:
    doc["components"]["messages"][CREATED]["headers"]["properties"]["source"]["const"] = "shop"


def _detail_type(doc: dict[str, Any]) -> None:
    doc["components"]["messages"][CREATED]["x-eventbridge"]["detail-type"] = "Order Placed"


Mutation = Callable[[dict[str, Any]], Any]

#: Valid data of the types the table mutates (the seed examples and their siblings).
SAMPLES: list[tuple[str, dict[str, Any]]] = [
    (CREATED, {"order_id": "123", "customer_id": "456", "total": 20.0,
               "items": [{"item_id": "A", "quantity": 2, "price": 10.0}],
               "timestamp": "2024-01-01T00:00:00Z"}),
    (CREATED, {"order_id": "o", "customer_id": "c", "total": 0,
               "items": [{"item_id": "B", "quantity": 1, "price": 0}]}),
    (UPDATED, {"item_id": "A", "quantity": 10, "action": "restock"}),
    (UPDATED, {"item_id": "A", "quantity": 1, "action": "remove"}),
    (PAID, {"order_id": "123", "charge_id": "ch-1", "amount_cents": 0}),
]

# (id, mutation, passes, severity of the change it must report, words of its message)
ROWS: list[tuple[str, Mutation, bool, str, str]] = [
    ("removed type", lambda d: d["components"]["messages"].pop(PAID), False, "breaking",
     f"{PAID}: type removed"),
    ("removed optional field", lambda d: _data(d, CREATED)["properties"].pop("timestamp"),
     False, "breaking", f"{CREATED} data.timestamp: field removed"),
    ("removed nested field", lambda d: _field(d, CREATED, "items")["items"]["properties"]
     .pop("price"), False, "breaking", "data.items[].price: field removed"),
    ("retyped field", lambda d: _item(d, "quantity").update(type="string"), False, "breaking",
     "data.items[].quantity: retyped from integer to string"),
    ("new required field", lambda d: (_data(d, CREATED)["properties"].update(
        currency={"type": "string"}), _data(d, CREATED)["required"].append("currency")),
     False, "breaking", "data.currency: new required field"),
    ("optional field now required", lambda d: _data(d, CREATED)["required"].append(
        "timestamp"), False, "breaking", "data.timestamp: now required"),
    ("required field now optional", lambda d: _data(d, CREATED)["required"].remove("total"),
     False, "breaking", "data.total: no longer required"),
    ("narrowed enum", lambda d: _field(d, UPDATED, "action").update(enum=["restock"]), False,
     "breaking", "data.action: enum narrowed: 'remove' no longer allowed"),
    ("enum where there was none", lambda d: _field(d, CREATED, "timestamp").update(
        enum=["now"]), False, "breaking", "data.timestamp: enum added: only 'now' allowed"),
    ("raised minimum", lambda d: _field(d, CREATED, "total").update(minimum=1), False,
     "breaking", "data.total: minimum narrowed from 0 to 1"),
    ("lowered maxLength", lambda d: _field(d, CREATED, "order_id").update(maxLength=64),
     False, "breaking", "data.order_id: maxLength narrowed from 128 to 64"),
    ("raised minItems", lambda d: _field(d, CREATED, "items").update(minItems=2), False,
     "breaking", "data.items: minItems narrowed from 1 to 2"),
    ("new maximum", lambda d: _field(d, CREATED, "total").update(maximum=10000), False,
     "breaking", "data.total: maximum 10000 added (narrowed range)"),
    ("new maxItems", lambda d: _field(d, CREATED, "items").update(maxItems=50), False,
     "breaking", "data.items: maxItems 50 added (narrowed range)"),
    ("new pattern", lambda d: _field(d, CREATED, "order_id").update(pattern="^o-"), False,
     "breaking", "data.order_id: pattern changed from None to '^o-'"),
    ("extra fields forbidden", lambda d: _data(d, CREATED).update(additionalProperties=False),
     False, "breaking", "data: additional fields now forbidden"),
    ("narrowed type", lambda d: _field(d, PAID, "amount_cents").update(type="boolean"),
     False, "breaking", "data.amount_cents: retyped from integer to boolean"),
    ("changed source", _source, False, "breaking",
     f"{CREATED} source: changed from 'orders' to 'shop'"),
    ("changed detail-type", _detail_type, False, "breaking",
     f"{CREATED} detail-type: changed from 'Order Created' to 'Order Placed'"),
    ("new type", _new_type, True, "additive", "com.switchyard.payment.disputed: new type"),
    ("new optional field", lambda d: _data(d, CREATED)["properties"].update(
        coupon={"type": "string"}), True, "additive", "data.coupon: new optional field"),
    ("widened enum", lambda d: _field(d, UPDATED, "action")["enum"].append("adjust"), True,
     "widening", "data.action: enum widened: 'adjust' allowed now"),
    ("lowered minimum", lambda d: _field(d, PAID, "amount_cents").update(minimum=-100), True,
     "widening", "data.amount_cents: minimum widened from 0 to -100"),
    ("raised maxLength", lambda d: _field(d, CREATED, "order_id").update(maxLength=256), True,
     "widening", "data.order_id: maxLength widened from 128 to 256"),
    ("dropped minLength", lambda d: _field(d, CREATED, "order_id").pop("minLength"), True,
     "widening", "data.order_id: minLength 1 dropped"),
    ("integer to number", lambda d: _field(d, PAID, "amount_cents").update(type="number"),
     True, "widening", "data.amount_cents: type widened from integer to number"),
    ("nullable", lambda d: _field(d, CREATED, "timestamp").update(type=["string", "null"]),
     True, "widening", "data.timestamp: type widened from string to null|string"),
]


@pytest.mark.parametrize(("mutate", "passes", "severity", "message"),
                         [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_change_table(mutate: Mutation, passes: bool, severity: str, message: str) -> None:
    new = copy.deepcopy(BASE)
    mutate(new)
    changes = compat.compare(BASE, new)
    lines = [c.line() for c in changes]
    assert any(message in line for line in lines), lines
    assert [c.severity for c in changes if message in c.line()] == [severity]
    assert compat.verdict(changes) is passes
    # FULL mode also refuses widenings; additive changes pass both ways.
    assert compat.verdict(changes, full=True) is (severity == "additive")
    if passes:  # what was valid stays valid: every sample event of the old contract
        for type_, data in SAMPLES:
            old_schema = _data(BASE, type_)
            new_schema = new["components"]["messages"].get(type_, {}).get("payload")
            assert new_schema is not None
            assert not list(Draft7Validator(old_schema).iter_errors(data))
            assert not list(Draft7Validator(new_schema).iter_errors(data)), (type_, data)


def test_no_change_is_no_change() -> None:
    assert compat.compare(BASE, copy.deepcopy(BASE)) == []
    assert compat.compare(BASE, export.asyncapi(APP, "9.9.9")) == []  # version is no contract


def test_breaking_changes_are_listed_first_and_all_of_them() -> None:
    new = copy.deepcopy(BASE)
    _new_type(new)
    _source(new)
    _data(new, CREATED)["properties"].pop("timestamp")
    severities = [c.severity for c in compat.compare(BASE, new)]
    assert severities == ["breaking", "breaking", "additive"]


def test_documents_that_are_not_catalogs_are_refused() -> None:
    with pytest.raises(compat.ContractError, match="not an AsyncAPI 3 document"):
        compat.compare({"openapi": "3.1.0"}, BASE, old_origin="old.json")
    with pytest.raises(compat.ContractError, match="has no CloudEvents messages"):
        compat.compare({"asyncapi": "3.0.0", "components": {"messages": {}}}, BASE)


# --- the command ----------------------------------------------------------------------------


def _write(tmp_path: Path, document: dict[str, Any]) -> Path:
    path = tmp_path / "old.json"
    path.write_text(export.dumps(document), encoding="utf-8")
    return path


def test_check_passes_on_additive_changes_and_prints_them(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    old = copy.deepcopy(BASE)
    old["components"]["messages"].pop(PAID)  # the current app adds it
    _field(old, UPDATED, "action")["enum"].remove("remove")  # ... and widens this enum
    assert main(["catalog", "check", "--against", str(_write(tmp_path, old))]) == 0
    out = capsys.readouterr().out
    assert f"added    {PAID}: new type" in out
    assert "widened  com.switchyard.inventory.updated data.action: enum widened" in out
    assert "compatible (0 breaking, 1 widened, 1 added)" in out
    assert main(["catalog", "check", "--full", "--against", str(_write(tmp_path, old))]) == 1


def test_check_fails_on_breaking_changes_naming_each(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    old = copy.deepcopy(BASE)
    _data(old, CREATED)["properties"]["legacy_ref"] = {"type": "string"}  # removed since
    _data(old, CREATED)["required"].remove("total")  # now required
    assert main(["catalog", "check", "--against", str(_write(tmp_path, old))]) == 1
    captured = capsys.readouterr()
    assert f"BREAKING {CREATED} data.legacy_ref: field removed" in captured.out
    assert f"BREAKING {CREATED} data.total: now required" in captured.out
    assert "INCOMPATIBLE (2 breaking, 0 widened, 0 added" in captured.err


def test_check_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = copy.deepcopy(BASE)
    old["components"]["messages"].pop(PAID)
    assert main(["catalog", "check", "--json", "--against", str(_write(tmp_path, old))]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["ok"] is True
    assert answer["changes"] == [{"severity": "additive", "type": PAID, "where": "",
                                  "what": "new type"}]


@pytest.mark.parametrize(("against", "message"), [
    ("no-such-ref-or-file", "'no-such-ref-or-file' is neither a file nor a commit"),
    ("README.md", "README.md is not a JSON AsyncAPI document"),
    ("pyproject.toml", "pyproject.toml is not a JSON AsyncAPI document"),
])
def test_bad_reference_is_one_clear_line(against: str, message: str,
                                         monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(ROOT)
    assert main(["catalog", "check", "--against", against]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


_AUTHOR = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True, env={**os.environ, **_AUTHOR}).stdout.strip()


def _checkout(repo: Path, catalog_suffix: str = "") -> Path:
    """A git repository whose one commit is this app, its catalog.py extended."""
    shutil.copytree(ROOT / "handlers", repo / "handlers",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", repo / "pyproject.toml")
    with (repo / "handlers/catalog.py").open("a", encoding="utf-8") as catalog:
        catalog.write(catalog_suffix)
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "old app")
    return repo


@pytest.fixture
def old_checkout(tmp_path: Path) -> Path:
    """The app with one more event type, retired since."""
    return _checkout(tmp_path / "repo", '\nCATALOG = Catalog([*CATALOG.types, EventType(\n'
                     '    "com.switchyard.legacy.ping", "legacy", "Ping",\n'
                     '    _obj(["at"], at={"type": "string"}), "Retired since.")])\n')


def test_check_against_a_git_ref_exports_the_app_at_that_commit(
        old_checkout: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # The working tree changes after the commit: the ref, not the files, is compared.
    (old_checkout / "handlers/catalog.py").write_text("raise SystemExit('not this one')\n")
    monkeypatch.chdir(old_checkout)
    assert main(["catalog", "check", "--against", "HEAD"]) == 1
    captured = capsys.readouterr()
    assert "BREAKING com.switchyard.legacy.ping: type removed" in captured.out
    assert captured.out.count("BREAKING") == 1  # the rest of the catalog is the same


def test_check_against_the_same_app_at_a_ref_passes(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    # What `make catalog-check` meets when the ref holds the same catalog.
    monkeypatch.chdir(_checkout(tmp_path / "same"))
    assert main(["catalog", "check", "--against", "HEAD"]) == 0
    assert "no change to the event contracts" in capsys.readouterr().out


def test_an_app_that_fails_to_load_at_the_ref_is_one_clear_line(
        old_checkout: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    (old_checkout / "handlers/app.py").write_text("raise RuntimeError('broken at this ref')\n")
    _git(old_checkout, "commit", "-qam", "break it")
    monkeypatch.chdir(old_checkout)
    assert main(["catalog", "check", "--against", "HEAD"]) == 2
    err = capsys.readouterr().err
    assert "cannot export handlers.app:APP at HEAD: RuntimeError: broken at this ref" in err
    assert err.count("\n") == 1
