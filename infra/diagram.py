"""Draw the event topology of a synthesized stack as a Mermaid flowchart.

The drawing is derived, never hand-written: nodes are the recorded resources that carry
events (bus, routes, queues, functions, stores, topics, dead letters, the saga) and edges
are the references between them found in the recorded inputs (a rule names its bus, a
target its queue and dead-letter queue, a queue its redrive target, an IAM grant a
function's identity and what it may touch). The saga's steps come from the app
description that compiled the state machine / workflow. Adding a consumer, a table or a
grant changes the picture by itself.

References are resolved by identifier: a resource is known by its ARN, id, name and (GCP
service accounts) email, and an input refers to it when one of its tokens equals one of
those. Each edge rule names the input that carries the reference, so a name shared by
several resources (an SQS queue and a Lambda function both called `<prefix>-orders`) is
only ever matched against the resource type the rule expects.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from handlers.core.app import App
    from infra.synth import Recorded, RecordedResource

# resource type -> the role it plays in the event topology
_ROLES: Final[dict[str, str]] = {
    "aws:cloudwatch/eventBus:EventBus": "bus",
    "aws:cloudwatch/eventArchive:EventArchive": "archive",
    "aws:cloudwatch/eventRule:EventRule": "route",
    "aws:sqs/queue:Queue": "queue",
    "aws:lambda/function:Function": "function",
    "aws:dynamodb/table:Table": "store",
    "aws:sns/topic:Topic": "topic",
    "aws:sfn/stateMachine:StateMachine": "saga",
    "gcp:pubsub/topic:Topic": "topic",
    "gcp:pubsub/subscription:Subscription": "route",
    "gcp:cloudfunctionsv2/function:Function": "function",
    "gcp:firestore/database:Database": "store",
    "gcp:workflows/workflow:Workflow": "saga",
}
_IDENTITIES: Final = frozenset({"aws:iam/role:Role", "gcp:serviceaccount/account:Account"})
# Where each runner names the identity it runs as.
_RUNS_AS: Final[dict[str, str]] = {
    "aws:lambda/function:Function": "role",
    "aws:sfn/stateMachine:StateMachine": "roleArn",
    "gcp:cloudfunctionsv2/function:Function": "serviceConfig.serviceAccountEmail",
    "gcp:workflows/workflow:Workflow": "serviceAccount",
}
# IAM grants name an identity and what it may use; the edge goes from whatever runs as that
# identity to what it may use. Each grant type says which resource types it can grant on,
# since GCP names collide across types (a workflow and its step function share a name).
_ANY: Final = frozenset(_ROLES)
_GRANTS: Final[dict[str, frozenset[str]]] = {
    "aws:iam/rolePolicy:RolePolicy": _ANY,
    "gcp:pubsub/topicIAMMember:TopicIAMMember": frozenset({"gcp:pubsub/topic:Topic"}),
    "gcp:cloudrunv2/serviceIamMember:ServiceIamMember": frozenset(
        {"gcp:cloudfunctionsv2/function:Function"}),
    "gcp:projects/iAMMember:IAMMember": _ANY,  # narrowed by its role, below
}
_PROJECT_ROLE_TARGETS: Final[dict[str, str]] = {
    "roles/datastore.": "gcp:firestore/database:Database",
    "roles/workflows.": "gcp:workflows/workflow:Workflow",
    "roles/pubsub.": "gcp:pubsub/topic:Topic",
}
_SERVICE: Final[dict[str, dict[str, str]]] = {
    "aws": {"bus": "EventBridge bus", "route": "rule", "queue": "SQS queue",
            "dlq": "SQS DLQ", "function": "Lambda", "store": "DynamoDB",
            "topic": "SNS topic", "saga": "Step Functions", "archive": "archive"},
    "gcp": {"bus": "Pub/Sub topic", "route": "push subscription", "dlq": "dead-letter topic",
            "function": "Cloud Function", "store": "Firestore", "topic": "Pub/Sub topic",
            "saga": "Workflows", "queue": "queue", "archive": "archive",
            "pull": "pull subscription"},
}
# Label of a grant edge, by the role of what is granted.
_USES: Final[dict[str, str]] = {
    "store": "reads/writes", "topic": "notifies", "bus": "emits", "saga": "starts",
    "dlq": "dead-letters", "function": "invokes",
}
_SHAPES: Final[dict[str, tuple[str, str]]] = {
    "bus": ("[(", ")]"), "store": ("[(", ")]"), "dlq": ("[(", ")]"), "archive": ("[(", ")]"),
    "pull": ("[(", ")]"),
    "route": ("[/", "/]"), "queue": ("[", "]"), "function": ("[", "]"),
    "topic": ("([", "])"), "saga": ("{{", "}}"), "producer": ("[", "]"),
}
_TOKEN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9:/._@+=-]*")
_QUOTED: Final = re.compile(r'"([^"]+)"')


@dataclass(frozen=True, slots=True)
class Edge:
    source: str  # URN
    target: str  # URN
    label: str = ""
    dotted: bool = False


class _Index:
    """Identifier -> resources, and the tokens of any input value."""

    def __init__(self, rec: Recorded) -> None:
        self.by_id: dict[str, list[RecordedResource]] = {}
        for r in rec.resources:
            for ident in _identifiers(r):
                self.by_id.setdefault(ident, []).append(r)

    def refs(self, value: Any, types: Iterable[str] | str) -> list[RecordedResource]:
        wanted = {types} if isinstance(types, str) else set(types)
        found: dict[str, RecordedResource] = {}
        for token in _tokens(value):
            for r in self.by_id.get(token, ()):
                if r.type in wanted:
                    found[r.urn] = r
        return [found[u] for u in sorted(found)]


def _identifiers(r: RecordedResource) -> set[str]:
    out: set[str] = set()
    for source in (r.outputs, r.inputs):
        for key in ("arn", "name", "id"):
            value = source.get(key)
            if isinstance(value, str) and value:
                out.add(value)
    if r.id:
        out.add(r.id)
    if r.type == "gcp:cloudfunctionsv2/function:Function":
        # Pushes and workflow calls name a gen2 function by its Cloud Run (run.app) URL.
        uri = (r.outputs.get("serviceConfig") or {}).get("uri")
        if isinstance(uri, str) and uri:
            out.add(uri)
            out.add(uri.split("://", 1)[-1].split("/", 1)[0])
    account, project = r.inputs.get("accountId"), r.inputs.get("project")
    if r.type == "gcp:serviceaccount/account:Account" and account and project:
        out.add(f"{account}@{project}.iam.gserviceaccount.com")
    return out


def _tokens(value: Any) -> Iterator[str]:
    """Every string token in a value; JSON held in strings (policies, patterns) included.

    ARN-like tokens also yield their pieces split on '/' and after 'serviceAccount:' so
    `…/index/*` and `serviceAccount:<email>` still name their resource.
    """
    if isinstance(value, dict):
        for item in value.values():
            yield from _tokens(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tokens(item)
    elif isinstance(value, str):
        for token in _TOKEN.findall(value):
            yield token
            yield from token.split("/")
            if token.startswith("serviceAccount:"):
                yield token[len("serviceAccount:") :]


def _at(value: Any, path: str) -> Any:
    """`a.b.c` into nested inputs, decoding JSON strings on the way (redrivePolicy)."""
    for key in path.split("."):
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                return None
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


@dataclass
class Topology:
    cloud: str
    roles: dict[str, str]  # URN -> role
    names: dict[str, str]  # URN -> logical name
    edges: list[Edge]
    saga_steps: tuple[str, ...]
    saga_compensations: tuple[tuple[str, str], ...]  # (step, its compensation)


def topology(rec: Recorded, app: App | None = None) -> Topology:
    """The event topology of a recorded program run (see the module docstring)."""
    cloud = "aws" if any(r.type.startswith("aws:") for r in rec.resources) else "gcp"
    index = _Index(rec)
    roles = {r.urn: _ROLES[r.type] for r in rec.resources if r.type in _ROLES}
    names = {r.urn: r.name for r in rec.resources}
    edges: list[Edge] = []

    def add(source: RecordedResource, target: RecordedResource, label: str = "",
            dotted: bool = False) -> None:
        if source.urn != target.urn:
            edges.append(Edge(source.urn, target.urn, label, dotted))

    # Which resources are dead letters: named as such by a redrive / dead-letter setting.
    dead: set[str] = set()
    for r in rec.resources:
        for path, typ in (("redrivePolicy.deadLetterTargetArn", "aws:sqs/queue:Queue"),
                          ("deadLetterConfig.arn", "aws:sqs/queue:Queue"),
                          ("deadLetterPolicy.deadLetterTopic", "gcp:pubsub/topic:Topic")):
            dead.update(t.urn for t in index.refs(_at(r.inputs, path), typ))
    for urn in dead:
        roles[urn] = "dlq"
    # GCP: a pull subscription is how a topic's messages are kept and read later (dead
    # letters, replay), not a route to a function.
    for r in rec.of_type("gcp:pubsub/subscription:Subscription"):
        if not r.inputs.get("pushConfig"):
            roles[r.urn] = "pull"
        else:
            for topic in index.refs(r.inputs.get("topic"), "gcp:pubsub/topic:Topic"):
                roles[topic.urn] = "bus"

    for r in rec.resources:
        i = r.inputs
        if r.type == "aws:cloudwatch/eventRule:EventRule":
            for bus in index.refs(i.get("eventBusName"), "aws:cloudwatch/eventBus:EventBus"):
                add(bus, r, _aws_pattern_label(i.get("eventPattern")))
        elif r.type == "aws:cloudwatch/eventArchive:EventArchive":
            for bus in index.refs(i.get("eventSourceArn"), "aws:cloudwatch/eventBus:EventBus"):
                add(bus, r, "replay", dotted=True)
        elif r.type == "aws:cloudwatch/eventTarget:EventTarget":
            rules = [x for x in index.refs(i.get("rule"), "aws:cloudwatch/eventRule:EventRule")
                     if _at(x.inputs, "eventBusName") == i.get("eventBusName")]
            for rule in rules:
                for q in index.refs(i.get("arn"), "aws:sqs/queue:Queue"):
                    add(rule, q)
                for q in index.refs(_at(i, "deadLetterConfig.arn"), "aws:sqs/queue:Queue"):
                    add(rule, q, "undeliverable", dotted=True)
        elif r.type == "aws:sqs/queue:Queue":
            target = _at(i, "redrivePolicy.deadLetterTargetArn")
            count = _at(i, "redrivePolicy.maxReceiveCount")
            for q in index.refs(target, "aws:sqs/queue:Queue"):
                add(r, q, f"after {count} receives" if count else "", dotted=True)
        elif r.type == "aws:lambda/eventSourceMapping:EventSourceMapping":
            for q in index.refs(i.get("eventSourceArn"), "aws:sqs/queue:Queue"):
                for f in index.refs(i.get("functionName"), "aws:lambda/function:Function"):
                    add(q, f, f"batches of {int(i['batchSize'])}" if i.get("batchSize") else "")
        elif r.type == "aws:sfn/stateMachine:StateMachine":
            for f in index.refs(i.get("definition"), "aws:lambda/function:Function"):
                add(r, f, "each step")
        elif r.type == "aws:cloudwatch/metricAlarm:MetricAlarm":
            for q in index.refs(_at(i, "dimensions.QueueName"), "aws:sqs/queue:Queue"):
                for t in index.refs(i.get("alarmActions"), "aws:sns/topic:Topic"):
                    add(q, t, "alarm", dotted=True)
        elif r.type == "gcp:pubsub/subscription:Subscription" and not i.get("pushConfig"):
            for topic in index.refs(i.get("topic"), "gcp:pubsub/topic:Topic"):
                add(topic, r, "kept for pull", dotted=True)
        elif r.type == "gcp:pubsub/subscription:Subscription":
            for topic in index.refs(i.get("topic"), "gcp:pubsub/topic:Topic"):
                add(topic, r, _gcp_filter_label(i.get("filter")))
            endpoint = _at(i, "pushConfig.pushEndpoint")
            for f in index.refs(endpoint, "gcp:cloudfunctionsv2/function:Function"):
                add(r, f, "push (OIDC)")
            attempts = _at(i, "deadLetterPolicy.maxDeliveryAttempts")
            for t in index.refs(_at(i, "deadLetterPolicy.deadLetterTopic"),
                                "gcp:pubsub/topic:Topic"):
                label = f"after {int(attempts)} attempts" if attempts else ""
                add(r, t, label, dotted=True)
        elif r.type == "gcp:workflows/workflow:Workflow":
            for f in index.refs(i.get("sourceContents"), "gcp:cloudfunctionsv2/function:Function"):
                add(r, f, "each step")

    direct = {(e.source, e.target) for e in edges}
    edges.extend(e for e in _grant_edges(rec, index, roles) if (e.source, e.target) not in direct)
    steps: tuple[str, ...] = ()
    compensations: tuple[tuple[str, str], ...] = ()
    if app is not None:
        steps = tuple(s.name for s in app.saga.steps)
        compensations = tuple(
            (s.name, getattr(s.compensate, "__name__", "compensate"))
            for s in app.saga.steps if s.compensate is not None
        )
    unique = sorted(set(edges), key=lambda e: (e.source, e.target, e.label, e.dotted))
    return Topology(cloud, roles, names, unique, steps, compensations)


def _grant_edges(rec: Recorded, index: _Index, roles: dict[str, str]) -> list[Edge]:
    # identity URN -> the topology nodes that run as it
    runs_as: dict[str, set[str]] = {}
    for r in rec.resources:
        if r.type not in _RUNS_AS:
            continue
        for ident in index.refs(_at(r.inputs, _RUNS_AS[r.type]), _IDENTITIES):
            runs_as.setdefault(ident.urn, set()).add(r.urn)
    edges: list[Edge] = []
    for grant in rec.resources:
        if grant.type not in _GRANTS:
            continue
        identities = index.refs(
            {k: v for k, v in grant.inputs.items() if k in ("role", "member")}, _IDENTITIES)
        types = _GRANTS[grant.type]
        role_name = str(grant.inputs.get("role", ""))
        for prefix, typ in _PROJECT_ROLE_TARGETS.items():
            if grant.type == "gcp:projects/iAMMember:IAMMember" and role_name.startswith(prefix):
                types = frozenset({typ})
        granted = [t for t in index.refs(grant.inputs, types) if t.urn in roles]
        for ident in identities:
            for principal in sorted(runs_as.get(ident.urn, ())):
                for target in granted:
                    role = roles[target.urn]
                    if role in ("queue", "route", "pull") or target.urn == principal:
                        continue  # consuming its own queue is already drawn
                    dotted = role == "dlq"
                    edges.append(Edge(principal, target.urn, _USES.get(role, ""), dotted))
    return edges


def _aws_pattern_label(pattern: Any) -> str:
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "detail-type" and isinstance(value, list):
                    found.extend(str(v) for v in value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    try:
        walk(json.loads(pattern) if isinstance(pattern, str) else pattern)
    except ValueError:
        return ""
    return ", ".join(found)


def _gcp_filter_label(expression: Any) -> str:
    return ", ".join(_QUOTED.findall(expression)) if isinstance(expression, str) else ""


def _escape(text: str) -> str:
    return text.replace('"', "#quot;")


def to_mermaid(rec: Recorded, app: App | None = None, prefix: str | None = None) -> str:
    """A `flowchart LR` of the event topology; byte-identical for the same program."""
    topo = topology(rec, app)
    service = _SERVICE[topo.cloud]
    strip = (prefix or _common_prefix(topo.names[u] for u in topo.roles)) + "-"

    def short(urn: str) -> str:
        name = topo.names[urn]
        return name[len(strip):] if name.startswith(strip) else name

    def node_id(urn: str) -> str:
        return re.sub(r"[^A-Za-z0-9]", "_", f"{topo.roles[urn]}_{short(urn)}")

    used = {e.source for e in topo.edges} | {e.target for e in topo.edges}
    nodes = sorted((u for u in topo.roles if u in used), key=node_id)
    publish = "PutEvents" if topo.cloud == "aws" else "publish"
    lines = ["flowchart LR", f'    producers["Producers<br/>{publish}"]']
    for urn in nodes:
        role = topo.roles[urn]
        left, right = _SHAPES[role]
        label = f"{short(urn)}<br/>{service.get(role, role)}"
        if role == "saga" and topo.saga_steps:
            label += "<br/>" + " → ".join(topo.saga_steps)
        lines.append(f'    {node_id(urn)}{left}"{_escape(label)}"{right}')
    for urn in nodes:
        if topo.roles[urn] == "bus":
            lines.append(f"    producers --> {node_id(urn)}")
    for e in sorted(topo.edges, key=lambda e: (node_id(e.source), node_id(e.target), e.label)):
        arrow = "-.->" if e.dotted else "-->"
        label = f'|"{_escape(e.label)}"|' if e.label else ""
        lines.append(f"    {node_id(e.source)} {arrow}{label} {node_id(e.target)}")
    for urn in nodes:
        if topo.roles[urn] == "saga" and topo.saga_compensations:
            undo = ", ".join(f"{step} ↩ {comp}" for step, comp in topo.saga_compensations)
            box = f"compensate_{node_id(urn)}"
            lines.append(f'    {box}["{_escape("compensations, in reverse: " + undo)}"]')
            lines.append(f'    {node_id(urn)} -.->|"a step fails"| {box}')
    return "\n".join(lines) + "\n"


def _common_prefix(names: Iterable[str]) -> str:
    parts = [n.split("-") for n in names]
    if not parts:
        return ""
    common: list[str] = []
    for pieces in zip(*parts, strict=False):
        if len(set(pieces)) != 1:
            break
        common.append(pieces[0])
    return "-".join(common)
