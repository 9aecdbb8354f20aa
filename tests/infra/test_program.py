"""The Pulumi program skeleton: stack config, the one cloud switch, the entry point.

Everything runs under Pulumi mocks through `tests.infra.pulumi_harness.run_program`.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import subprocess
import sys
import types
from decimal import Decimal
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml  # pyyaml ships as a dependency of the pulumi SDK

import infra.program
from infra.config import CLOUDS, KEYS, ConfigError, StackConfig
from tests.infra.pulumi_harness import run_program

ROOT = Path(__file__).resolve().parents[2]
STACK_FILES = {"dev-aws": "aws", "dev-gcp": "gcp"}
COMPONENT = {"aws": "switchyard:aws:Stack", "gcp": "switchyard:gcp:Stack"}


@pytest.fixture
def app() -> object | None:
    """None runs the real `handlers.app.APP`; a stand-in only while that module is missing."""
    if importlib.util.find_spec("handlers.app") is not None:
        return None
    return types.SimpleNamespace(name="stand-in", consumers=(), tables=())


# --- the cloud switch ---------------------------------------------------------------------


@pytest.mark.parametrize("cloud", CLOUDS)
def test_each_cloud_registers_only_its_own_component(cloud: str, app: object | None) -> None:
    rec = run_program({"cloud": cloud}, f"dev-{cloud}", app=app)

    component = rec.one(COMPONENT[cloud])
    assert component.name == f"switchyard-dev-{cloud}"
    assert component.parent == rec.stack_urn  # top level, directly under the stack
    assert not component.custom
    other = next(c for c in CLOUDS if c != cloud)
    assert not [
        r for r in rec.resources if r.type.startswith((f"{other}:", f"switchyard:{other}:"))
    ]
    assert rec.outputs["cloud"] == cloud
    assert [r.type for r in rec.children()] == [COMPONENT[cloud]]
    assert {"cloud": cloud, "prefix": component.name}.items() <= \
        rec.component_outputs[component.urn].items()
    assert rec.none_leaks() == []


@pytest.mark.parametrize("cloud", CLOUDS)
def test_only_the_chosen_cloud_package_is_imported(cloud: str) -> None:
    """Fresh interpreter, set up the way Pulumi runs the program: cwd=infra/, `runpy` on the
    directory, and neither the repo root nor the editable install on the import path (so
    this also proves `infra/__main__.py` makes the packages importable by itself)."""
    script = r"""
import importlib.util, json, os, runpy, sys, types
root, cloud = sys.argv[1], sys.argv[2]
sys.meta_path[:] = [f for f in sys.meta_path if getattr(f, "__name__", "") != "_EditableFinder"]
sys.path[:] = [p for p in sys.path if p and os.path.abspath(p) != root]
assert importlib.util.find_spec("infra") is None, "infra importable before __main__ ran"
if not os.path.exists(os.path.join(root, "handlers", "app.py")):
    sys.modules["handlers.app"] = types.SimpleNamespace(APP=object())  # stand-in app
spec = importlib.util.spec_from_file_location(
    "pulumi_harness", os.path.join(root, "tests", "infra", "pulumi_harness.py"))
harness = sys.modules["pulumi_harness"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(harness)
rec = harness.run_program(
    {"cloud": cloud}, f"dev-{cloud}", program=lambda: runpy.run_path(".", run_name="__main__"))
print(json.dumps({
    "types": sorted(r.type for r in rec.resources),
    "outputs": rec.outputs,
    "modules": sorted(m for m in sys.modules if m.split(".")[0] in ("infra", "pulumi_aws",
                      "pulumi_gcp", "boto3", "google")),
}))
"""
    done = subprocess.run(
        [sys.executable, "-c", script, str(ROOT), cloud],
        cwd=ROOT / "infra",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert COMPONENT[cloud] in result["types"]
    assert result["outputs"]["cloud"] == cloud
    other = next(c for c in CLOUDS if c != cloud)
    assert f"infra.{cloud}" in result["modules"]
    assert f"infra.{other}" not in result["modules"]
    assert f"pulumi_{other}" not in result["modules"]


def test_deploy_receives_the_app_and_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    sentinel_app = object()
    seen: list[tuple[Any, StackConfig]] = []
    import infra.aws

    monkeypatch.setattr(infra.program, "load_app", lambda: sentinel_app)
    monkeypatch.setattr(infra.aws, "deploy", lambda app, config: seen.append((app, config)))

    run_program({"cloud": "aws", "maxDeliveries": "7", "api": True}, "dev-aws")

    [(app, config)] = seen
    assert app is sentinel_app
    assert config == StackConfig.from_mapping(
        {"cloud": "aws", "maxDeliveries": "7", "api": "true"}, "dev-aws"
    )


def test_load_app_returns_handlers_app(monkeypatch: pytest.MonkeyPatch) -> None:
    marker = object()
    monkeypatch.setitem(sys.modules, "handlers.app", types.SimpleNamespace(APP=marker))
    assert infra.program.load_app() is marker


def test_config_is_read_once_per_run(monkeypatch: pytest.MonkeyPatch, app: object | None) -> None:
    created: list[str | None] = []
    original = pulumi.Config.__init__

    def counting_init(self: pulumi.Config, name: str | None = None) -> None:
        created.append(name)
        original(self, name)

    monkeypatch.setattr(pulumi.Config, "__init__", counting_init)
    run_program({"cloud": "aws"}, "dev-aws", app=app)
    assert created.count("switchyard") == 1


def test_the_cloud_table_covers_exactly_the_valid_clouds() -> None:
    assert set(infra.program.CLOUD_PACKAGES) == set(CLOUDS)
    for package in infra.program.CLOUD_PACKAGES.values():
        assert callable(importlib.import_module(package).deploy)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize(
    ("folder", "forbidden"),
    [
        ("infra/aws", ("pulumi_gcp", "infra.gcp", "google", "adapters.gcp")),
        ("infra/gcp", ("pulumi_aws", "infra.aws", "boto3", "adapters.aws")),
        ("infra", ("pulumi_aws", "pulumi_gcp", "infra.aws", "infra.gcp")),
    ],
)
def test_no_module_imports_the_other_cloud(folder: str, forbidden: tuple[str, ...]) -> None:
    """Static guard for the switch: a cloud package never imports the other cloud, and the
    shared modules (config, program, __main__) import neither (program does it by name)."""
    base = ROOT / folder
    files = sorted(base.rglob("*.py")) if folder != "infra" else sorted(base.glob("*.py"))
    assert files
    offenders = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in files
        for name in _imports(path)
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    }
    assert not offenders


# --- config errors through the program ---------------------------------------------------


def test_missing_cloud_names_both_choices(app: object | None) -> None:
    with pytest.raises(ConfigError) as caught:
        run_program({}, "dev", app=app)
    message = str(caught.value)
    assert "switchyard:cloud" in message and "'aws'" in message and "'gcp'" in message
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, pulumi.RunError)  # `pulumi up` prints it without traceback


def test_unknown_cloud_names_both_choices_and_the_bad_value(app: object | None) -> None:
    with pytest.raises(ConfigError) as caught:
        run_program({"cloud": "azure"}, "dev", app=app)
    message = str(caught.value)
    for word in ("aws", "gcp", "azure"):
        assert word in message
    assert caught.value.problems == ("switchyard:cloud must be 'aws' or 'gcp', got 'azure'",)


def test_every_problem_is_reported_at_once(app: object | None) -> None:
    config = {
        "cloud": "gcp",
        "maxDeliveries": "4",
        "prefix": "Bad_Prefix",
        "memory": "64",
        "timeout": "soon",
        "maxDelivery": "3",  # a typo is an error, not a silently ignored key
    }
    with pytest.raises(ConfigError) as caught:
        run_program(config, "dev-gcp", app=app)
    problems = caught.value.problems
    assert len(problems) == 5, problems
    message = str(caught.value)
    assert "5 problems" in message
    for fragment in (
        "switchyard:maxDeliveries must be between 5 and 100 on gcp, got 4",
        "Pub/Sub",
        "switchyard:prefix 'Bad_Prefix' is invalid",
        "switchyard:memory must be between 128 and 10240, got 64",
        "switchyard:timeout must be a whole number, got 'soon'",
        "switchyard:maxDelivery is not a known setting (did you mean 'maxDeliveries'?)",
    ):
        assert fragment in message


def test_secret_config_keys_are_remembered(app: object | None) -> None:
    seen: list[StackConfig] = []

    def program() -> None:
        seen.append(StackConfig.from_pulumi())

    run_program(
        {"cloud": "aws", "alarmEmail": "ops@example.com"},
        "dev-aws",
        program=program,
        secrets=("alarmEmail",),
    )
    [config] = seen
    assert config.alarm_email == "ops@example.com"
    assert config.is_secret("alarmEmail") and not config.is_secret("cloud")


# --- the stack files ---------------------------------------------------------------------


def test_pulumi_yaml_points_at_the_program_and_the_shared_venv() -> None:
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert project["name"] == "switchyard"
    assert project["runtime"] == {
        "name": "python",
        "options": {"virtualenv": ".venv", "toolchain": "pip"},
    }
    assert project["main"].rstrip("/") == "infra"
    assert project["description"]
    assert (ROOT / project["main"] / "__main__.py").is_file()


@pytest.mark.parametrize(("stack", "cloud"), sorted(STACK_FILES.items()))
def test_stack_files_select_their_cloud(stack: str, cloud: str, app: object | None) -> None:
    document = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())
    values = {key: str(value) for key, value in document["config"].items()}

    config = StackConfig.from_mapping(values, stack)
    assert config.cloud == cloud
    assert config.prefix == f"switchyard-{stack}"

    rec = run_program(values, stack, app=app)
    assert rec.one(COMPONENT[cloud]).name == f"switchyard-{stack}"
    assert rec.outputs["cloud"] == cloud


def test_stack_files_set_the_provider_location() -> None:
    aws = yaml.safe_load((ROOT / "Pulumi.dev-aws.yaml").read_text())["config"]
    gcp = yaml.safe_load((ROOT / "Pulumi.dev-gcp.yaml").read_text())["config"]
    assert aws == {"switchyard:cloud": "aws", "aws:region": "us-east-1"}
    assert gcp == {
        "switchyard:cloud": "gcp",
        "gcp:project": "switchyard-dev",
        "gcp:region": "us-central1",
    }


# --- the entry point ---------------------------------------------------------------------


def test_importing_main_runs_the_program(
    monkeypatch: pytest.MonkeyPatch, app: object | None
) -> None:
    def program() -> None:
        monkeypatch.delitem(sys.modules, "infra.__main__", raising=False)
        importlib.import_module("infra.__main__")

    rec = run_program({"cloud": "gcp"}, "dev-gcp", program=program, app=app)
    assert rec.one(COMPONENT["gcp"]).name == "switchyard-dev-gcp"


# --- the harness itself ------------------------------------------------------------------


def test_runs_do_not_share_state(app: object | None) -> None:
    first = run_program({"cloud": "aws"}, "one", app=app)
    with pytest.raises(ConfigError):
        run_program({"cloud": "nope"}, "two", app=app)
    third = run_program({"cloud": "gcp"}, "three", app=app)

    assert [r.type for r in first.children()] == [COMPONENT["aws"]]
    assert [r.type for r in third.children()] == [COMPONENT["gcp"]]
    assert not [r for r in third.resources if r.type.startswith(("aws:", "switchyard:aws:"))]
    assert third.outputs["cloud"] == "gcp"
    assert third.stack_urn.startswith("urn:pulumi:three::switchyard::")
    assert all(r.urn.startswith("urn:pulumi:three::") for r in third.resources)


def test_pulumi_config_env_vars_do_not_leak_in(
    monkeypatch: pytest.MonkeyPatch, app: object | None
) -> None:
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps({"switchyard:maxDeliveries": "0"}))
    monkeypatch.setenv("PULUMI_CONFIG_SWITCHYARD_PREFIX", "BAD")
    run_program({"cloud": "aws"}, "dev-aws", app=app)


class _Queue(pulumi.CustomResource):
    def __init__(
        self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("aws:sqs/queue:Queue", name, {**props, "arn": None, "url": None}, opts)


class _Box(pulumi.ComponentResource):
    def __init__(self, name: str) -> None:
        super().__init__("switchyard:test:Box", name)
        self.queue = _Queue(f"{name}-q", {"name": name}, pulumi.ResourceOptions(parent=self))
        self.register_outputs({"queueArn": self.queue.arn})


def test_recording_captures_parents_inputs_secrets_and_leaks() -> None:
    def program() -> None:
        box = _Box("box")
        _Queue(
            "consumer",
            {
                "policy": box.queue.url.apply(lambda url: f"allow {url}"),  # url is not faked
                "token": pulumi.Output.secret("s3cret"),
                "source": box.queue.arn,
            },
        )
        pulumi.export("queueArn", box.queue.arn)
        pulumi.export("token", pulumi.Output.secret("t"))
        identity = pulumi.runtime.invoke("aws:index/getCallerIdentity:getCallerIdentity", {})
        pulumi.export("account", identity.value["accountId"])

    rec = run_program({"cloud": "aws", "aws:region": "eu-west-1"}, "t", program=program)

    box = rec.one("switchyard:test:Box")
    [queue] = rec.children(box)
    assert queue.name == "box-q" and rec.parent_of(queue) == box
    assert {r.name for r in rec.children()} == {"box", "consumer"}
    consumer = rec.named("consumer")
    arn = "arn:aws:sqs:eu-west-1:123456789012:box-q"
    assert consumer.inputs["source"] == arn
    assert consumer.inputs["token"] == "s3cret" and consumer.secret_inputs == {"token"}
    assert queue.urn in consumer.dependencies
    assert rec.outputs == {"queueArn": arn, "token": "t", "account": "123456789012"}
    assert [c.token for c in rec.calls] == ["aws:index/getCallerIdentity:getCallerIdentity"]
    assert rec.secret_outputs == {"token"}
    assert rec.component_outputs[box.urn] == {"queueArn": arn}
    assert rec.none_leaks() == ["aws:sqs/queue:Queue 'consumer' policy: 'allow None'"]


@pytest.mark.parametrize("where", ["program", "apply", "fake"])
def test_failures_surface_instead_of_being_swallowed(where: str) -> None:
    def program() -> None:
        queue = _Queue("q", {"name": "q"})
        if where == "program":
            raise RuntimeError("boom in program")
        if where == "apply":
            queue.arn.apply(lambda _: (_ for _ in ()).throw(RuntimeError("boom in apply")))

    def fake(args: Any, ctx: Any) -> Any:
        raise RuntimeError("boom in fake")

    kwargs: dict[str, Any] = {"fake": fake} if where == "fake" else {}
    with pytest.raises(RuntimeError, match=f"boom in {where}"):
        run_program({"cloud": "aws"}, "t", program=program, **kwargs)


# --- StackConfig.from_mapping, without Pulumi -------------------------------------------


def test_defaults() -> None:
    config = StackConfig.from_mapping({"cloud": "aws"}, "dev")
    assert config == StackConfig(
        cloud="aws",
        stack="dev",
        prefix="switchyard-dev",
        max_deliveries=5,
        memory_mb=256,
        timeout_s=30,
        batch_size=10,
        max_concurrency=None,
        archive_days=7,
        log_retention_days=14,
        alarm_email=None,
        api=False,
        payment_decline_above=Decimal("1000.00"),
    )


def test_every_setting_parses() -> None:
    values = {
        "switchyard:cloud": "aws",
        "switchyard:prefix": "sy-prod",
        "maxDeliveries": "100",
        "memory": "512",
        "timeout": "540",
        "batchSize": "1",
        "maxConcurrency": "20",
        "archiveDays": "31",
        "logRetentionDays": "30",
        "alarmEmail": "ops@example.com",
        "api": "True",
        "paymentDeclineAbove": "250.50",
        "protectData": "true",
        "tracesExporter": "otlp",
        "otlpEndpoint": "http://localhost:4318",
        "otelLayer": "arn:aws:lambda:us-east-1:901920570463:layer:aws-otel-python:1",
        "gcp:project": "ignored-other-namespace",
    }
    assert set(KEYS) <= {k.rpartition(":")[2] for k in values}
    config = StackConfig.from_mapping(values, "prod")
    assert (config.cloud, config.prefix, config.max_deliveries) == ("aws", "sy-prod", 100)
    assert (config.memory_mb, config.timeout_s, config.batch_size) == (512, 540, 1)
    assert (config.max_concurrency, config.archive_days, config.log_retention_days) == (20, 31, 30)
    assert (config.alarm_email, config.api) == ("ops@example.com", True)
    assert config.payment_decline_above == Decimal("250.50")
    assert config.protect_data is True
    assert (config.traces_exporter, config.otlp_endpoint) == ("otlp", "http://localhost:4318")
    assert config.otel_layer == values["otelLayer"]


@pytest.mark.parametrize(
    ("values", "stack", "expected"),
    [
        ({"cloud": "aws", "maxDeliveries": "0"}, "dev",
         ["switchyard:maxDeliveries must be between 1 and 1000, got 0"]),
        ({"cloud": "aws", "maxDeliveries": "1001"}, "dev",
         ["switchyard:maxDeliveries must be between 1 and 1000, got 1001"]),
        ({"cloud": "gcp", "maxDeliveries": "101"}, "dev",
         ["switchyard:maxDeliveries must be between 5 and 100 on gcp, got 101"]),
        ({"cloud": "aws", "maxDeliveries": "2.5"}, "dev",
         ["switchyard:maxDeliveries must be a whole number, got '2.5'"]),
        ({"cloud": "aws", "prefix": "-x"}, "dev", ["switchyard:prefix '-x' is invalid"]),
        ({"cloud": "aws", "prefix": "a" * 21}, "dev", ["at most 20 characters"]),
        ({"cloud": "aws"}, "production-europe", [
            "switchyard:prefix defaults to 'switchyard-production-europe' (from the stack name)",
            "pulumi config set switchyard:prefix",
        ]),
        ({"cloud": "aws", "maxConcurrency": "1"}, "dev",
         ["switchyard:maxConcurrency must be between 2 and 1000 on aws, got 1"]),
        ({"cloud": "gcp", "maxConcurrency": "1"}, "dev",
         ["switchyard:maxConcurrency must be at least 2, got 1"]),
        ({"cloud": "aws", "logRetentionDays": "10"}, "dev",
         ["CloudWatch Logs retention periods", "got 10"]),
        ({"cloud": "gcp", "archiveDays": "32"}, "dev",
         ["switchyard:archiveDays must be between 1 and 31 on gcp, got 32"]),
        ({"cloud": "aws", "timeout": "0"}, "dev",
         ["switchyard:timeout must be between 1 and 540, got 0"]),
        ({"cloud": "aws", "alarmEmail": "ops"}, "dev",
         ["switchyard:alarmEmail must be an email address, got 'ops'"]),
        ({"cloud": "aws", "api": "yes"}, "dev",
         ["switchyard:api must be true or false, got 'yes'"]),
        ({"cloud": "aws", "paymentDeclineAbove": "-1"}, "dev",
         ["switchyard:paymentDeclineAbove must be a non-negative decimal amount, got '-1'"]),
        ({"cloud": "aws", "paymentDeclineAbove": "NaN"}, "dev",
         ["switchyard:paymentDeclineAbove must be a non-negative decimal amount"]),
        ({"cloud": ""}, "dev", ["switchyard:cloud is required"]),
        ({"cloud": "AWS"}, "dev", ["got 'AWS'"]),
    ],
)  # fmt: skip
def test_one_bad_value_gives_one_clear_problem(
    values: dict[str, str], stack: str, expected: list[str]
) -> None:
    with pytest.raises(ConfigError) as caught:
        StackConfig.from_mapping(values, stack)
    assert len(caught.value.problems) == 1, caught.value.problems
    for fragment in expected:
        assert fragment in caught.value.problems[0]


def test_stack_names_are_folded_into_the_default_prefix() -> None:
    assert StackConfig.from_mapping({"cloud": "aws"}, "Dev_EU.1").prefix == "switchyard-dev-eu-1"


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(ConfigError) as caught:
        StackConfig(cloud="gcp", stack="t", prefix="ok", max_deliveries=3)  # type: ignore[arg-type]
    assert "between 5 and 100 on gcp" in str(caught.value)


def test_config_is_frozen() -> None:
    config = StackConfig.from_mapping({"cloud": "aws"}, "dev")
    with pytest.raises(AttributeError):
        config.cloud = "gcp"  # type: ignore[misc]
