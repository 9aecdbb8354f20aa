"""Every IAM document of the dev-aws stack, linted by parliament against AWS's own catalog.

moto enforces no IAM, so a policy AWS would refuse (or silently never match) passes every
moto test. parliament checks each document against the Service Authorization Reference:
actions exist, each resource ARN has the format the action is authorised on (a grant of
`logs:PutLogEvents` on a bare log-group ARN matches no log stream), condition keys exist
for the action and their operators fit their types, principals are well formed. The
stack is synthesized under Pulumi mocks with realistic ARNs (`tests/infra/aws_fakes.py`),
with and without the HTTP ingress, and every document is linted
(`tests/infra/iam_documents.py` finds them and fails on any it cannot read).

Zero findings, except the few listed in `ACCEPTED` below, each with AWS's reason; the
actions granted on Resource "*" are listed once, in `adapters.aws.topology`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

import pytest

from adapters.aws import buckets, topology
from adapters.aws.topology import Names
from handlers.app import APP
from tests.infra.aws_fakes import ACCOUNT, aws_fake
from tests.infra.iam_documents import Document, documents
from tests.infra.pulumi_harness import Recorded, run_program

try:
    import parliament
except ImportError as missing:  # pragma: no cover - the dev extra installs it
    raise ImportError("parliament is not installed: `.venv/bin/pip install -e '.[dev]'` "
                      "(it lints the stack's IAM documents)") from missing

STACK: Final = "dev-aws"
PREFIX: Final = "switchyard-dev-aws"
NAMES: Final = Names(PREFIX)
REGION: Final = "us-east-1"


@dataclass(frozen=True)
class Accepted:
    """A parliament finding that is right about the document and wrong about the stack."""

    issue: str
    kind: str  # document kind it applies to
    applies: Callable[[Document, Any], bool]
    reason: str


def _log_delivery_only(doc: Document, detail: Any) -> bool:
    # The community auditor lists no detail; the statement granting the permissions
    # management action must be the state machine's log delivery and nothing else.
    return any(s.get("Sid") == "LogDelivery" for s in doc.statements()) and all(
        "logs:PutResourcePolicy" not in json.dumps(s) or s.get("Sid") == "LogDelivery"
        for s in doc.statements())


def _key_policy_admin(doc: Document, detail: Any) -> bool:
    return any(s.get("Sid") == "AccountAdministers" for s in doc.statements())


ACCEPTED: Final = (
    Accepted("MALFORMED", "trust",
             lambda doc, detail: detail == "Statement contains neither Resource nor NotResource",
             "A trust policy (a role's AssumeRolePolicyDocument) has no Resource element: "
             "the role is the resource. parliament lints every policy as an identity or "
             "resource policy."),
    Accepted("PERMISSIONS_MANAGEMENT_ACTIONS", "identity", _log_delivery_only,
             "Step Functions logging to CloudWatch Logs needs logs:PutResourcePolicy (vended "
             "log delivery writes the log group's resource policy); AWS documents it, on "
             "Resource \"*\", among the actions a state machine's role needs to log."),
    Accepted("PERMISSIONS_MANAGEMENT_ACTIONS", "key", _key_policy_admin,
             "A key policy's account-root statement (kms:*) is AWS's default: without it the "
             "key could not be managed through IAM at all, and could become unmanageable."),
    Accepted("RESOURCE_STAR", "key", lambda doc, detail: True,
             "In a key policy, Resource \"*\" means \"this key\": it is the only form a key "
             "policy accepts."),
)


def _lint(doc: Document) -> list[tuple[str, Any]]:
    policy = parliament.analyze_policy_string(doc.text, include_community_auditors=True)
    return [(f.issue, f.detail) for f in policy.findings]


def _unaccepted(doc: Document) -> list[tuple[str, Any]]:
    return [(issue, detail) for issue, detail in _lint(doc)
            if not any(a.issue == issue and a.kind == doc.kind and a.applies(doc, detail)
                       for a in ACCEPTED)]


def deploy(api: bool) -> Recorded:
    return run_program({"cloud": "aws", "api": api, "aws:region": REGION}, STACK,
                       fake=aws_fake)


@pytest.fixture(scope="module", params=[False, True], ids=["no-api", "api"])
def rec(request: pytest.FixtureRequest) -> Recorded:
    return deploy(request.param)


@pytest.fixture(scope="module")
def docs(rec: Recorded) -> list[Document]:
    return documents(rec)


def _listed(value: Any) -> list[Any]:
    return [value] if isinstance(value, (str, dict)) else list(value)


def _allows(doc: Document) -> Iterable[dict[str, Any]]:
    return (s for s in doc.statements() if s.get("Effect") == "Allow")


# --- the lint ------------------------------------------------------------------------------


def test_every_kind_of_document_is_linted(rec: Recorded, docs: list[Document]) -> None:
    """A pass over nothing proves nothing: each kind the stack has is in the list."""
    kinds = {d.kind for d in docs}
    assert kinds == {"identity", "trust", "resource", "key"}
    roles = rec.of_type("aws:iam/role:Role")
    assert len([d for d in docs if d.kind == "trust"]) == len(roles)
    functions = len(APP.consumers) + 1 + (1 if any(
        r.type.startswith("aws:apigatewayv2") for r in rec.resources) else 0)
    assert len(rec.of_type("aws:lambda/function:Function")) == functions
    # One role per function, the state machine's, and the two delivering roles.
    assert len(roles) == functions + 1 + 2


def test_parliament_finds_nothing_in_any_document(docs: list[Document]) -> None:
    found = {d.owner: problems for d in docs if (problems := _unaccepted(d))}
    assert found == {}, json.dumps(found, indent=1, default=str)


def test_every_accepted_finding_still_occurs(docs: list[Document]) -> None:
    """The accepted list is exact: a finding fixed for good leaves it (no stale excuses)."""
    seen = {(a.issue, a.kind) for d in docs for issue, detail in _lint(d)
            for a in ACCEPTED if a.issue == issue and a.kind == d.kind and a.applies(d, detail)}
    assert seen == {(a.issue, a.kind) for a in ACCEPTED}


@pytest.mark.parametrize(("statement", "issue"), [
    # The defect this lint was added for: Lambda writes no log line with this grant.
    ({"Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
      "Resource": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/f"},
     "RESOURCE_MISMATCH"),
    ({"Action": "sqs:SendMessage", "Resource": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/t"},
     "RESOURCE_MISMATCH"),
    ({"Action": "events:PutEvents", "Resource": f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/b",
      "Condition": {"StringEquals": {"events:sourc": "orders"}}},
     "UNKNOWN_CONDITION_FOR_ACTION"),
    ({"Action": "dynamodb:GetItems", "Resource": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/t"},
     "UNKNOWN_ACTION"),
])
def test_the_lint_catches_what_aws_would_refuse(statement: dict[str, Any], issue: str) -> None:
    """Controls: parliament, as called here, does report the mistakes it is relied on for."""
    document = json.dumps({"Version": "2012-10-17",
                           "Statement": [{"Effect": "Allow", **statement}]})
    policy = parliament.analyze_policy_string(document, include_community_auditors=True)
    assert issue in {f.issue for f in policy.findings}


# --- Resource "*" ---------------------------------------------------------------------------


def test_resource_star_only_for_actions_aws_documents_without_resources(
        docs: list[Document]) -> None:
    for doc in docs:
        if doc.kind == "key":
            continue  # "*" is the key itself (ACCEPTED above)
        for statement in _allows(doc):
            if "*" in _listed(statement.get("Resource", [])):
                actions = set(_listed(statement["Action"]))
                assert actions <= set(topology.STAR_RESOURCE_ACTIONS), (doc.owner, actions)


def test_the_star_list_gives_a_reason_for_each_action() -> None:
    assert set(topology.STAR_RESOURCE_ACTIONS) == {
        *topology.XRAY_ACTIONS, *topology.XRAY_SAMPLING_ACTIONS, *topology.LOG_DELIVERY_ACTIONS}
    assert all(reason.strip() for reason in topology.STAR_RESOURCE_ACTIONS.values())


# --- CloudWatch Logs ------------------------------------------------------------------------


def test_log_writes_are_granted_on_the_streams_of_the_own_group(
        rec: Recorded, docs: list[Document]) -> None:
    groups = {g.outputs["arn"] for g in rec.of_type("aws:cloudwatch/logGroup:LogGroup")}
    granted = 0
    for doc in docs:
        for statement in _allows(doc):
            actions = [a for a in _listed(statement["Action"]) if a.startswith("logs:")]
            if not set(actions) & set(topology.LOG_WRITE_ACTIONS):
                continue
            for resource in _listed(statement["Resource"]):
                assert resource.endswith(":log-stream:*"), (doc.owner, resource)
                assert resource.removesuffix(":log-stream:*") in groups, (doc.owner, resource)
                granted += 1
    assert granted == len(rec.of_type("aws:lambda/function:Function"))


# --- trust policies -------------------------------------------------------------------------


def _trust_of(rec: Recorded, role_name: str) -> dict[str, Any]:
    [role] = [r for r in rec.of_type("aws:iam/role:Role") if r.inputs["name"] == role_name]
    [statement] = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    return dict(statement)


def _expected_source_arns(rec: Recorded) -> dict[str, str]:
    """Role name -> the one resource AWS may assume it for."""
    machine = NAMES.state_machine(APP.saga.name)
    forward = buckets.forward_rule_name(PREFIX)
    [rule] = [r for r in rec.of_type("aws:cloudwatch/eventRule:EventRule")
              if r.inputs["name"] == forward]
    [group] = rec.of_type("aws:scheduler/scheduleGroup:ScheduleGroup")
    return {
        Names.role(machine): f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{machine}",
        Names.role(forward): rule.outputs["arn"],
        Names.role(f"{PREFIX}-schedules"): group.outputs["arn"],
    }


def test_service_trust_policies_name_the_account_and_the_resource(rec: Recorded) -> None:
    expected = _expected_source_arns(rec)
    for role in rec.of_type("aws:iam/role:Role"):
        statement = _trust_of(rec, role.inputs["name"])
        [service] = _listed(statement["Principal"]["Service"])
        if service in topology.UNCONDITIONED_SERVICES:
            assert "Condition" not in statement, role.name
            continue
        assert service in topology.SOURCE_CONDITIONED_SERVICES, service
        assert statement["Condition"] == {
            "StringEquals": {"aws:SourceAccount": ACCOUNT},
            "ArnEquals": {"aws:SourceArn": expected[role.inputs["name"]]}}, role.name


def test_the_state_machine_trust_names_the_arn_the_machine_gets(rec: Recorded) -> None:
    machine = rec.one("aws:sfn/stateMachine:StateMachine")
    statement = _trust_of(rec, Names.role(NAMES.state_machine(APP.saga.name)))
    assert statement["Condition"]["ArnEquals"]["aws:SourceArn"] == machine.outputs["arn"]


def test_lambda_roles_trust_only_lambda(rec: Recorded) -> None:
    for fn in rec.of_type("aws:lambda/function:Function"):
        statement = _trust_of(rec, Names.role(fn.inputs["name"]))
        assert statement["Principal"] == {"Service": "lambda.amazonaws.com"}


def test_resource_policies_for_services_name_the_source(docs: list[Document]) -> None:
    """Queue policies (EventBridge rules), the key policy (CloudWatch alarms) and the
    ingress's Lambda permission (API Gateway) each pin who may use the grant."""
    checked = 0
    for doc in docs:
        if doc.kind not in ("resource", "key"):
            continue
        for statement in _allows(doc):
            principal = statement.get("Principal", {})
            if not isinstance(principal, dict) or "Service" not in principal:
                continue
            keys = {k.lower() for ops in statement.get("Condition", {}).values() for k in ops}
            assert keys & {"aws:sourcearn", "aws:sourceaccount"}, doc.owner
            checked += 1
    assert checked


# --- PutEvents ------------------------------------------------------------------------------


def _put_events(rec: Recorded, role_name: str) -> dict[str, Any]:
    [role] = [r for r in rec.of_type("aws:iam/role:Role") if r.inputs["name"] == role_name]
    [policy] = [p for p in rec.of_type("aws:iam/rolePolicy:RolePolicy")
                if p.inputs["role"] == role.id]
    [statement] = [s for s in json.loads(policy.inputs["policy"])["Statement"]
                   if "events:PutEvents" in _listed(s["Action"])]
    return dict(statement)


def _condition(types: Iterable[tuple[str, str]]) -> dict[str, Any]:
    pairs = list(types)
    return {"ForAllValues:StringEquals": {"events:source": sorted({s for s, _ in pairs})},
            "StringEquals": {"events:detail-type": sorted({d for _, d in pairs})}}


def _pairs(types: Iterable[str]) -> list[tuple[str, str]]:
    return [(APP.catalog[t].source, APP.catalog[t].detail_type) for t in types]


def test_every_put_events_grant_is_narrowed_to_what_its_publisher_sends(
        rec: Recorded, docs: list[Document]) -> None:
    bus = rec.one("aws:cloudwatch/eventBus:EventBus").outputs["arn"]
    expected: dict[str, dict[str, Any]] = {
        Names.role(NAMES.function(c.name)): _condition(_pairs(c.emits))
        for c in APP.consumers if c.emits}
    expected[Names.role(NAMES.saga_function(APP.saga.name))] = _condition(
        _pairs(APP.saga.emits))
    expected[Names.role(f"{PREFIX}-schedules")] = _condition(
        _pairs(s.emits for s in APP.schedules))
    expected[Names.role(buckets.forward_rule_name(PREFIX))] = _condition(
        [(buckets.S3_SOURCE, buckets.S3_OBJECT_CREATED)])
    if rec.of_type("aws:apigatewayv2/api:Api"):
        expected[Names.role(NAMES.ingest_function())] = _condition(_pairs(
            t.type for t in APP.catalog))
    for role_name, condition in expected.items():
        statement = _put_events(rec, role_name)
        assert statement["Resource"] == bus, role_name
        assert statement["Condition"] == condition, role_name
    # ... and no other grant of PutEvents exists.
    granted = sum(1 for d in docs if d.kind == "identity" for s in _allows(d)
                  if "events:PutEvents" in _listed(s["Action"]))
    assert granted == len(expected)


def test_a_consumer_that_emits_one_type_may_send_only_that(rec: Recorded) -> None:
    """Spelled out for one publisher, not derived: the saga steps publish the order
    outcomes and notifications, under the catalog's sources."""
    statement = _put_events(rec, Names.role(NAMES.saga_function(APP.saga.name)))
    sources = statement["Condition"]["ForAllValues:StringEquals"]["events:source"]
    assert sources and all(s in {t.source for t in APP.catalog} for s in sources)
    assert "aws.s3" not in sources
    types = statement["Condition"]["StringEquals"]["events:detail-type"]
    assert "Object Created" not in types and "Order Created" not in types


# --- the builders refuse what they cannot make safe -----------------------------------------


def test_a_trust_policy_for_an_unlisted_service_is_refused() -> None:
    with pytest.raises(ValueError, match="no trust rule for service principal 'ec2"):
        topology.assume_role_policy("ec2.amazonaws.com", ACCOUNT)


def test_a_conditioned_service_needs_the_account() -> None:
    with pytest.raises(ValueError, match=r"states\.amazonaws\.com needs the account"):
        topology.assume_role_policy("states.amazonaws.com")


def test_a_put_events_grant_needs_what_it_publishes() -> None:
    with pytest.raises(ValueError, match="needs the event types it may publish"):
        topology.put_events_statement(f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/b", [])
