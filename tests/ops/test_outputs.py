"""Finding a stack's resources: `--outputs FILE`, the Pulumi CLI, or a clear error."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from adapters.stack_outputs import (
    OUTPUT_NAME,
    OUTPUT_VERSION,
    AwsOutputs,
    GcpOutputs,
    OutputsError,
    parse,
)
from cli.main import main
from cli.ops.model import OpsError, Selection, parse_time
from cli.ops.outputs import load

AWS: dict[str, Any] = {
    "version": OUTPUT_VERSION, "cloud": "aws", "prefix": "p",
    "busName": "p-bus", "busArn": "arn:aws:events:eu-west-1:111122223333:event-bus/p-bus",
    "archiveName": "p-archive",
    "archiveArn": "arn:aws:events:eu-west-1:111122223333:archive/p-archive",
    "consumers": {"orders": {"queueUrl": "https://q/orders", "dlqUrl": "https://q/orders-dlq"}},
}
GCP: dict[str, Any] = {
    "version": OUTPUT_VERSION, "cloud": "gcp", "prefix": "p", "project": "proj",
    "busTopic": "p-events", "replaySubscription": "p-replay",
    "consumers": {"orders": {"subscription": "p-orders", "deadLetterTopic": "p-orders-dlq",
                             "deadLetterSubscription": "p-orders-dlq"}},
}


def test_the_whole_stack_output_or_the_switchyard_output_alone() -> None:
    whole = parse({"busName": "p-bus", OUTPUT_NAME: AWS}, "s")
    assert whole == parse(AWS, "s")
    assert isinstance(whole, AwsOutputs)
    assert whole.region == "eu-west-1"  # from the bus ARN
    assert [c.name for c in whole.consumers] == ["orders"]
    gcp = parse(GCP, "s")
    assert isinstance(gcp, GcpOutputs) and gcp.replay_subscription == "p-replay"


def test_every_problem_is_named() -> None:
    broken = {**AWS, "version": 0, "busArn": None,
              "consumers": {"orders": {"queueUrl": "None"}}}
    with pytest.raises(OutputsError) as error:
        parse(broken, "s", origin="f.json")
    message = str(error.value)
    for problem in ("f.json", "version is 0", "busArn must be", "consumers.orders.queueUrl",
                    "consumers.orders.dlqUrl", "region is missing"):
        assert problem in message
    with pytest.raises(OutputsError, match="no 'switchyard' output .found busName."):
        parse({"busName": "x"}, "s")
    with pytest.raises(OutputsError, match="cloud must be 'aws' or 'gcp', got 'azure'"):
        parse({**GCP, "cloud": "azure"}, "s")


def test_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    path.write_text(json.dumps({OUTPUT_NAME: GCP}))
    assert load("dev", path).project == "proj"  # type: ignore[union-attr]
    path.write_text("{not json")
    with pytest.raises(OutputsError, match="is not JSON"):
        load("dev", path)
    with pytest.raises(OutputsError, match="cannot read --outputs"):
        load("dev", tmp_path / "missing.json")


def _fake_pulumi(bin_dir: Path, script: str) -> None:
    """A `pulumi` executable on PATH that answers like the CLI (recording its argv)."""
    bin_dir.mkdir()
    exe = bin_dir / "pulumi"
    exe.write_text(f"#!{sys.executable}\n{script}")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)


def test_from_the_pulumi_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    record = tmp_path / "argv.json"
    _fake_pulumi(tmp_path / "bin", f"""import json, sys
open({str(record)!r}, "w").write(json.dumps(sys.argv[1:]))
print(json.dumps({{"busName": "p-bus", {OUTPUT_NAME!r}: {json.dumps(AWS)}}}))
""")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    assert load("dev-aws").bus_name == "p-bus"  # type: ignore[union-attr]
    assert json.loads(record.read_text()) == ["stack", "output", "--json", "--stack", "dev-aws"]


def test_a_failing_pulumi_cli_is_reported(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_pulumi(tmp_path / "bin", "import sys\nprint('error: no stack named dev', "
                                   "file=sys.stderr)\nsys.exit(255)\n")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    with pytest.raises(OutputsError, match="failed .exit 255.: error: no stack named dev"):
        load("dev")


def test_neither_cli_nor_file_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["status", "--stack", "dev-aws"]) == 2
    err = capsys.readouterr().err
    assert "pulumi CLI is not on PATH" in err and "--outputs FILE" in err


def test_times_and_selections() -> None:
    now = parse_time("2026-01-01T12:00:00Z")
    assert parse_time("90m", now).isoformat() == "2026-01-01T10:30:00+00:00"
    assert parse_time("2026-01-01T12:00:00", now) == now  # no offset: UTC
    with pytest.raises(OpsError, match="not a time: 'soon'"):
        parse_time("soon")
    with pytest.raises(OpsError, match="unknown consumer 'x' .the stack has a, b."):
        Selection(consumer="x").consumers(["b", "a"])
