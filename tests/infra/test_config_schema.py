"""Pulumi.yaml's `config:` schema and the program's own config (infra/config.py) agree.

Pulumi checks a stack's values against the project file's schema and applies its defaults
before the program runs; the program parses and validates the same keys. Every key, type
and default must match, a declared default must pass the program's validation, and the
schema must obey Pulumi's rules for project config (types string/integer/boolean/array,
defaults of the declared type, schemas only on keys of the project's own namespace).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.config import CLOUDS, KEYS, NAMESPACE, ConfigError, StackConfig, schema

ROOT = Path(__file__).resolve().parents[2]
PULUMI_TYPES = {"string", "integer", "boolean", "array"}
ATTRIBUTES = {"type", "description", "default", "secret", "items"}


def project() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "Pulumi.yaml").read_text())


def declared() -> dict[str, dict[str, Any]]:
    return project()["config"]


def as_pulumi_string(value: object) -> str:
    """How Pulumi hands a default to the program: the config value's string form."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def test_every_key_of_the_program_is_declared_and_nothing_else() -> None:
    assert sorted(declared()) == sorted(f"{NAMESPACE}:{k}" for k in KEYS)


def test_types_and_defaults_match_the_program() -> None:
    expected = schema()
    for key, entry in declared().items():
        got = {a: entry[a] for a in ("type", "default") if a in entry}
        assert got == expected[key], key


def test_every_key_is_described() -> None:
    for key, entry in declared().items():
        assert isinstance(entry.get("description"), str) and len(entry["description"]) > 20, key
        assert set(entry) <= ATTRIBUTES, (key, set(entry) - ATTRIBUTES)


def test_the_schema_obeys_pulumis_rules() -> None:
    name = project()["name"]
    assert name == NAMESPACE  # `switchyard:` keys are the project's own namespace
    for key, entry in declared().items():
        # Pulumi accepts a schema (type/default) only on keys of the project's namespace.
        assert ":" not in key or key.startswith(f"{name}:"), key
        assert entry["type"] in PULUMI_TYPES, key
        if "default" in entry:
            default = entry["default"]
            ok = {"string": isinstance(default, str),
                  "integer": isinstance(default, int) and not isinstance(default, bool),
                  "boolean": isinstance(default, bool)}[entry["type"]]
            assert ok, f"{key}: default {default!r} is not a {entry['type']}"


def test_keys_without_a_default_are_the_required_and_the_computed_ones() -> None:
    without = sorted(k for k, e in declared().items() if "default" not in e)
    # cloud is required; prefix is computed from the stack name; the rest are optional.
    assert without == sorted(f"{NAMESPACE}:{k}" for k in
                             ("cloud", "prefix", "maxConcurrency", "alarmEmail",
                              "tracesExporter", "otlpEndpoint", "otelLayer"))
    with pytest.raises(ConfigError, match="switchyard:cloud is required"):
        StackConfig.from_mapping(applied({}), "dev")


def applied(stack_values: dict[str, str]) -> dict[str, str]:
    """The config the program receives: the stack's values over the schema's defaults."""
    values = {k: as_pulumi_string(e["default"]) for k, e in declared().items() if "default" in e}
    values.update(stack_values)
    return values


@pytest.mark.parametrize("cloud", CLOUDS)
def test_the_declared_defaults_pass_validation_and_equal_the_programs(cloud: str) -> None:
    with_defaults = StackConfig.from_mapping(applied({"switchyard:cloud": cloud}), "dev")
    assert with_defaults == StackConfig.from_mapping({"cloud": cloud}, "dev")


@pytest.mark.parametrize("stack", ["dev-aws", "dev-gcp"])
def test_the_stack_files_match_the_declared_types(stack: str) -> None:
    """Pulumi refuses a stack value that does not parse as its key's declared type."""
    values = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    for key, value in values.items():
        if key.startswith(f"{NAMESPACE}:"):
            kind = declared()[key]["type"]
            text = as_pulumi_string(value)
            if kind == "integer":
                int(text)
            elif kind == "boolean":
                assert text in ("true", "false"), key
    StackConfig.from_mapping(applied({k: as_pulumi_string(v) for k, v in values.items()}),
                             stack)


def test_a_schema_that_drifts_from_the_program_is_caught() -> None:
    """The comparison above fails on a changed default (so it can fail)."""
    drifted = dict(declared())
    drifted["switchyard:maxDeliveries"] = {**drifted["switchyard:maxDeliveries"], "default": 6}
    got = {k: {a: e[a] for a in ("type", "default") if a in e} for k, e in drifted.items()}
    assert got != schema()
