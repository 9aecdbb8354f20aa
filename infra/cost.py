"""Monthly cost estimate of a stack, from its synthesized resource graph and a price table.

What is deployed comes from the graph (`infra.synth`): how many consumer functions and
with how much memory, how many queues, alarms and keys, and how many state transitions
(Step Functions) or steps (Workflows) one saga runs on its success path. What one event
costs in compute and database operations comes from the bench (`bench/results/latest.json`,
written by `make bench`; the default in `infra/prices.json` when it is missing). Prices
are data (`infra/prices.json`), each with its source page and the date it was read.

The traffic model, stated so it can be argued with:
- `events_per_day` are deliveries: one event on the bus, consumed by one function.
- each delivery is one function invocation (batches would divide AWS invocations by up to
  `batchSize`: an upper bound), billed for the measured CPU plus the wall time of its
  database calls (`store_call_ms` per call), on AWS per 1 ms, on GCP per 100 ms;
- database operations per delivery are the bench's measured reads and writes; DynamoDB
  bills a write inside a multi-item transaction twice, Firestore reads such a document
  in the transaction first;
- `sagas_per_day` (default `sagas_per_event` x events) each run the saga's success path:
  its state transitions or workflow steps, and one function invocation per task step
  (priced with the same per-event CPU and store operations), and end in one notification;
- on AWS each SQS event source mapping also long-polls its queue while idle.
Free tiers are not applied. Logs, metrics, data transfer and storage are not included.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from infra.synth import Recorded

ROOT: Final = Path(__file__).resolve().parent.parent
PRICES: Final = Path(__file__).resolve().parent / "prices.json"
MEASURED: Final = ROOT / "bench" / "results" / "latest.json"


class CostError(ValueError):
    """The estimate cannot be made (bad price table, unknown cloud, bad input)."""


@dataclass(frozen=True, slots=True)
class Line:
    service: str
    quantity: float
    unit: str
    usd: float


@dataclass(frozen=True, slots=True)
class Estimate:
    stack: str
    cloud: str
    events_per_day: int
    sagas_per_day: float
    lines: tuple[Line, ...]
    per_event: Mapping[str, float]
    per_event_source: str
    prices_date: str

    @property
    def total(self) -> float:
        return sum(line.usd for line in self.lines)


@dataclass(frozen=True, slots=True)
class Deployed:
    """What the graph says is deployed, as far as the bill is concerned."""

    consumer_memory_mb: tuple[int, ...]  # one per consumer function
    consumer_vcpu: tuple[float | None, ...]  # GCP: explicit availableCpu, else None
    step_memory_mb: int
    step_vcpu: float | None
    polled_queues: int  # queues read by an SQS event source mapping (AWS)
    alarms: int
    kms_keys: int
    saga_transitions: int  # AWS: per execution on the success path; GCP: workflow steps
    saga_task_calls: int  # function invocations per execution on the success path


def load_prices(path: Path = PRICES) -> dict[str, Any]:
    try:
        prices: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CostError(f"cannot read the price table {path}: {exc}") from None
    problems = []
    for cloud in ("aws", "gcp"):
        for name, price in prices.get(cloud, {}).get("prices", {}).items():
            missing = [k for k in ("usd", "per", "unit", "source", "date") if k not in price]
            if missing:
                problems.append(f"{cloud}.{name} lacks {', '.join(missing)}")
    if problems:
        raise CostError(f"price table {path.name}: " + "; ".join(problems))
    return prices


def measured_per_event(cloud: str, prices: Mapping[str, Any],
                       path: Path = MEASURED) -> tuple[dict[str, float], str]:
    """The bench's per-event CPU and store operations for `cloud`, or the default."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        values = document["per_event"][cloud]
        return ({k: float(values[k]) for k in ("cpu_us", "reads", "writes",
                                                "transactional_writes")},
                f"measured by make bench on {document.get('date', '?')}")
    except (OSError, ValueError, KeyError, TypeError):
        default = prices["assumptions"]["default_per_event"]
        return ({k: float(default[k]) for k in ("cpu_us", "reads", "writes",
                                                 "transactional_writes")},
                "default from infra/prices.json (run make bench to measure)")


# --- reading the graph -------------------------------------------------------------------


def deployed(rec: Recorded) -> Deployed:
    """Derive what is billed from the recorded resources."""
    from infra.diagram import topology

    topo = topology(rec)
    fed = {e.target for e in topo.edges if topo.roles.get(e.source) in ("queue", "route")}
    by_urn = {r.urn: r for r in rec.resources}
    consumers = [by_urn[u] for u in sorted(fed) if topo.roles.get(u) == "function"]
    sagas = [by_urn[u] for u, role in topo.roles.items() if role == "saga"]
    steps = sorted({by_urn[e.target].urn for e in topo.edges
                    if topo.roles.get(e.source) == "saga"
                    and topo.roles.get(e.target) == "function"})
    transitions = calls = 0
    for saga in sagas:
        if saga.type.startswith("aws:"):
            t, c = asl_success_path(saga.inputs.get("definition", "{}"))
        else:
            t, c = workflow_success_path(saga.inputs.get("sourceContents", ""))
        transitions, calls = transitions + t, calls + c
    step = by_urn[steps[0]] if steps else None
    return Deployed(
        consumer_memory_mb=tuple(_memory_mb(r.inputs) for r in consumers),
        consumer_vcpu=tuple(_vcpu(r.inputs) for r in consumers),
        step_memory_mb=_memory_mb(step.inputs) if step else 0,
        step_vcpu=_vcpu(step.inputs) if step else None,
        polled_queues=len(rec.of_type("aws:lambda/eventSourceMapping:EventSourceMapping")),
        alarms=len(rec.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")),
        kms_keys=len(rec.of_type("aws:kms/key:Key")),
        saga_transitions=transitions,
        saga_task_calls=calls,
    )


_MEMORY: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(Mi|M|Gi|G)?\s*$")
_MEMORY_SCALE: Final = {None: 1.0, "M": 1.0, "Mi": 1.0, "G": 1024.0, "Gi": 1024.0}


def _memory_mb(inputs: Mapping[str, Any]) -> int:
    if "memorySize" in inputs:
        return int(inputs["memorySize"])
    raw = str((inputs.get("serviceConfig") or {}).get("availableMemory", "256M"))
    found = _MEMORY.match(raw)
    if not found:
        raise CostError(f"cannot read the function memory {raw!r}")
    return int(float(found.group(1)) * _MEMORY_SCALE[found.group(2)])


def _vcpu(inputs: Mapping[str, Any]) -> float | None:
    raw = (inputs.get("serviceConfig") or {}).get("availableCpu")
    return float(raw) if raw else None


def asl_success_path(definition: str) -> tuple[int, int]:
    """(states entered, Task states) from StartAt to the end, every Choice taking its
    Default (the compiled saga's 'step succeeded' branch)."""
    try:
        doc = json.loads(definition)
        states, name = doc["States"], doc["StartAt"]
    except (ValueError, KeyError, TypeError):
        raise CostError("the state machine definition is not ASL JSON") from None
    entered = tasks = 0
    while name is not None and entered < 10_000:
        state = states[name]
        entered += 1
        tasks += state["Type"] == "Task"
        if state.get("End") or state["Type"] in ("Succeed", "Fail"):
            break
        name = state.get("Default") if state["Type"] == "Choice" else state.get("Next")
    return entered, tasks


def workflow_success_path(source: str) -> tuple[int, int]:
    """(steps executed, function calls) of a Cloud Workflows YAML's `main` on the path
    where every step succeeds: a switch takes its first condition, a `try` its body, a
    call of a subworkflow adds that subworkflow's steps."""
    import yaml

    try:
        doc = yaml.safe_load(source)
        main = doc["main"]["steps"]
    except (yaml.YAMLError, KeyError, TypeError):
        raise CostError("the workflow source is not Workflows YAML with a main") from None

    def walk(steps: list[dict[str, Any]]) -> tuple[int, int]:
        index = {next(iter(s)): i for i, s in enumerate(steps)}
        i, executed, calls = 0, 0, 0
        while 0 <= i < len(steps) and executed < 10_000:
            name, body = next(iter(steps[i].items()))
            executed += 1
            call = body.get("call") or (body.get("try") or {}).get("call")
            if call in doc and call != "main":
                sub_steps, sub_calls = walk(doc[call]["steps"])
                executed, calls = executed + sub_steps, calls + sub_calls
            elif isinstance(call, str) and call.startswith("http."):
                calls += 1
            target = None
            if "switch" in body:
                target = body["switch"][0].get("next")
            elif "next" in body:
                target = body["next"]
            if "return" in body or "raise" in body or target == "end":
                break
            i = index[target] if target in index else i + 1
        return executed, calls

    return walk(main)


# --- pricing -----------------------------------------------------------------------------


def _usd(prices: Mapping[str, Any], cloud: str, name: str, quantity: float) -> float:
    price = prices[cloud]["prices"][name]
    return quantity * float(price["usd"]) / float(price["per"])


def estimate(rec: Recorded, events_per_day: int, *, sagas_per_day: float | None = None,
             prices: Mapping[str, Any] | None = None,
             per_event: Mapping[str, float] | None = None,
             per_event_source: str = "given") -> Estimate:
    """The monthly estimate for a recorded stack (see the module docstring)."""
    if events_per_day < 0:
        raise CostError(f"events per day must be 0 or more, got {events_per_day}")
    prices = prices or load_prices()
    cloud = "aws" if any(r.type.startswith("aws:") for r in rec.resources) else "gcp"
    if per_event is None:
        per_event, per_event_source = measured_per_event(cloud, prices)
    assumptions = prices["assumptions"]
    days = float(prices["month_days"])
    sagas = assumptions["sagas_per_event"] * events_per_day if sagas_per_day is None \
        else sagas_per_day
    if sagas < 0:
        raise CostError(f"sagas per day must be 0 or more, got {sagas}")
    graph = deployed(rec)
    if not graph.consumer_memory_mb:
        raise CostError(f"stack {rec.stack} has no consumer functions to price")
    events = events_per_day * days
    executions = sagas * days
    store_calls = per_event["reads"] + per_event["writes"]
    wall_ms = per_event["cpu_us"] / 1000 + store_calls * assumptions["store_call_ms"][cloud]
    # Deliveries spread evenly over the consumers, each billed at its own memory.
    mean_mb = sum(graph.consumer_memory_mb) / len(graph.consumer_memory_mb)
    step_calls = executions * graph.saga_task_calls
    lines: list[Line] = []
    if cloud == "aws":
        billed_s = math.ceil(wall_ms) / 1000
        gb_s = events * billed_s * mean_mb / 1024 + step_calls * billed_s * \
            graph.step_memory_mb / 1024
        wru = events * (per_event["writes"] + per_event["transactional_writes"]) + \
            step_calls * (per_event["writes"] + per_event["transactional_writes"])
        rru = (events + step_calls) * per_event["reads"]
        idle = graph.polled_queues * assumptions["sqs_idle_pollers"] * \
            86_400 / assumptions["sqs_idle_poll_seconds"] * days
        sqs = events * assumptions["sqs_requests_per_delivery"] + idle
        lines += [
            Line("EventBridge", events, "events", _usd(prices, cloud,
                                                      "eventbridge_custom_events", events)),
            Line("SQS", sqs, "requests", _usd(prices, cloud, "sqs_requests", sqs)),
            Line("Lambda requests", events + step_calls, "invocations",
                 _usd(prices, cloud, "lambda_requests", events + step_calls)),
            Line("Lambda duration", gb_s, "GB-s",
                 _usd(prices, cloud, "lambda_gb_second_arm64", gb_s)),
            Line("DynamoDB writes", wru, "WRU", _usd(prices, cloud, "dynamodb_write_units", wru)),
            Line("DynamoDB reads", rru, "RRU", _usd(prices, cloud, "dynamodb_read_units", rru)),
            Line("Step Functions", executions * graph.saga_transitions, "transitions",
                 _usd(prices, cloud, "stepfunctions_transitions",
                      executions * graph.saga_transitions)),
            Line("SNS", executions, "publishes", _usd(prices, cloud, "sns_publishes",
                                                      executions)),
            Line("CloudWatch alarms", graph.alarms, "alarms",
                 _usd(prices, cloud, "cloudwatch_alarms", graph.alarms)),
            Line("KMS keys", graph.kms_keys, "keys", _usd(prices, cloud, "kms_keys",
                                                          graph.kms_keys)),
        ]
    else:
        increment = prices["gcp"]["billing_increment_ms"]
        billed_s = math.ceil(wall_ms / increment) * increment / 1000
        vcpu_table = prices["gcp"]["vcpu_for_memory_mb"]

        def vcpu(mb: int, explicit: float | None) -> float:
            if explicit is not None:
                return explicit
            tiers = sorted(int(k) for k in vcpu_table)
            tier = next((t for t in tiers if t >= mb), tiers[-1])
            return float(vcpu_table[str(tier)])

        mean_vcpu = sum(vcpu(mb, c) for mb, c in zip(graph.consumer_memory_mb,
                                                     graph.consumer_vcpu, strict=True)) \
            / len(graph.consumer_memory_mb)
        step_vcpu = vcpu(graph.step_memory_mb, graph.step_vcpu)
        vcpu_s = events * billed_s * mean_vcpu + step_calls * billed_s * step_vcpu
        gib_s = events * billed_s * mean_mb / 1024 + \
            step_calls * billed_s * graph.step_memory_mb / 1024
        # Publish once, deliver once (filtered-out copies to other subscriptions are
        # acknowledged by Pub/Sub and billed too), each at least 1,000 bytes.
        subscriptions = len(graph.consumer_memory_mb)
        messages = events * (1 + subscriptions)
        tib = messages * assumptions["pubsub_bytes_per_message"] / 2**40
        reads = (events + step_calls) * (per_event["reads"] + per_event["transactional_writes"])
        writes = (events + step_calls) * per_event["writes"]
        steps = executions * graph.saga_transitions
        lines += [
            Line("Pub/Sub", tib, "TiB", _usd(prices, cloud, "pubsub_throughput_tib", tib)),
            Line("Functions invocations", events + step_calls, "invocations",
                 _usd(prices, cloud, "functions_invocations", events + step_calls)),
            Line("Functions CPU", vcpu_s, "vCPU-s", _usd(prices, cloud,
                                                        "functions_vcpu_second", vcpu_s)),
            Line("Functions memory", gib_s, "GiB-s", _usd(prices, cloud,
                                                         "functions_gib_second", gib_s)),
            Line("Firestore reads", reads, "reads", _usd(prices, cloud, "firestore_reads",
                                                         reads)),
            Line("Firestore writes", writes, "writes", _usd(prices, cloud,
                                                            "firestore_writes", writes)),
            Line("Workflows", steps, "steps", _usd(prices, cloud,
                                                   "workflows_internal_steps", steps)),
        ]
    dates = sorted({p["date"] for p in prices[cloud]["prices"].values()})
    return Estimate(rec.stack, cloud, events_per_day, sagas, tuple(lines), dict(per_event),
                    per_event_source, ", ".join(dates))


def estimate_stack(stack: str, events_per_day: int,
                   sagas_per_day: float | None = None) -> Estimate:
    from infra.synth import synthesize

    return estimate(synthesize(stack), events_per_day, sagas_per_day=sagas_per_day)


# --- rendering ---------------------------------------------------------------------------


def _money(usd: float) -> str:
    return f"{usd:,.2f}"


def render_estimate(est: Estimate) -> str:
    lines = [f"{est.stack} ({est.cloud}): {est.events_per_day:,} events/day, "
             f"{est.sagas_per_day:,.0f} sagas/day, per month (USD)"]
    width = max(len(line.service) for line in est.lines)
    for line in est.lines:
        lines.append(f"  {line.service.ljust(width)}  {line.quantity:>16,.2f} "
                     f"{line.unit.ljust(12)} {_money(line.usd):>10}")
    lines.append(f"  {'total'.ljust(width)}  {'':>16} {'':12} {_money(est.total):>10}")
    lines.append(f"per event: {est.per_event['cpu_us']:.0f} us CPU, "
                 f"{est.per_event['reads']:.2f} reads, {est.per_event['writes']:.2f} writes "
                 f"({est.per_event_source}); prices as of {est.prices_date}; "
                 f"free tiers not applied")
    return "\n".join(lines) + "\n"


def render_compare(events_per_day: int,
                   sagas_per_day: float | None = None) -> str:
    """AWS vs GCP side by side, and the seed's always-on baseline."""
    prices = load_prices()
    aws = estimate_stack("dev-aws", events_per_day, sagas_per_day)
    gcp = estimate_stack("dev-gcp", events_per_day, sagas_per_day)
    baseline = prices["baseline"]
    rows = [(line.service, _money(line.usd), "") for line in aws.lines]
    rows_gcp = [(line.service, _money(line.usd)) for line in gcp.lines]
    height = max(len(rows), len(rows_gcp))
    left = max(len(r[0]) for r in rows)
    right = max(len(r[0]) for r in rows_gcp)
    out = [f"{events_per_day:,} events/day, {aws.sagas_per_day:,.0f} sagas/day: "
           f"monthly USD", f"  {'AWS (dev-aws)'.ljust(left + 12)}  GCP (dev-gcp)"]
    for i in range(height):
        a = f"{rows[i][0].ljust(left)} {rows[i][1]:>10}" if i < len(rows) else " " * (left + 11)
        g = f"{rows_gcp[i][0].ljust(right)} {rows_gcp[i][1]:>10}" if i < len(rows_gcp) else ""
        out.append(f"  {a}  {g}".rstrip())
    out.append(f"  {'total'.ljust(left)} {_money(aws.total):>10}  "
               f"{'total'.ljust(right)} {_money(gcp.total):>10}")
    out.append(f"  {baseline['name']}: {_money(baseline['monthly_usd'])} "
               f"({baseline['source']})")
    out.append(f"per-event compute: aws {aws.per_event['cpu_us']:.0f} us, "
               f"gcp {gcp.per_event['cpu_us']:.0f} us ({aws.per_event_source}); prices as of "
               f"{aws.prices_date}; free tiers not applied")
    return "\n".join(out) + "\n"
