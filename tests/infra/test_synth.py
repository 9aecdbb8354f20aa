"""`switchyard synth`: the resource graph, its determinism, the topology and the README.

Counts are never hard-coded: every expectation is derived from the live program run (or
the app description), so resources other work adds to the stacks keep these tests valid.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli import tools as tools_cli
from cli.main import main as cli_main
from handlers.app import APP
from handlers.catalog import CATALOG, ORDER_COMPLETED
from handlers.core.app import Consumer
from infra.diagram import Topology, to_mermaid, topology
from infra.synth import (
    SynthError,
    graph,
    stack_config,
    synthesize,
    to_json,
    to_table,
)
from tests.infra.pulumi_harness import run_program

ROOT = Path(__file__).resolve().parents[2]
STACKS = ("dev-aws", "dev-gcp")


@pytest.fixture(scope="module", params=STACKS)
def stack(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def recorded(stack: str):  # type: ignore[no-untyped-def]
    return synthesize(stack)


# --- the graph ---------------------------------------------------------------------------


def test_json_lists_every_registered_resource_with_its_relations(recorded) -> None:  # type: ignore[no-untyped-def]
    doc = json.loads(to_json(recorded))
    assert [r["urn"] for r in doc["resources"]] == sorted(r.urn for r in recorded.resources)
    urns = {r["urn"] for r in doc["resources"]}
    for entry, resource in zip(doc["resources"], sorted(recorded.resources, key=lambda r: r.urn),
                               strict=True):
        assert entry["type"] == resource.type and entry["name"] == resource.name
        assert entry["dependencies"] == sorted(set(resource.dependencies))
        assert set(entry["dependencies"]) <= urns, "a dependency outside the graph"
        assert entry["parent"] is None or entry["parent"] in urns
    # Top-level components hang off the stack; everything else has a recorded parent.
    assert any(e["parent"] is None for e in doc["resources"])
    assert doc["outputs"]["cloud"] == recorded.stack.removeprefix("dev-")


def test_the_stack_file_config_is_what_runs(stack: str, recorded) -> None:  # type: ignore[no-untyped-def]
    assert stack_config(stack)["switchyard:cloud"] == stack.removeprefix("dev-")
    if stack == "dev-gcp":
        # Pulumi.dev-gcp.yaml sets gcp:project: switchyard-dev, which the functions carry.
        functions = recorded.of_type("gcp:cloudfunctionsv2/function:Function")
        assert functions and all(f.inputs["project"] == "switchyard-dev" for f in functions)


def test_code_archives_appear_as_path_and_hash_not_bytes(recorded) -> None:  # type: ignore[no-untyped-def]
    text = to_json(recorded)
    assets = [v for r in graph(recorded)["resources"] for v in _walk(r["inputs"])
              if isinstance(v, dict) and "kind" in v and "sha256" in v]
    assert assets, "the code archive is missing from the graph"
    for asset in assets:
        assert len(asset["sha256"]) == 64 and not asset["path"].startswith("/")
    assert "PK\\u0003\\u0004" not in text


def test_table_counts_add_up_to_the_graph(recorded) -> None:  # type: ignore[no-untyped-def]
    table = to_table(recorded)
    rows = dict(line.rsplit(None, 1) for line in table.splitlines()[2:] if line[0] != "-")
    for type_, count in recorded.types().items():
        assert int(rows[type_]) == count
    assert int(rows["total"]) == len(recorded.resources)
    assert int(rows["cloud resources"]) == sum(1 for r in recorded.resources if r.custom)


def test_output_is_byte_identical_across_runs_and_hash_seeds() -> None:
    script = (
        "import sys; from cli.tools import render\n"
        "for s in ('dev-aws', 'dev-gcp'):\n"
        "    for f in ('json', 'mermaid', 'table'):\n"
        "        sys.stdout.write(render(s, f))\n"
    )
    outputs = []
    for seed in ("0", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                              capture_output=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr.decode()
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1]
    assert len(outputs[0]) > 10_000


# --- the topology ------------------------------------------------------------------------


def _edges(topo: Topology) -> set[tuple[str, str, str, str]]:
    """(source role, source name, target role, target name) of every edge."""
    return {(topo.roles[e.source], topo.names[e.source], topo.roles[e.target],
             topo.names[e.target]) for e in topo.edges}


def _path_exists(topo: Topology, start: str, end: str) -> bool:
    seen, todo = {start}, [start]
    while todo:
        node = todo.pop()
        for e in topo.edges:
            if e.source == node and not e.dotted and e.target not in seen:
                seen.add(e.target)
                todo.append(e.target)
    return end in seen


def test_every_consumer_is_reachable_from_the_bus_and_dead_letters(recorded) -> None:  # type: ignore[no-untyped-def]
    topo = topology(recorded, APP)
    prefix = f"switchyard-{recorded.stack}"
    (bus,) = [u for u, role in topo.roles.items() if role == "bus"]
    for consumer in APP.consumers:
        (function,) = [u for u, role in topo.roles.items()
                       if role == "function" and topo.names[u] == f"{prefix}-{consumer.name}"]
        assert _path_exists(topo, bus, function), consumer.name
        dlqs = {e.target for e in topo.edges if e.dotted and topo.roles[e.target] == "dlq"
                and topo.names[e.target] == f"{prefix}-{consumer.name}-dlq"}
        assert dlqs, f"{consumer.name} has no dead-letter edge"
        labels = " ".join(e.label for e in topo.edges if e.source == bus)
        for type_ in consumer.consumes:
            # AWS rules match the EventBridge detail-type, GCP filters the CloudEvents type.
            wanted = CATALOG[type_].detail_type if recorded.stack == "dev-aws" else type_
            assert wanted in labels, (consumer.name, wanted)


def test_grants_draw_what_each_consumer_declares(recorded) -> None:  # type: ignore[no-untyped-def]
    topo = topology(recorded, APP)
    edges = _edges(topo)
    prefix = f"switchyard-{recorded.stack}"
    for consumer in APP.consumers:
        name = f"{prefix}-{consumer.name}"
        notifies = {t for (sr, s, tr, t) in edges if s == name and sr == "function"
                    and tr == "topic"}
        assert bool(notifies) == consumer.notifies, consumer.name
        starts = {t for (sr, s, tr, t) in edges if s == name and tr == "saga"}
        assert bool(starts) == consumer.starts_saga, consumer.name
    sagas = [u for u, role in topo.roles.items() if role == "saga"]
    assert len(sagas) == 1
    assert any(e.source == sagas[0] and topo.roles[e.target] == "function" for e in topo.edges)


def test_the_saga_box_lists_the_app_descriptions_steps(recorded) -> None:  # type: ignore[no-untyped-def]
    text = to_mermaid(recorded, APP)
    assert " → ".join(step.name for step in APP.saga.steps) in text
    for step in APP.saga.steps:
        if step.compensate is not None:
            assert f"{step.name} ↩ {step.compensate.__name__}" in text


@pytest.mark.parametrize("cloud", ["aws", "gcp"])
def test_a_new_consumer_appears_in_the_diagram_by_itself(cloud: str) -> None:
    audit = Consumer("audit", lambda ctx: None, consumes=(ORDER_COMPLETED,))
    app = dataclasses.replace(APP, consumers=(*APP.consumers, audit))
    rec = run_program({"cloud": cloud}, f"dev-{cloud}", app=app)
    topo = topology(rec, app)
    (bus,) = [u for u, role in topo.roles.items() if role == "bus"]
    (function,) = [u for u, role in topo.roles.items()
                   if role == "function" and topo.names[u] == f"switchyard-dev-{cloud}-audit"]
    assert _path_exists(topo, bus, function)
    assert "audit" in to_mermaid(rec, app)


# --- README and CLI ----------------------------------------------------------------------


def test_readme_diagrams_are_current(stack: str) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    shown = tools_cli.readme_block(readme, stack)
    assert shown is not None, f"README.md has no diagram markers for {stack}"
    assert shown == tools_cli.render(stack, "mermaid"), (
        f"the {stack} diagram in README.md is stale; regenerate it with "
        f"`.venv/bin/{tools_cli.regenerate_command(stack)}`"
    )


def test_readme_update_replaces_only_the_block(tmp_path: Path) -> None:
    begin, end = tools_cli._markers("dev-aws")
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{begin}\nold\n{end}\noutro\n")
    assert cli_main(["synth", "--stack", "dev-aws", "--format", "mermaid",
                     "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith(f"{end}\noutro\n")
    assert tools_cli.readme_block(text, "dev-aws") == tools_cli.render("dev-aws", "mermaid")


def test_readme_without_markers_is_a_clear_error(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    readme = tmp_path / "README.md"
    readme.write_text("nothing here\n")
    assert cli_main(["synth", "--stack", "dev-gcp", "--format", "mermaid",
                     "--readme", str(readme)]) == 2
    assert "no markers for dev-gcp" in capsys.readouterr().err


def test_unknown_stack_names_the_known_ones(capsys) -> None:  # type: ignore[no-untyped-def]
    assert cli_main(["synth", "--stack", "prod"]) == 2
    err = capsys.readouterr().err
    assert "Pulumi.prod.yaml" in err and "dev-aws" in err and "dev-gcp" in err


def test_secret_and_bad_config_in_a_stack_file_are_refused(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.s.yaml").write_text(
        "config:\n  switchyard:cloud: aws\n  switchyard:alarmEmail:\n    secure: AAAB\n")
    with pytest.raises(SynthError, match="alarmEmail is a secret"):
        stack_config("s", tmp_path)
    (tmp_path / "Pulumi.t.yaml").write_text("config: [1, 2\n")
    with pytest.raises(SynthError, match="not valid YAML"):
        stack_config("t", tmp_path)


def test_synth_writes_the_file_it_is_given(tmp_path: Path) -> None:
    out = tmp_path / "graph.json"
    assert cli_main(["synth", "--stack", "dev-aws", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["stack"] == "dev-aws"


def _walk(value):  # type: ignore[no-untyped-def]
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


def test_the_cli_does_not_import_pulumi_until_synth_or_cost_runs() -> None:
    script = ("import sys, cli.main\n"
              "cli.main.build_parser().parse_args(['demo'])\n"
              "print(sorted(m for m in sys.modules if m.split('.')[0] in "
              "('pulumi', 'pulumi_aws', 'pulumi_gcp', 'infra', 'yaml')))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
