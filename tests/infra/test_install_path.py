"""A fresh clone deploys with the Pulumi CLI's own install path.

With `toolchain: pip` and `virtualenv: .venv`, `pulumi install` (and the first `pulumi up`
of a clone without `.venv`) creates the venv, then runs
`<venv>/bin/python -m pip install --upgrade pip setuptools wheel` and
`<venv>/bin/python -m pip install -r requirements.txt`, both with the program folder
(`main:`) as working directory: that is where the language host looks for
requirements.txt and what relative paths in it are relative to (Pulumi's
sdk/python/toolchain/pip.go `InstallDependencies`, called with the program directory by
the Python language host). These tests check the file says the right thing; the slow
`test_a_fresh_clone_installs_and_runs_the_program` does exactly that in a clone.

Commands that need the SDKs name the missing install in one line (cli.missing_sdk):
checked by running them in a fresh interpreter where the SDK imports fail.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
import yaml

from cli.missing_sdk import EXIT_MISSING_SDK, hint

ROOT = Path(__file__).resolve().parents[2]


def project() -> dict[str, object]:
    return yaml.safe_load((ROOT / "Pulumi.yaml").read_text())


def program_dir() -> Path:
    return ROOT / str(project()["main"])


def requirement_lines(path: Path) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


# --- the requirements file ----------------------------------------------------------------


def test_the_requirements_file_is_in_the_program_folder() -> None:
    options = project()["runtime"]["options"]  # type: ignore[index]
    assert options == {"virtualenv": ".venv", "toolchain": "pip"}
    assert (program_dir() / "requirements.txt").is_file()
    # A root requirements.txt would be ignored by Pulumi (main: is infra/) and drift.
    assert not (ROOT / "requirements.txt").exists()


def test_it_installs_this_project_with_both_cloud_extras_and_no_versions() -> None:
    [line] = requirement_lines(program_dir() / "requirements.txt")
    match = re.fullmatch(r"-e (?P<path>\S+)\[(?P<extras>[a-z,]+)\]", line)
    assert match, line
    # Relative to pip's working directory, which Pulumi sets to the program folder.
    target = (program_dir() / match["path"]).resolve()
    assert target == ROOT
    pyproject = tomllib.loads((target / "pyproject.toml").read_text())
    assert pyproject["project"]["name"] == "switchyard"
    extras = match["extras"].split(",")
    assert sorted(extras) == ["aws", "gcp"]
    optional = pyproject["project"]["optional-dependencies"]
    assert {r.split(">")[0].split("<")[0] for r in optional["aws"]} >= {"pulumi", "pulumi-aws"}
    assert {r.split(">")[0].split("<")[0] for r in optional["gcp"]} >= {"pulumi", "pulumi-gcp"}


# --- a missing SDK is one line, not a traceback --------------------------------------------

# Runs `switchyard ARGS...` in a fresh interpreter where importing any of the given
# top-level modules fails as it does when they are not installed.
_BLOCKED_CLI = textwrap.dedent("""
    import json, sys
    blocked = set(json.loads(sys.argv[1]))

    class NotInstalled:
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in blocked:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NotInstalled())
    from cli.main import main
    sys.exit(main(sys.argv[2:]))
""")

PULUMI = ["pulumi", "pulumi_aws", "pulumi_gcp"]
AWS_SDK = ["boto3", "botocore"]
GCP_SDK = ["google"]


def run_without(modules: list[str], *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SWITCHYARD_LOG": "WARNING"}
    return subprocess.run([sys.executable, "-c", _BLOCKED_CLI, json.dumps(modules), *argv],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)


def outputs_file(tmp_path: Path, cloud: str) -> Path:
    """A stack's `switchyard` output, as `pulumi stack output --json` saves it."""
    if cloud == "aws":
        doc = {"version": 1, "cloud": "aws", "prefix": "switchyard-dev-aws",
               "busName": "switchyard-dev-aws-bus",
               "busArn": "arn:aws:events:us-east-1:123456789012:event-bus/b",
               "archiveName": "a", "archiveArn": "arn:aws:events:us-east-1:123456789012:a",
               "consumers": {"orders": {"queueUrl": "https://q/orders",
                                        "dlqUrl": "https://q/orders-dlq"}}}
    else:
        doc = {"version": 1, "cloud": "gcp", "prefix": "switchyard-dev-gcp",
               "project": "switchyard-dev", "busTopic": "switchyard-dev-gcp-bus",
               "replaySubscription": "switchyard-dev-gcp-replay",
               "consumers": {"orders": {"subscription": "s", "deadLetterTopic": "t",
                                        "deadLetterSubscription": "d"}}}
    path = tmp_path / f"{cloud}.json"
    path.write_text(json.dumps({"switchyard": doc}))
    return path


def assert_one_line_hint(done: subprocess.CompletedProcess[str], command: str,
                         extras: str, module: str) -> None:
    assert done.returncode == EXIT_MISSING_SDK, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"switchyard {command} needs "), line
    assert f"(missing: {module})" in line, line
    assert f"run `.venv/bin/pip install -e '.[{extras}]'` (or `pulumi install`)" in line, line
    assert done.stdout == ""


@pytest.mark.parametrize("argv", [
    ("synth", "--stack", "dev-aws"),
    ("synth", "--stack", "dev-gcp", "--format", "table"),
    ("cost", "--stack", "dev-aws", "--events-per-day", "1000"),
    ("cost", "--events-per-day", "1000", "--compare"),
])
def test_synth_and_cost_without_the_pulumi_sdk_say_what_to_install(argv: tuple[str, ...]
                                                                   ) -> None:
    done = run_without(PULUMI, *argv)
    assert_one_line_hint(done, argv[0], "aws,gcp", "pulumi")


@pytest.mark.parametrize(("cloud", "blocked", "extras", "module"), [
    ("aws", AWS_SDK, "aws", "boto3"),
    ("gcp", GCP_SDK, "gcp", "google"),
])
@pytest.mark.parametrize("argv", [("dlq", "list"), ("status",), ("replay", "--from", "2h")])
def test_ops_on_a_deployed_stack_without_its_sdk_say_what_to_install(
        tmp_path: Path, cloud: str, blocked: list[str], extras: str, module: str,
        argv: tuple[str, ...]) -> None:
    outputs = outputs_file(tmp_path, cloud)
    done = run_without(blocked, *argv, "--stack", f"dev-{cloud}", "--outputs", str(outputs))
    # The module named is the first one the backend imports (e.g. google.cloud.pubsub_v1).
    assert done.returncode == EXIT_MISSING_SDK, done.stderr
    line = done.stderr.strip()
    found = re.search(r"\(missing: ([\w.]+)\)", line)
    assert found and found[1].partition(".")[0] == module, line
    assert_one_line_hint(done, argv[0], extras, found[1])


def test_local_ops_and_demo_need_no_cloud_sdk(tmp_path: Path) -> None:
    from adapters.local.runtime import Runtime

    Runtime(tmp_path / "local.db").close()  # read-only commands create no database
    done = run_without([*PULUMI, *AWS_SDK, *GCP_SDK], "dlq", "list", "--db",
                       str(tmp_path / "local.db"))
    assert done.returncode == 0, done.stderr
    assert "0 dead-lettered" in done.stdout


def test_only_sdk_modules_are_translated() -> None:
    assert hint("synth", ModuleNotFoundError("x", name="pulumi_aws.s3")) is not None
    assert hint("status", ModuleNotFoundError("x", name="google.cloud.pubsub_v1")) is not None
    # With protobuf installed, `google` is a namespace and the import fails another way.
    partial = ImportError("cannot import name 'pubsub_v1' from 'google.cloud' (unknown location)",
                          name="google.cloud")
    assert "(missing: google.cloud.pubsub_v1)" in (hint("status", partial) or "")
    # Anything else missing is a bug in this project and must surface as one.
    assert hint("synth", ModuleNotFoundError("x", name="infra.nonexistent")) is None
    assert hint("synth", ModuleNotFoundError("x", name=None)) is None
