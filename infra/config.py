"""The stack config: read once from `pulumi.Config("switchyard")`, validated, then frozen.

Everything the program needs from `pulumi config` is parsed here into one `StackConfig`
and passed down; no component reads `pulumi.Config` itself. Validation is a pure function
of a string mapping (`StackConfig.from_mapping`) so it is unit-testable without Pulumi, and
it collects every problem before raising a single `ConfigError` that names each one.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Literal, TypeGuard, get_args

from pulumi.errors import RunError

NAMESPACE: Final = "switchyard"

Cloud = Literal["aws", "gcp"]
CLOUDS: Final[tuple[str, ...]] = get_args(Cloud)


def _is_cloud(value: object) -> TypeGuard[Cloud]:
    return value in CLOUDS

PREFIX_MAX: Final = 20
_PREFIX: Final = re.compile(r"^[a-z](?:[a-z0-9-]*[a-z0-9])?$")
_INT: Final = re.compile(r"^[+-]?[0-9]+$")
_EMAIL: Final = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_BOOLS: Final = {"true": True, "false": False}

# CloudWatch Logs accepts only these retention periods; anything else fails at deploy time,
# so it is caught here instead.
CLOUDWATCH_RETENTION_DAYS: Final = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545,
    731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Range:
    low: int
    high: int | None
    why: str = ""


# Limits that hold whatever the cloud; `_CLOUD_INT_RANGES` narrows some per cloud.
_INT_RANGES: Final[dict[str, _Range]] = {
    "max_deliveries": _Range(1, 1000, "SQS maxReceiveCount accepts 1-1000"),
    "memory_mb": _Range(128, 10240, "Lambda accepts 128-10240 MB"),
    "timeout_s": _Range(1, 540, "540 s is the Cloud Functions event-driven maximum"),
    "batch_size": _Range(1, 10000, "the SQS event source accepts 1-10000"),
    "max_concurrency": _Range(2, None, "the SQS event source's maximum concurrency is >= 2"),
    "archive_days": _Range(1, 3650),
    "log_retention_days": _Range(1, 3653),
}
_CLOUD_INT_RANGES: Final[dict[str, dict[str, _Range]]] = {
    "aws": {
        "max_concurrency": _Range(2, 1000, "the SQS event source's maximum concurrency is 2-1000"),
    },
    "gcp": {
        "max_deliveries": _Range(
            5,
            100,
            "Pub/Sub's dead_letter_policy.max_delivery_attempts accepts only 5-100",
        ),
        "archive_days": _Range(1, 31, "Pub/Sub topic message retention is at most 31 days"),
    },
}


class ConfigError(ValueError, RunError):
    """The stack config is invalid; `problems` names every problem found, not just the first.

    It is also a `pulumi.RunError` so `pulumi up` prints the message alone, without a
    Python traceback the user does not need.
    """

    def __init__(self, stack: str, problems: Iterable[str]) -> None:
        self.stack = stack
        self.problems: tuple[str, ...] = tuple(problems)
        count = len(self.problems)
        header = (
            f"invalid '{NAMESPACE}' config for stack '{stack}' "
            f"({count} problem{'s' if count != 1 else ''}):"
        )
        super().__init__("\n".join([header, *(f"  - {p}" for p in self.problems)]))


@dataclass(frozen=True, slots=True)
class _Key:
    """One config key: its spelling in `pulumi config` and the field it fills."""

    key: str
    attr: str
    parse: Callable[[str], Any]


def _parse_int(raw: str) -> int:
    if not _INT.match(raw.strip()):
        raise ValueError(f"must be a whole number, got '{raw}'")
    return int(raw.strip())


def _parse_bool(raw: str) -> bool:
    try:
        return _BOOLS[raw.strip().lower()]
    except KeyError:
        raise ValueError(f"must be true or false, got '{raw}'") from None


def _parse_decimal(raw: str) -> Decimal:
    try:
        value = Decimal(raw.strip())
    except InvalidOperation:
        raise ValueError(f"must be a decimal amount such as 1000.00, got '{raw}'") from None
    if not value.is_finite() or value < 0:
        raise ValueError(f"must be a non-negative decimal amount, got '{raw}'")
    return value


def _parse_str(raw: str) -> str:
    return raw.strip()


# Table of every key the program understands, in `pulumi config` spelling.
_KEYS: Final[tuple[_Key, ...]] = (
    _Key("cloud", "cloud", _parse_str),
    _Key("prefix", "prefix", _parse_str),
    _Key("maxDeliveries", "max_deliveries", _parse_int),
    _Key("memory", "memory_mb", _parse_int),
    _Key("timeout", "timeout_s", _parse_int),
    _Key("batchSize", "batch_size", _parse_int),
    _Key("maxConcurrency", "max_concurrency", _parse_int),
    _Key("archiveDays", "archive_days", _parse_int),
    _Key("logRetentionDays", "log_retention_days", _parse_int),
    _Key("alarmEmail", "alarm_email", _parse_str),
    _Key("api", "api", _parse_bool),
    _Key("paymentDeclineAbove", "payment_decline_above", _parse_decimal),
    _Key("protectData", "protect_data", _parse_bool),
    _Key("tracesExporter", "traces_exporter", _parse_str),
    _Key("otlpEndpoint", "otlp_endpoint", _parse_str),
    _Key("otelLayer", "otel_layer", _parse_str),
)
KEYS: Final[tuple[str, ...]] = tuple(k.key for k in _KEYS)
_KEY_OF: Final[dict[str, str]] = {k.attr: k.key for k in _KEYS}


def _full(attr_or_key: str) -> str:
    return f"{NAMESPACE}:{_KEY_OF.get(attr_or_key, attr_or_key)}"


def default_prefix(stack: str) -> str:
    """`switchyard-<stack>`, with the stack name folded to the characters names allow."""
    folded = re.sub(r"[^a-z0-9-]+", "-", stack.lower()).strip("-")
    return f"{NAMESPACE}-{folded}" if folded else NAMESPACE


@dataclass(frozen=True, slots=True)
class StackConfig:
    """Typed, validated stack config. Build it with `from_pulumi()` or `from_mapping()`."""

    cloud: Cloud
    stack: str
    prefix: str
    max_deliveries: int = 5
    memory_mb: int = 256
    timeout_s: int = 30
    batch_size: int = 10
    max_concurrency: int | None = None
    archive_days: int = 7
    log_retention_days: int = 14
    alarm_email: str | None = None
    api: bool = False
    payment_decline_above: Decimal = Decimal("1000.00")
    # Production stacks: tables, databases and buckets survive `pulumi destroy` (see
    # infra/protection.py); off, a destroy removes everything the stack created.
    protect_data: bool = False
    # OpenTelemetry spans from every function (README "Tracing"): the exporter and OTLP
    # endpoint become OTEL_* variables; on AWS the layer that brings the packages.
    traces_exporter: str | None = None
    otlp_endpoint: str | None = None
    otel_layer: str | None = None
    # Keys set with `pulumi config set --secret`: components must wrap those values in
    # `pulumi.Output.secret` so they stay encrypted in the state.
    secret_keys: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        # Direct construction (tests, other tools) gets the same checks as from_mapping.
        problems = _value_problems(self, prefix_from_stack=False)
        if problems:
            raise ConfigError(self.stack, problems)

    def tracing_environment(self) -> dict[str, str]:
        """The OTEL_* variables every function gets (none while tracing is off)."""
        if self.traces_exporter in (None, "none"):
            return {}
        found = {"OTEL_TRACES_EXPORTER": str(self.traces_exporter)}
        if self.otlp_endpoint:
            found["OTEL_EXPORTER_OTLP_ENDPOINT"] = self.otlp_endpoint
        return found

    def tracing_layers(self) -> list[str]:
        """Lambda layers for tracing (the packages are not in the default zip)."""
        return [self.otel_layer] if self.otel_layer and self.tracing_environment() else []

    def is_secret(self, key: str) -> bool:
        """Whether `key` (config spelling, e.g. 'alarmEmail') was set as a secret."""
        return key in self.secret_keys

    @classmethod
    def from_mapping(
        cls,
        values: Mapping[str, str],
        stack: str,
        *,
        secret_keys: Iterable[str] = (),
    ) -> StackConfig:
        """Parse and validate config values.

        Keys are bare (`maxDeliveries`) or qualified with our namespace
        (`switchyard:maxDeliveries`); keys of other namespaces (`aws:region`) are ignored,
        so a stack file's whole `config:` map can be passed. Unknown keys of our namespace
        are errors: a typo must not silently fall back to a default.
        """
        problems: list[str] = []
        own: dict[str, str] = {}
        for raw_key, raw in values.items():
            namespace, sep, key = raw_key.rpartition(":")
            if sep and namespace != NAMESPACE:
                continue
            own[key] = raw if isinstance(raw, str) else str(raw)

        for key in sorted(set(own) - set(KEYS)):
            close = difflib.get_close_matches(key, KEYS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(KEYS)})"
            problems.append(f"{_full(key)} is not a known setting{hint}")

        parsed: dict[str, Any] = {}
        for spec in _KEYS:
            text = own.get(spec.key)
            if text is None:
                continue
            try:
                parsed[spec.attr] = spec.parse(text)
            except ValueError as exc:
                problems.append(f"{_full(spec.key)} {exc}")

        cloud = parsed.pop("cloud", None) or None
        if cloud is None:
            problems.insert(
                0,
                f"{_full('cloud')} is required: choose 'aws' or 'gcp' "
                f"(pulumi config set {_full('cloud')} aws)",
            )
        elif cloud not in CLOUDS:
            problems.insert(0, f"{_full('cloud')} must be 'aws' or 'gcp', got '{cloud}'")
            cloud = None

        prefix_from_stack = not parsed.get("prefix")
        prefix = parsed.pop("prefix", None) or default_prefix(stack)
        candidate = _Candidate(cloud=cloud, stack=stack, prefix=prefix, values=parsed)
        problems.extend(_value_problems(candidate, prefix_from_stack=prefix_from_stack))
        if problems or not _is_cloud(cloud):  # an unknown cloud is always a problem above
            raise ConfigError(stack, problems)

        secrets = {k.rpartition(":")[2] for k in secret_keys}
        return cls(
            cloud=cloud,
            stack=stack,
            prefix=prefix,
            secret_keys=frozenset(secrets & set(KEYS)),
            **parsed,
        )

    @classmethod
    def from_pulumi(cls) -> StackConfig:
        """Read the `switchyard` namespace of the running stack's config (once per run)."""
        import pulumi
        import pulumi.runtime

        # Created here, never at import: the stack's config only exists once Pulumi (or a
        # test's set_all_config) has set it up.
        config = pulumi.Config(NAMESPACE)
        values: dict[str, str] = {}
        for key in (*KEYS, *_extra_keys()):
            raw = config.get(key)
            if raw is not None:
                values[key] = raw
        secrets = [k for k in values if pulumi.runtime.is_config_secret(config.full_key(k))]
        return cls.from_mapping(values, pulumi.get_stack(), secret_keys=secrets)


@dataclass(frozen=True, slots=True)
class _Candidate:
    """Values parsed so far, checked together before a `StackConfig` is built."""

    cloud: str | None
    stack: str
    prefix: str
    values: Mapping[str, Any]

    def __getattr__(self, attr: str) -> Any:
        if attr in self.values:
            return self.values[attr]
        return _DEFAULTS[attr]


def _value_problems(config: StackConfig | _Candidate, *, prefix_from_stack: bool) -> list[str]:
    """Every range/format problem of already-typed values."""
    problems: list[str] = []

    prefix = config.prefix
    if not _PREFIX.match(prefix) or len(prefix) > PREFIX_MAX:
        rule = (
            f"lowercase letters, digits and hyphens, starting with a letter, not ending with "
            f"a hyphen, at most {PREFIX_MAX} characters so derived names such as "
            f"'<prefix>-<consumer>-dlq' fit provider limits (e.g. 30 for GCP service accounts)"
        )
        if prefix_from_stack:
            problems.append(
                f"{_full('prefix')} defaults to '{prefix}' (from the stack name), which breaks "
                f"the rule: {rule}; set a shorter one with "
                f"`pulumi config set {_full('prefix')} <name>`"
            )
        else:
            problems.append(f"{_full('prefix')} '{prefix}' is invalid: use {rule}")

    cloud_ranges = _CLOUD_INT_RANGES.get(config.cloud or "", {})
    for attr, rng in {**_INT_RANGES, **cloud_ranges}.items():
        value = getattr(config, attr)
        if value is None and _DEFAULTS.get(attr, 0) is None:
            continue  # optional and unset
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{_full(attr)} must be a whole number, got {value!r}")
            continue
        if value < rng.low or (rng.high is not None and value > rng.high):
            bounds = f"between {rng.low} and {rng.high}" if rng.high else f"at least {rng.low}"
            where = f" on {config.cloud}" if attr in cloud_ranges else ""
            why = f" ({rng.why})" if rng.why else ""
            problems.append(f"{_full(attr)} must be {bounds}{where}, got {value}{why}")

    if config.cloud == "aws" and config.log_retention_days not in CLOUDWATCH_RETENTION_DAYS:
        allowed = ", ".join(str(d) for d in CLOUDWATCH_RETENTION_DAYS)
        problems.append(
            f"{_full('log_retention_days')} must be one of the CloudWatch Logs retention "
            f"periods ({allowed}) on aws, got {config.log_retention_days}"
        )

    email = config.alarm_email
    if email is not None and not _EMAIL.match(email):
        problems.append(f"{_full('alarm_email')} must be an email address, got '{email}'")

    amount = config.payment_decline_above
    if not isinstance(amount, Decimal) or not amount.is_finite() or amount < 0:
        problems.append(
            f"{_full('payment_decline_above')} must be a non-negative decimal, got {amount!r}"
        )

    problems.extend(_tracing_problems(config))

    for flag in ("api", "protect_data"):
        if not isinstance(getattr(config, flag), bool):
            problems.append(f"{_full(flag)} must be true or false, got {getattr(config, flag)!r}")

    if isinstance(config, StackConfig) and config.cloud not in CLOUDS:
        problems.insert(0, f"{_full('cloud')} must be 'aws' or 'gcp', got '{config.cloud}'")
    return problems


_TRACES_EXPORTERS: Final = ("otlp", "console", "none")
_LAYER_ARN: Final = re.compile(
    r"^arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:layer:[A-Za-z0-9_-]+:\d+$")


def _tracing_problems(config: StackConfig | _Candidate) -> list[str]:
    problems: list[str] = []
    exporter, endpoint, layer = config.traces_exporter, config.otlp_endpoint, config.otel_layer
    if exporter is not None and exporter not in _TRACES_EXPORTERS:
        problems.append(f"{_full('traces_exporter')} must be one of "
                        f"{', '.join(_TRACES_EXPORTERS)}, got '{exporter}'")
    if endpoint and not re.match(r"^https?://[^\s/]+", endpoint):
        problems.append(f"{_full('otlp_endpoint')} must be an http(s) URL, got '{endpoint}'")
    if layer and config.cloud == "gcp":
        problems.append(f"{_full('otel_layer')} is for aws (Lambda layers); on gcp the "
                        "functions install OpenTelemetry from their requirements.txt")
    elif layer and not _LAYER_ARN.match(layer):
        problems.append(f"{_full('otel_layer')} must be a Lambda layer version ARN "
                        f"(arn:aws:lambda:REGION:ACCOUNT:layer:NAME:VERSION), got '{layer}'")
    if config.cloud == "aws" and exporter in ("otlp", "console") and not layer:
        problems.append(f"{_full('traces_exporter')} {exporter} on aws needs "
                        f"{_full('otel_layer')}: the Lambda zip carries no OpenTelemetry, "
                        "attach the AWS Distro for OpenTelemetry Python layer of your region")
    return problems


_DEFAULTS: Final[dict[str, Any]] = {
    f.name: f.default for f in fields(StackConfig) if f.default is not MISSING
}


# The `type:` each key has in Pulumi.yaml's `config:` block. Pulumi's project config
# schema knows string, integer, boolean and array; a decimal amount is a string there (it
# is parsed here, exactly, never as a float).
_SCHEMA_TYPES: Final[dict[Callable[[str], Any], str]] = {
    _parse_str: "string", _parse_int: "integer", _parse_bool: "boolean",
    _parse_decimal: "string",
}


def schema() -> dict[str, dict[str, Any]]:
    """Each key's project-config type and default, as Pulumi.yaml must declare them.

    Pulumi applies a declared default to every stack that does not set the key, so a key
    whose default is computed (`prefix`, from the stack name) or absent (`cloud`, which is
    required; `maxConcurrency`, `alarmEmail`, optional) must declare none.
    """
    out: dict[str, dict[str, Any]] = {}
    for spec in _KEYS:
        entry: dict[str, Any] = {"type": _SCHEMA_TYPES[spec.parse]}
        default = _DEFAULTS.get(spec.attr)
        if default is not None:
            entry["default"] = str(default) if isinstance(default, Decimal) else default
        out[_full(spec.key)] = entry
    return out


def _extra_keys() -> list[str]:
    """Our namespace's keys the stack sets beyond `KEYS` (typos, removed settings).

    `pulumi.Config` cannot list keys, so this looks at the runtime's config map (filled
    from the engine's PULUMI_CONFIG, or by `set_all_config` in tests); without it a typo
    such as `maxDelivery` would be ignored and the default used silently.
    """
    from pulumi.runtime import config as runtime_config

    known = set(KEYS)
    found: set[str] = set()
    try:
        full_keys = [*runtime_config.get_config_env(), *runtime_config.CONFIG.get()]
    except Exception:  # noqa: BLE001  an SDK without the map only loses typo detection
        return []
    for full_key in full_keys:
        namespace, _, key = full_key.partition(":")
        if namespace == NAMESPACE and key not in known:
            found.add(key)
    return sorted(found)
