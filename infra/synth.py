"""Run the Pulumi program offline under mocks and record the resource graph it registers.

`switchyard synth` and the infra tests share this: no Pulumi CLI, no provider plugins and no
credentials exist where it runs (review, CI, a fresh clone), so `run_program(config, stack)`
runs `infra.program.main` against `pulumi.runtime.set_mocks`, inside `@pulumi.runtime.test`
so every registration drains, and returns a `Recorded`: each resource (type, name, inputs,
parent URN, dependencies), each provider function call, each component's
`register_outputs`, and the stack outputs. `synthesize(stack)` does the same for a stack
file (`Pulumi.<stack>.yaml`) and `to_json` / `to_table` render it deterministically.

Outputs the providers would compute (ARNs, ids) come from a fake: placeholders such as the
account 123456789012, never real values. Every run starts from a clean slate (settings,
root stack, config, PULUMI_CONFIG* env vars) and restores empty settings afterwards. An
exception raised by the program, by an `apply`, or by a fake propagates out of
`run_program`.

This module imports only `pulumi` and the standard library (no other `infra` module at
import time), so it can be loaded before the program has put the repository on sys.path.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pulumi
import pulumi.runtime
from pulumi.runtime import rpc
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime.mocks import MockCallArgs, MockMonitor, MockResourceArgs, Mocks
from pulumi.runtime.sync_await import _ensure_event_loop

if TYPE_CHECKING:
    from handlers.core.app import App

PROJECT: Final = "switchyard"
NAMESPACE: Final = "switchyard"
FAKE_ACCOUNT: Final = "123456789012"
FAKE_PROJECT_NUMBER: Final = "123456789"

FakeState = tuple[str | None, dict[str, Any]]
Fake = Callable[[MockResourceArgs, "FakeContext"], FakeState]
CallFake = Callable[[MockCallArgs, "FakeContext"], dict[str, Any]]

_NONE_WORD: Final = re.compile(r"\bNone\b")
_SIG_KEY: Final = rpc._special_sig_key
_SECRET_SIG: Final = rpc._special_secret_sig


@dataclass(frozen=True, slots=True)
class FakeContext:
    """What fakes may need to know about the run (from the config passed in)."""

    stack: str
    config: Mapping[str, str]  # fully qualified keys, e.g. "aws:region"

    @property
    def aws_region(self) -> str:
        return self.config.get("aws:region", "us-east-1")

    @property
    def gcp_project(self) -> str:
        return self.config.get("gcp:project", "switchyard-test")

    @property
    def gcp_region(self) -> str:
        return self.config.get("gcp:region", "us-central1")


@dataclass(frozen=True, slots=True)
class RecordedResource:
    type: str  # e.g. "aws:sqs/queue:Queue", "switchyard:aws:Stack"
    name: str  # logical name
    inputs: dict[str, Any]  # as sent to the engine: camelCase keys, None-valued args omitted,
    # secrets unwrapped to their plain values (their paths are in `secret_inputs`)
    parent: str | None  # parent URN; top-level resources have the stack's URN
    urn: str
    id: str | None
    custom: bool  # False for ComponentResources
    outputs: dict[str, Any]  # the state the fake returned
    provider: str = ""  # provider reference, "" for the default provider
    dependencies: tuple[str, ...] = ()  # URNs from depends_on and input dependencies
    read: bool = False  # registered by `Resource.get(...)` rather than created
    secret_inputs: frozenset[str] = frozenset()  # paths such as "environment.variables.KEY"
    # Resource options that decide what `pulumi destroy` does (switchyard:protectData).
    protect: bool = False
    retain_on_delete: bool = False


@dataclass(frozen=True, slots=True)
class RecordedCall:
    token: str  # e.g. "aws:index/getCallerIdentity:getCallerIdentity"
    args: dict[str, Any]
    provider: str


@dataclass(frozen=True)
class Recorded:
    project: str
    stack: str
    resources: tuple[RecordedResource, ...]
    calls: tuple[RecordedCall, ...]
    outputs: dict[str, Any]  # stack outputs (pulumi.export), resolved; unknown ones are None
    secret_outputs: frozenset[str]
    component_outputs: dict[str, dict[str, Any]]  # URN -> what register_outputs was given
    stack_urn: str  # parent URN of every top-level resource

    def of_type(self, type_: str) -> list[RecordedResource]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str, name: str | None = None) -> RecordedResource:
        """The single resource of this type (and name): fails loudly on 0 or several."""
        found = [r for r in self.of_type(type_) if name is None or r.name == name]
        if len(found) != 1:
            have = sorted({(r.type, r.name) for r in self.resources})
            raise AssertionError(
                f"expected exactly one {type_}{f' named {name!r}' if name else ''}, "
                f"found {len(found)}; registered: {have}"
            )
        return found[0]

    def named(self, name: str) -> RecordedResource:
        found = [r for r in self.resources if r.name == name]
        if len(found) != 1:
            raise AssertionError(f"expected one resource named {name!r}, found {len(found)}")
        return found[0]

    def by_urn(self, urn: str) -> RecordedResource:
        for r in self.resources:
            if r.urn == urn:
                return r
        raise KeyError(urn)

    def children(self, parent: RecordedResource | None = None) -> list[RecordedResource]:
        """Direct children of `parent`, or the top-level resources when it is None."""
        urn = self.stack_urn if parent is None else parent.urn
        return [r for r in self.resources if r.parent == urn]

    def parent_of(self, resource: RecordedResource) -> RecordedResource | None:
        if resource.parent in (None, self.stack_urn):
            return None
        return self.by_urn(resource.parent)

    def descendants(self, root: RecordedResource) -> list[RecordedResource]:
        out: list[RecordedResource] = []
        todo = [root]
        while todo:
            kids = self.children(todo.pop())
            out.extend(kids)
            todo.extend(kids)
        return out

    def types(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.resources:
            counts[r.type] = counts.get(r.type, 0) + 1
        return counts

    def none_leaks(self) -> list[str]:
        """Every input string containing the word None: an output the fake did not provide
        was formatted into a name, ARN, policy or member. Expect this to be empty."""
        leaks: list[str] = []
        for r in self.resources:
            for path, value in leaves(r.inputs):
                if isinstance(value, str) and _NONE_WORD.search(value):
                    leaks.append(f"{r.type} {r.name!r} {path}: {value!r}")
        return leaks


def _unwrap_secrets(value: Any, path: str, found: set[str]) -> Any:
    # The mock monitor hands secret inputs over in their wire form,
    # {<sig key>: <secret sig>, "value": ...}; tests want the value and a record of the path.
    if isinstance(value, Mapping):
        if value.get(_SIG_KEY) == _SECRET_SIG:
            found.add(path)
            return _unwrap_secrets(value.get("value"), path, found)
        return {
            k: _unwrap_secrets(v, f"{path}.{k}" if path else str(k), found)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_unwrap_secrets(v, f"{path}[{i}]", found) for i, v in enumerate(value)]
    return value


def leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every scalar in nested inputs, with its path (`a.b[2].c`)."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from leaves(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from leaves(item, f"{path}[{i}]")
    else:
        yield path, value


# --- fakes -------------------------------------------------------------------------------


def default_fake(args: MockResourceArgs, ctx: FakeContext) -> FakeState:
    """Echo the inputs as outputs, plus the computed outputs names are usually built from.

    Cloud tests wrap this to add more (e.g. a service account's `email`).
    """
    state = dict(args.inputs)
    resource_id = args.resource_id or f"{args.name}-id"
    if args.typ.startswith("aws:"):
        service = args.typ.split(":")[1].split("/")[0]
        state.setdefault("arn", f"arn:aws:{service}:{ctx.aws_region}:{FAKE_ACCOUNT}:{args.name}")
    elif args.typ.startswith("gcp:"):
        state.setdefault("name", args.name)
        state.setdefault("project", ctx.gcp_project)
        if args.typ == GCP_FUNCTION_V2:
            _fake_function_urls(state, ctx)
    return resource_id, state


GCP_FUNCTION_V2: Final = "gcp:cloudfunctionsv2/function:Function"
#: Cloud Run's region codes in default URLs (`<service>-<hash>-<code>.a.run.app`); the
#: fakes know a few, enough for realistic values (any other region gets "xx").
_RUN_REGION_CODES: Final = {"us-central1": "uc", "us-east1": "ue", "us-east4": "uk",
                            "us-west1": "uw", "europe-west1": "ew", "europe-west4": "ez",
                            "asia-northeast1": "an"}


def _fake_function_urls(state: dict[str, Any], ctx: FakeContext) -> None:
    """A gen2 function's two URLs as the API reports them: `url` on cloudfunctions.net and
    `serviceConfig.uri`, the underlying Cloud Run service's default run.app URL (the
    hash is per project, as Cloud Run's deterministic URLs are)."""
    name = str(state["name"])
    region = str(state.get("location") or ctx.gcp_region)
    digest = hashlib.sha256(ctx.gcp_project.encode()).hexdigest()[:10]
    code = _RUN_REGION_CODES.get(region, "xx")
    state.setdefault("url", f"https://{region}-{ctx.gcp_project}.cloudfunctions.net/{name}")
    service = dict(state.get("serviceConfig") or {})
    service.setdefault("uri", f"https://{name}-{digest}-{code}.a.run.app")
    service.setdefault("service", f"projects/{ctx.gcp_project}/locations/{region}/"
                                  f"services/{name}")
    state["serviceConfig"] = service


_DEFAULT_CALLS: Final[dict[str, Callable[[FakeContext], dict[str, Any]]]] = {
    "aws:index/getCallerIdentity:getCallerIdentity": lambda ctx: {
        "accountId": FAKE_ACCOUNT,
        "arn": f"arn:aws:iam::{FAKE_ACCOUNT}:user/test",
        "userId": "AIDATEST",
        "id": FAKE_ACCOUNT,
    },
    "aws:index/getRegion:getRegion": lambda ctx: {
        "name": ctx.aws_region,
        "region": ctx.aws_region,
        "id": ctx.aws_region,
    },
    "aws:index/getPartition:getPartition": lambda ctx: {
        "partition": "aws",
        "dnsSuffix": "amazonaws.com",
        "id": "aws",
    },
    "gcp:organizations/getProject:getProject": lambda ctx: {
        "projectId": ctx.gcp_project,
        "number": FAKE_PROJECT_NUMBER,
        "name": ctx.gcp_project,
        "id": f"projects/{ctx.gcp_project}",
    },
}


def default_call(args: MockCallArgs, ctx: FakeContext) -> dict[str, Any]:
    """Answer the lookups in `_DEFAULT_CALLS`; any other call returns its arguments."""
    answer = _DEFAULT_CALLS.get(args.token)
    return answer(ctx) if answer else dict(args.args)


# --- recording mocks ---------------------------------------------------------------------


class _Recorder(Mocks):
    """Pulumi `Mocks` that answers through the fakes and remembers every request."""

    def __init__(self, fake: Fake, call: CallFake, ctx: FakeContext) -> None:
        self._fake = fake
        self._call = call
        self._ctx = ctx
        self._lock = threading.Lock()
        # RegisterResource runs on executor threads: the monitor hands the request to
        # new_resource through a thread-local so the parent URN can be recorded with it.
        self._local = threading.local()
        self.resources: list[RecordedResource] = []
        self.calls: list[RecordedCall] = []
        self.component_outputs: dict[str, dict[str, Any]] = {}
        self.stack_urn = ""

    def new_resource(self, args: MockResourceArgs) -> FakeState:
        resource_id, state = self._fake(args, self._ctx)
        self._local.answer = (args, resource_id, state)
        return resource_id, state

    def call(self, args: MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        with self._lock:
            self.calls.append(RecordedCall(args.token, dict(args.args), args.provider))
        return self._call(args, self._ctx), []

    def record(self, request: Any, urn: str, *, read: bool) -> None:
        args, resource_id, state = self._local.answer
        self._local.answer = None
        secret_inputs: set[str] = set()
        resource = RecordedResource(
            type=args.typ,
            name=args.name,
            inputs=_unwrap_secrets(dict(args.inputs), "", secret_inputs),
            parent=request.parent or None,
            urn=urn,
            id=resource_id,
            custom=bool(args.custom) or read,
            outputs=dict(state),
            provider=args.provider or "",
            dependencies=tuple(getattr(request, "dependencies", ())),
            read=read,
            secret_inputs=frozenset(secret_inputs),
            protect=bool(getattr(request, "protect", False)),
            retain_on_delete=bool(getattr(request, "retainOnDelete", False)),
        )
        with self._lock:
            self.resources.append(resource)


class _RecordingMonitor(MockMonitor):
    mocks: _Recorder

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (gRPC method name)
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            self.mocks.stack_urn = response.urn
        else:
            self.mocks.record(request, response.urn, read=False)
        return response

    def ReadResource(self, request: Any) -> Any:  # noqa: N802
        response = super().ReadResource(request)
        self.mocks.record(request, response.urn, read=True)
        return response

    def RegisterResourceOutputs(self, request: Any) -> Any:  # noqa: N802
        # The root stack's own call comes from set_mocks, before the program exports
        # anything, so it is always empty: stack outputs are read from the root resource.
        if request.urn != self.mocks.stack_urn:
            _ensure_event_loop()
            outputs = _unwrap_secrets(rpc.deserialize_properties(request.outputs), "", set())
            with self.mocks._lock:
                self.mocks.component_outputs[request.urn] = dict(outputs)
        return super().RegisterResourceOutputs(request)


# --- running -----------------------------------------------------------------------------


def qualify(config: Mapping[str, object]) -> dict[str, str]:
    """`{"cloud": "aws", "aws:region": ...}` -> `{"switchyard:cloud": "aws", ...}`.

    Bare keys belong to our namespace; values become the strings `pulumi config` holds
    (booleans as true/false).
    """
    out: dict[str, str] = {}
    for key, value in config.items():
        full = key if ":" in key else f"{NAMESPACE}:{key}"
        if isinstance(value, bool):
            out[full] = "true" if value else "false"
        else:
            out[full] = str(value)
    return out


@contextmanager
def _without_pulumi_config_env() -> Iterator[None]:
    # pulumi.Config falls back to PULUMI_CONFIG / PULUMI_CONFIG_<KEY> env vars for keys
    # set_all_config did not set: a developer's shell must not leak into a test run.
    saved = {k: v for k, v in os.environ.items() if k.startswith("PULUMI_CONFIG")}
    for key in saved:
        del os.environ[key]
    try:
        yield
    finally:
        os.environ.update(saved)


@contextmanager
def _app_override(app: App | None) -> Iterator[None]:
    if app is None:
        yield
        return
    import infra.program

    def fixed() -> App:
        return app

    original = infra.program.load_app
    infra.program.load_app = fixed
    try:
        yield
    finally:
        infra.program.load_app = original


def _reset(project: str | None = None, stack: str | None = None, preview: bool = False) -> None:
    # reset_options also clears the root Stack resource: set_mocks only creates a new one
    # when none exists, so skipping this would reuse the previous run's stack and exports.
    pulumi_settings.reset_options(project=project, stack=stack, preview=preview)
    pulumi.runtime.set_all_config({}, [])


def run_program(
    config: Mapping[str, object],
    stack: str = "test",
    *,
    program: Callable[[], object] | None = None,
    app: App | None = None,
    fake: Fake = default_fake,
    calls: CallFake = default_call,
    secrets: tuple[str, ...] = (),
    preview: bool = False,
) -> Recorded:
    """Run the program (default `infra.program.main`) under mocks for `stack` with `config`.

    `config` keys are bare (`cloud`, `maxDeliveries`: the switchyard namespace) or
    qualified (`aws:region`). `secrets` names keys to mark secret. `preview=True` runs as
    `pulumi preview` (outputs the fake does not give are unknown rather than None).
    Whatever the program raises is raised here.
    """
    if program is None:
        import infra.program

        def program() -> object:
            infra.program.main()
            return None

    full_config = qualify(config)
    secret_keys = list(qualify({k: "" for k in secrets}))
    recorder = _Recorder(fake, calls, FakeContext(stack=stack, config=full_config))
    outputs: dict[str, Any] = {}
    secret_outputs: set[str] = set()

    @pulumi.runtime.test
    def run() -> Any:
        program()
        root = pulumi_settings.get_root_resource()
        exports = dict(getattr(root, "outputs", {}))

        async def collect() -> None:
            for name, value in exports.items():
                output = pulumi.Output.from_input(value)
                outputs[name] = await output.future()
                if await output.is_secret():
                    secret_outputs.add(name)

        return collect()

    with _without_pulumi_config_env(), _app_override(app):
        _reset(PROJECT, stack, preview)
        pulumi.runtime.set_all_config(full_config, secret_keys)
        try:
            pulumi.runtime.set_mocks(
                recorder,
                project=PROJECT,
                stack=stack,
                preview=preview,
                monitor=_RecordingMonitor(recorder),
            )
            run()
        finally:
            _reset()

    return Recorded(
        project=PROJECT,
        stack=stack,
        resources=tuple(recorder.resources),
        calls=tuple(recorder.calls),
        outputs=outputs,
        secret_outputs=frozenset(secret_outputs),
        component_outputs=dict(recorder.component_outputs),
        stack_urn=recorder.stack_urn,
    )


# --- synth: stack files in, deterministic documents out ----------------------------------

_ROOT: Final = Path(__file__).resolve().parent.parent
# The program's computed-output placeholders: stated in every document so nobody mistakes
# them for a real account.
PLACEHOLDERS: Final = {
    "aws_account": FAKE_ACCOUNT,
    "gcp_project_number": FAKE_PROJECT_NUMBER,
}


class SynthError(ValueError):
    """The stack cannot be synthesized (unknown stack, unreadable stack file)."""


def stack_names(root: Path = _ROOT) -> list[str]:
    """Stacks with a `Pulumi.<stack>.yaml` next to `Pulumi.yaml`."""
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in root.glob("Pulumi.*.yaml"))


def stack_config(stack: str, root: Path = _ROOT) -> dict[str, str]:
    """The `config:` map of `Pulumi.<stack>.yaml`, as the strings `pulumi config` holds.

    Secure (encrypted) values cannot be read without the stack's key: they are refused with
    a message rather than passed on as ciphertext.
    """
    import yaml

    path = root / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        known = ", ".join(stack_names(root)) or "none"
        raise SynthError(f"no stack file {path.name} in {root} (stacks here: {known})")
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise SynthError(f"{path.name} is not valid YAML: {exc}") from None
    raw = document.get("config") or {}
    if not isinstance(document, dict) or not isinstance(raw, dict):
        raise SynthError(f"{path.name}: 'config' must be a mapping of key: value")
    config: dict[str, str] = {}
    problems: list[str] = []
    for key, value in raw.items():
        if isinstance(value, dict) and "secure" in value:
            problems.append(f"{key} is a secret (needs the stack's key)")
        elif isinstance(value, (dict, list)):
            problems.append(f"{key} is structured config, which the program does not read")
        else:
            config[str(key)] = _config_string(value)
    if problems:
        raise SynthError(f"{path.name}: " + "; ".join(problems))
    return config


def _config_string(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def synthesize(
    stack: str, root: Path = _ROOT, overrides: Mapping[str, object] | None = None
) -> Recorded:
    """Run the real program for `stack` (its stack file's config) under mocks."""
    config: dict[str, object] = dict(stack_config(stack, root))
    config.update(overrides or {})
    return run_program(config, stack)


def _sorted_resources(rec: Recorded) -> list[RecordedResource]:
    # Registration order depends on thread scheduling; the URN (type + name) does not.
    return sorted(rec.resources, key=lambda r: r.urn)


def _plain(value: Any) -> Any:
    # JSON-safe and order-independent: tuples and sets become lists, sets sorted; assets
    # and archives become their kind, path and content hash (the bytes are not the graph).
    if isinstance(value, (pulumi.Asset, pulumi.Archive)):
        return _asset(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted(_plain(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)  # the engine's numbers are floats: 30.0 reads as 30
    return value


def _asset(value: pulumi.Asset | pulumi.Archive) -> dict[str, Any]:
    kind = type(value).__name__
    if isinstance(value, (pulumi.FileAsset, pulumi.FileArchive)):
        path = Path(str(value.path)).resolve()
        shown = path.relative_to(_ROOT).as_posix() if path.is_relative_to(_ROOT) else str(path)
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        return {"kind": kind, "path": shown, "sha256": digest}
    if isinstance(value, pulumi.StringAsset):
        return {"kind": kind, "sha256": hashlib.sha256(value.text.encode()).hexdigest()}
    if isinstance(value, (pulumi.RemoteAsset, pulumi.RemoteArchive)):
        return {"kind": kind, "uri": value.uri}
    if isinstance(value, pulumi.AssetArchive):
        return {"kind": kind, "assets": {k: _plain(v) for k, v in value.assets.items()}}
    return {"kind": kind}


def graph(rec: Recorded) -> dict[str, Any]:
    """The resource graph as plain data: what `--format json` writes."""
    return {
        "project": rec.project,
        "stack": rec.stack,
        "placeholders": dict(PLACEHOLDERS),
        "resources": [
            {
                "urn": r.urn,
                "type": r.type,
                "name": r.name,
                "custom": r.custom,
                "parent": None if r.parent in (None, rec.stack_urn) else r.parent,
                "dependencies": sorted(set(r.dependencies)),
                "inputs": _plain(r.inputs),
                "secretInputs": sorted(r.secret_inputs),
            }
            for r in _sorted_resources(rec)
        ],
        "outputs": _plain(rec.outputs),
        "secretOutputs": sorted(rec.secret_outputs),
    }


def to_json(rec: Recorded) -> str:
    """Byte-identical for the same program and config, whatever PYTHONHASHSEED is."""
    return json.dumps(graph(rec), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def to_table(rec: Recorded) -> str:
    """Resource counts by type, providers first, then our components."""
    counts = rec.types()
    rows = sorted(counts.items(), key=lambda kv: (kv[0].startswith("switchyard:"), kv[0]))
    width = max([len("type"), *(len(t) for t in counts)])
    lines = [f"{'type'.ljust(width)}  count", f"{'-' * width}  -----"]
    lines += [f"{t.ljust(width)}  {n:5d}" for t, n in rows]
    custom = sum(1 for r in rec.resources if r.custom)
    lines.append(f"{'-' * width}  -----")
    lines.append(f"{'cloud resources'.ljust(width)}  {custom:5d}")
    lines.append(f"{'components'.ljust(width)}  {len(rec.resources) - custom:5d}")
    lines.append(f"{'total'.ljust(width)}  {len(rec.resources):5d}")
    return "\n".join(lines) + "\n"


__all__ = [
    "PLACEHOLDERS",
    "SynthError",
    "graph",
    "stack_config",
    "stack_names",
    "synthesize",
    "to_json",
    "to_table",
    "FakeContext",
    "Recorded",
    "RecordedCall",
    "RecordedResource",
    "default_call",
    "default_fake",
    "qualify",
    "run_program",
]
