"""Failure case 17 (docs/failure-cases.md) as functions of (resource type, name, properties).

No Pulumi import here: every rule is a function of data, so it runs the same inside the
policy pack (`switchyard_pack`, served by `pulumi preview --policy-pack policy`) and in
unit tests on the resources recorded from the real stacks under Pulumi mocks.

Two kinds of rule, matching the two kinds of Pulumi policy:
- resource rules, `(type, name, props, config) -> [problem, ...]`: they see one resource's
  inputs and run before it is created, so a violation blocks the deployment;
- stack rules, `(Stack, config) -> [Violation, ...]`: they see every resource's outputs and
  check what one resource alone cannot show (this queue is a dead-letter queue; these two
  functions share a role; that dead-letter topic has no publisher grant).

Property names are the provider schema's (camelCase), as Pulumi reports them. Values may
be proxies from the policy SDK, so containers are tested as `Mapping`/`Sequence`, never as
dict/list; reading a value unknown during preview raises the SDK's own error, which it
reports as "can't run policy during preview" (the rule then runs for real at update).

Every message names the resource type, its name and the problem.
"""

from __future__ import annotations

import functools
import json
import operator
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

# --- the data the rules see ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Resource:
    """One resource as a stack rule sees it (its outputs, as `pulumi:pulumi:Stack` too)."""

    type: str
    name: str
    urn: str
    props: Mapping[str, Any]
    #: property -> URNs it was computed from (known even when the value is not, in preview)
    property_dependencies: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Stack:
    resources: tuple[Resource, ...]
    #: Names of the stack outputs that are Pulumi secrets; None when the caller cannot
    #: tell (the Python policy SDK unwraps secrets before a policy sees them).
    secret_outputs: frozenset[str] | None = None
    #: What reading a value unknown during preview raises (the SDK's UnknownValueError):
    #: rules that can decide without the value (from property dependencies) catch it.
    unknown: tuple[type[Exception], ...] = ()

    def of_type(self, *types: str) -> list[Resource]:
        return [r for r in self.resources if r.type in types]


@dataclass(frozen=True, slots=True)
class Violation:
    policy: str
    urn: str  # "" when the stack as a whole is at fault
    message: str


ResourceCheck = Callable[[str, str, Mapping[str, Any], Mapping[str, Any]], list[str]]
StackCheck = Callable[[Stack, Mapping[str, Any]], list[tuple[str, str]]]


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    description: str
    remediation: str
    resource_check: ResourceCheck | None = None
    stack_check: StackCheck | None = None
    #: JSON schema of the rule's config (pulumi policy config), with defaults
    config_schema: Mapping[str, Any] = field(default_factory=dict)

    def defaults(self) -> dict[str, Any]:
        return {k: v["default"] for k, v in self.config_schema.items() if "default" in v}


# --- type tokens --------------------------------------------------------------------------

SQS_QUEUE: Final = "aws:sqs/queue:Queue"
EVENT_TARGET: Final = "aws:cloudwatch/eventTarget:EventTarget"
SCHEDULE: Final = "aws:scheduler/schedule:Schedule"
EVENT_SOURCE_MAPPING: Final = "aws:lambda/eventSourceMapping:EventSourceMapping"
EVENT_INVOKE_CONFIG: Final = "aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig"
SNS_SUBSCRIPTION: Final = "aws:sns/topicSubscription:TopicSubscription"
SNS_TOPIC: Final = "aws:sns/topic:Topic"
STATE_MACHINE: Final = "aws:sfn/stateMachine:StateMachine"
LAMBDA: Final = "aws:lambda/function:Function"
DYNAMODB_TABLE: Final = "aws:dynamodb/table:Table"
KMS_KEY: Final = "aws:kms/key:Key"
ROLE: Final = "aws:iam/role:Role"
ROLE_POLICY_ATTACHMENT: Final = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
#: Resources whose `policy` property is an IAM policy document.
AWS_POLICY_DOCUMENTS: Final = (
    "aws:iam/rolePolicy:RolePolicy",
    "aws:iam/policy:Policy",
    "aws:iam/userPolicy:UserPolicy",
    "aws:iam/groupPolicy:GroupPolicy",
    "aws:sqs/queuePolicy:QueuePolicy",
    "aws:sns/topicPolicy:TopicPolicy",
    "aws:s3/bucketPolicy:BucketPolicy",
    "aws:cloudwatch/eventBusPolicy:EventBusPolicy",
    KMS_KEY,
)

PUBSUB_TOPIC: Final = "gcp:pubsub/topic:Topic"
PUBSUB_SUBSCRIPTION: Final = "gcp:pubsub/subscription:Subscription"
TOPIC_IAM: Final = ("gcp:pubsub/topicIAMMember:TopicIAMMember",
                    "gcp:pubsub/topicIAMBinding:TopicIAMBinding")
SUBSCRIPTION_IAM: Final = ("gcp:pubsub/subscriptionIAMMember:SubscriptionIAMMember",
                           "gcp:pubsub/subscriptionIAMBinding:SubscriptionIAMBinding")
FUNCTION_V2: Final = "gcp:cloudfunctionsv2/function:Function"
FUNCTION_V1: Final = "gcp:cloudfunctions/function:Function"
EVENTARC_TRIGGER: Final = "gcp:eventarc/trigger:Trigger"
WORKFLOW: Final = "gcp:workflows/workflow:Workflow"
PROJECT_IAM: Final = ("gcp:projects/iAMMember:IAMMember", "gcp:projects/iAMBinding:IAMBinding")
STACK: Final = "pulumi:pulumi:Stack"

#: GCP's primitive roles: project-wide power over everything.
PRIMITIVE_ROLES: Final = frozenset({"roles/owner", "roles/editor", "roles/viewer"})
PUBLIC_MEMBERS: Final = frozenset({"allUsers", "allAuthenticatedUsers"})
PUBSUB_AGENT: Final = re.compile(
    r"^serviceAccount:service-[0-9]+@gcp-sa-pubsub\.iam\.gserviceaccount\.com$")
#: CMEK references must name one key, not a ring or a pattern.
KMS_KEY_PATH: Final = re.compile(
    r"^projects/[^/*]+/locations/[^/*]+/keyRings/[^/*]+/cryptoKeys/[^/*]+$")
#: The one function meant to be reachable from outside (authenticated HTTPS ingress, only
#: when `switchyard:api` is true): its entry point, adapters/gcp/topology.INGRESS_ENTRY.
DEFAULT_PUBLIC_ENTRY_POINTS: Final = ("ingest",)
#: SQS's retention when `messageRetentionSeconds` is not set (4 days).
SQS_DEFAULT_RETENTION_S: Final = 345_600
GCP_MAX_DELIVERIES: Final = (5, 100)
#: SNS protocols that deliver to a system (and so can and must dead-letter).
SNS_SYSTEM_PROTOCOLS: Final = frozenset({"sqs", "lambda", "http", "https", "firehose"})


# --- helpers ------------------------------------------------------------------------------


def _label(type_: str, name: str) -> str:
    return f"{type_} '{name}'"


def _get(props: Mapping[str, Any] | None, *path: str) -> Any:
    """props[path[0]][path[1]]..., None as soon as a level is missing or not a mapping."""
    value: Any = props
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def _items(value: Any) -> list[Any]:
    """A property that may be one value or a list of them, as a list."""
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, Sequence):
        return [value]
    return list(value)


def _mappings(value: Any) -> list[Mapping[str, Any]]:
    return [v for v in _items(value) if isinstance(v, Mapping)]


def _document(raw: Any) -> Mapping[str, Any] | None:
    if isinstance(raw, Mapping):
        return raw
    if isinstance(raw, str) and raw.strip():
        try:
            parsed = json.loads(raw)
        except ValueError:
            return None
        return parsed if isinstance(parsed, Mapping) else None
    return None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"[0-9]+", value.strip()):
        return int(value)
    return None


def _short(path: Any) -> str:
    """`projects/P/topics/T` or `T` -> `T` (topics and subscriptions are named both ways)."""
    return str(path).rsplit("/", 1)[-1] if path else ""


# --- 1. every async edge has a DLQ and an explicit retry policy -----------------------------


def _redrive_problems(label: str, raw: Any) -> list[str]:
    policy = _document(raw)
    if policy is None:
        return [f"{label}: redrivePolicy is not a JSON object: {raw!r}"]
    problems = []
    if not policy.get("deadLetterTargetArn"):
        problems.append(f"{label}: redrivePolicy has no deadLetterTargetArn")
    count = _int(policy.get("maxReceiveCount"))
    if count is None or count < 1:
        problems.append(f"{label}: redrivePolicy.maxReceiveCount must be a whole number >= 1, "
                        f"got {policy.get('maxReceiveCount')!r}")
    return problems


def _task_states(states: Any) -> Iterator[tuple[str, Mapping[str, Any]]]:
    if not isinstance(states, Mapping):
        return
    for state_name, state in states.items():
        if not isinstance(state, Mapping):
            continue
        if state.get("Type") == "Task":
            yield state_name, state
        for branch in _mappings(state.get("Branches")):
            yield from _task_states(branch.get("States"))
        for key in ("Iterator", "ItemProcessor"):
            yield from _task_states(_get(state, key, "States"))


def _async_edge_resource(type_: str, name: str, props: Mapping[str, Any],
                         config: Mapping[str, Any]) -> list[str]:
    label = _label(type_, name)
    problems: list[str] = []
    if type_ == SQS_QUEUE:
        # Whether a queue *needs* a redrive (it is not itself a DLQ) is a stack question;
        # here, a redrive that is set must be complete.
        if props.get("redrivePolicy"):
            problems += _redrive_problems(label, props["redrivePolicy"])
    elif type_ == SCHEDULE:
        # EventBridge Scheduler retries and dead-letters per schedule target, like a rule's.
        if not _get(props, "target", "deadLetterConfig", "arn"):
            problems.append(f"{label}: no target.deadLetterConfig.arn: a firing the "
                            "scheduler cannot deliver is dropped")
        retry = _get(props, "target", "retryPolicy")
        if (not isinstance(retry, Mapping) or _int(retry.get("maximumRetryAttempts")) is None
                or _int(retry.get("maximumEventAgeInSeconds")) is None):
            problems.append(f"{label}: target.retryPolicy must set maximumRetryAttempts and "
                            "maximumEventAgeInSeconds")
    elif type_ == EVENT_TARGET:
        if not _get(props, "deadLetterConfig", "arn"):
            problems.append(f"{label}: no deadLetterConfig.arn: EventBridge drops events it "
                            "cannot deliver unless the target has a DLQ")
        retry = _get(props, "retryPolicy")
        if (not isinstance(retry, Mapping) or _int(retry.get("maximumRetryAttempts")) is None
                or _int(retry.get("maximumEventAgeInSeconds")) is None):
            problems.append(f"{label}: retryPolicy must set maximumRetryAttempts and "
                            "maximumEventAgeInSeconds (the default retries for up to 24 h)")
    elif type_ == EVENT_SOURCE_MAPPING:
        source = str(props.get("eventSourceArn") or "")
        if ":sqs:" in source or not source.startswith("arn:"):
            if "ReportBatchItemFailures" not in _items(props.get("functionResponseTypes")):
                problems.append(f"{label}: functionResponseTypes lacks ReportBatchItemFailures:"
                                " one failed record would redeliver its whole batch")
        else:  # streams (Kinesis, DynamoDB): the mapping itself retries and dead-letters
            if not _get(props, "destinationConfig", "onFailure", "destinationArn"):
                problems.append(f"{label}: a stream source needs "
                                "destinationConfig.onFailure.destinationArn")
            if _int(props.get("maximumRetryAttempts")) is None:
                problems.append(f"{label}: a stream source needs maximumRetryAttempts")
    elif type_ == EVENT_INVOKE_CONFIG:
        if not _get(props, "destinationConfig", "onFailure", "destination"):
            problems.append(f"{label}: asynchronous invocations need "
                            "destinationConfig.onFailure.destination (their DLQ)")
        if _int(props.get("maximumRetryAttempts")) is None:
            problems.append(f"{label}: maximumRetryAttempts must be set explicitly")
    elif type_ == SNS_SUBSCRIPTION:
        if str(props.get("protocol") or "") in SNS_SYSTEM_PROTOCOLS:
            policy = _document(props.get("redrivePolicy"))
            if not policy or not policy.get("deadLetterTargetArn"):
                problems.append(f"{label}: a {props.get('protocol')} subscription needs a "
                                "redrivePolicy with deadLetterTargetArn")
    elif type_ == STATE_MACHINE:
        definition = _document(props.get("definition"))
        if definition is None:
            problems.append(f"{label}: definition is not a JSON state machine")
        else:
            for state_name, state in _task_states(definition.get("States")):
                if not _mappings(state.get("Retry")):
                    problems.append(f"{label}: Task state '{state_name}' has no Retry")
    elif type_ == PUBSUB_SUBSCRIPTION:
        # Presence is a stack question (dead-letter sinks need none); what is set must be
        # complete and within Pub/Sub's limits.
        policy = props.get("deadLetterPolicy")
        if policy:
            if not _get(props, "deadLetterPolicy", "deadLetterTopic"):
                problems.append(f"{label}: deadLetterPolicy has no deadLetterTopic")
            low, high = GCP_MAX_DELIVERIES
            attempts = _int(_get(props, "deadLetterPolicy", "maxDeliveryAttempts"))
            if attempts is None or not low <= attempts <= high:
                problems.append(f"{label}: deadLetterPolicy.maxDeliveryAttempts must be "
                                f"{low}-{high}, got {attempts!r}")
    elif type_ == EVENTARC_TRIGGER:
        problems.append(f"{label}: Eventarc triggers cannot set a dead-letter topic; route "
                        "through a Pub/Sub push subscription with a dead_letter_policy")
    elif type_ in (FUNCTION_V2, FUNCTION_V1) and props.get("eventTrigger"):
        problems.append(f"{label}: an event-triggered function drops failed events (no "
                        "dead-letter topic); use a push subscription with dead_letter_policy "
                        "and retry_policy")
    return problems


def _dead_letter_arns(stack: Stack) -> set[str]:
    arns: set[str] = set()
    for queue in stack.of_type(SQS_QUEUE):
        policy = _document(queue.props.get("redrivePolicy"))
        if policy and policy.get("deadLetterTargetArn"):
            arns.add(str(policy["deadLetterTargetArn"]))
    for target in stack.of_type(EVENT_TARGET):
        arn = _get(target.props, "deadLetterConfig", "arn")
        if arn:
            arns.add(str(arn))
    for schedule in stack.of_type(SCHEDULE):
        arn = _get(schedule.props, "target", "deadLetterConfig", "arn")
        if arn:
            arns.add(str(arn))
    return arns


def _dead_letter_topics(stack: Stack) -> set[str]:
    return {_short(_get(s.props, "deadLetterPolicy", "deadLetterTopic"))
            for s in stack.of_type(PUBSUB_SUBSCRIPTION)
            if _get(s.props, "deadLetterPolicy", "deadLetterTopic")}


def _async_edge_stack(stack: Stack, config: Mapping[str, Any]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    sinks = _dead_letter_arns(stack)
    for queue in stack.of_type(SQS_QUEUE):
        if queue.props.get("redrivePolicy") or queue.props.get("arn") in sinks:
            continue
        found.append((queue.urn, f"{_label(queue.type, queue.name)}: no redrivePolicy and it is "
                                 "no other queue's or target's dead-letter queue: a poison "
                                 "message would be retried until it expires"))
    dead_letter_topics = _dead_letter_topics(stack)
    for sub in stack.of_type(PUBSUB_SUBSCRIPTION):
        if _short(sub.props.get("topic")) in dead_letter_topics:
            continue  # the pull subscription that keeps what was dead-lettered
        if not sub.props.get("pushConfig") and sub.props.get("retainAckedMessages") is True:
            continue  # a replay window (seek): nothing is delivered through it
        label = _label(sub.type, sub.name)
        if not _get(sub.props, "deadLetterPolicy", "deadLetterTopic"):
            found.append((sub.urn, f"{label}: no deadLetterPolicy: a poison message is "
                                   "redelivered until it expires"))
        if not _get(sub.props, "retryPolicy", "minimumBackoff"):
            found.append((sub.urn, f"{label}: no retryPolicy with minimumBackoff: Pub/Sub "
                                   "redelivers at once, without backoff"))
    return found


# --- 2. no IAM wildcard action or resource ------------------------------------------------

#: Actions without resource-level permissions, for which AWS documents Resource "*" as
#: the only form: X-Ray tracing (`xray:Put*`, sampling rules) and the CloudWatch Logs
#: "vended log delivery" actions Step Functions needs to log (adapters/aws/topology.py).
_NO_RESOURCE_LEVEL: Final = re.compile(
    r"^(xray:(Put[A-Za-z]*\*?|GetSamplingRules|GetSamplingTargets|"
    r"GetSamplingStatisticSummaries)|"
    r"logs:(CreateLogDelivery|DeleteLogDelivery|DescribeLogGroups|DescribeResourcePolicies|"
    r"GetLogDelivery|ListLogDeliveries|PutResourcePolicy|UpdateLogDelivery))$")
_XRAY_PATTERN: Final = re.compile(r"^xray:Put[A-Za-z]*\*$")
_WILDCARD: Final = re.compile(r"[*?]")
#: Child resources of one named parent, created at run time (log streams of *this* log
#: group, indexes and streams of *this* table): a wildcard may stand for them only.
_NAMED_PARENT_CHILDREN: Final = (
    re.compile(r"^arn:[a-z-]+:logs:[a-z0-9-]+:[0-9]{12}:log-group:[^*?:]+:log-stream:\*$"),
    re.compile(r"^arn:[a-z-]+:dynamodb:[a-z0-9-]+:[0-9]{12}:table/[^*?/]+/(index|stream)/\*$"),
    # The objects of one named bucket (their keys are only known at run time).
    re.compile(r"^arn:[a-z-]+:s3:::[^*?/]+/\*$"),
)
_ACCOUNT_ROOT: Final = re.compile(r"^arn:[a-z-]+:iam::[0-9]{12}:root$")


def _statement_problems(label: str, index: int, statement: Mapping[str, Any],
                        key_policy: bool) -> list[str]:
    if statement.get("Effect", "Allow") != "Allow":
        return []
    where = f"{label}: statement {statement.get('Sid') or index}"
    problems: list[str] = []
    for negated in ("NotAction", "NotResource", "NotPrincipal"):
        if negated in statement:
            problems.append(f"{where} uses {negated} (allows everything not listed)")
    actions = [str(a) for a in _items(statement.get("Action"))]
    resources = [str(r) for r in _items(statement.get("Resource"))]
    principals = _principals(statement.get("Principal"))
    star_allowed = bool(actions) and all(_NO_RESOURCE_LEVEL.match(a) for a in actions)
    # A key policy is attached to one key: its Resource "*" means "this key". Its account
    # root statement is AWS's default, which keeps the key manageable through IAM.
    root_admin = (key_policy and actions == ["kms:*"]
                  and principals and all(_ACCOUNT_ROOT.match(p) for p in principals))
    for action in actions:
        if _WILDCARD.search(action) and not _XRAY_PATTERN.match(action) and not root_admin:
            problems.append(f"{where} allows wildcard action '{action}'")
    for resource in resources:
        if resource == "*":
            if not (star_allowed or key_policy):
                problems.append(f"{where} allows Resource '*' for {', '.join(actions) or '?'}")
        elif _WILDCARD.search(resource) and not any(p.match(resource)
                                                    for p in _NAMED_PARENT_CHILDREN):
            problems.append(f"{where} allows wildcard resource '{resource}'")
    if "*" in principals and not statement.get("Condition"):
        problems.append(f"{where} allows Principal '*' without a condition")
    return problems


def _principals(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [str(p) for v in value.values() for p in _items(v)]
    return [str(p) for p in _items(value)]


def _policy_document_problems(label: str, raw: Any, key_policy: bool) -> list[str]:
    if raw is None or raw == "":
        return []
    document = _document(raw)
    if document is None:
        return [f"{label}: policy is not a JSON policy document"]
    statements = _mappings(document.get("Statement"))
    problems: list[str] = []
    for index, statement in enumerate(statements):
        problems += _statement_problems(label, index, statement, key_policy)
    return problems


#: Every GCP grant: projects/iAMMember, pubsub/topicIAMBinding, cloudrunv2/serviceIamMember...
_GCP_IAM: Final = re.compile(r"^gcp:[A-Za-z0-9]+/[A-Za-z0-9]*[iI][aA][mM](Member|Binding|Policy):")
_BROAD_MANAGED_POLICIES: Final = re.compile(
    r"^arn:aws:iam::aws:policy/(AdministratorAccess|PowerUserAccess|IAMFullAccess|"
    r".*FullAccess)$")


def _iam_resource(type_: str, name: str, props: Mapping[str, Any],
                  config: Mapping[str, Any]) -> list[str]:
    label = _label(type_, name)
    problems: list[str] = []
    if type_ in AWS_POLICY_DOCUMENTS:
        problems += _policy_document_problems(label, props.get("policy"), type_ == KMS_KEY)
    elif type_ == ROLE:
        for inline in _mappings(props.get("inlinePolicies")):
            problems += _policy_document_problems(
                f"{label} inline policy '{inline.get('name')}'", inline.get("policy"), False)
        for arn in _items(props.get("managedPolicyArns")):
            if _BROAD_MANAGED_POLICIES.match(str(arn)):
                problems.append(f"{label}: attaches the broad managed policy {arn}")
    elif type_ == ROLE_POLICY_ATTACHMENT:
        if _BROAD_MANAGED_POLICIES.match(str(props.get("policyArn") or "")):
            problems.append(f"{label}: attaches the broad managed policy {props['policyArn']}")
    elif _GCP_IAM.match(type_):
        role = str(props.get("role") or "")
        members = [str(m) for m in (_items(props.get("members")) or _items(props.get("member")))]
        if role in PRIMITIVE_ROLES:
            problems.append(f"{label}: grants the primitive role {role}")
        for member in members:
            if member in PUBLIC_MEMBERS:
                problems.append(f"{label}: grants {role or 'a role'} to {member}")
        policy_data = _document(props.get("policyData"))
        for binding in _mappings(policy_data.get("bindings") if policy_data else None):
            if str(binding.get("role")) in PRIMITIVE_ROLES:
                problems.append(f"{label}: policyData grants the primitive role "
                                f"{binding.get('role')}")
            for member in _items(binding.get("members")):
                if member in PUBLIC_MEMBERS:
                    problems.append(f"{label}: policyData grants {binding.get('role')} to "
                                    f"{member}")
        if type_ in PROJECT_IAM and not props.get("condition"):
            problems.append(f"{label}: grants {role} on the whole project; scope it to one "
                            "resource with a condition")
    return problems


# --- 2b. AWS: grants in the form AWS authorises -------------------------------------------

#: CloudWatch Logs actions that write into a log group: AWS authorises them on the log
#: stream (`<log-group ARN>:log-stream:<name>`), so a grant on the bare log-group ARN (the
#: provider's `arn` output) matches nothing and the function writes no log line.
_LOG_WRITE_ACTIONS: Final = frozenset({"logs:createlogstream", "logs:putlogevents"})
_BARE_LOG_GROUP: Final = re.compile(r"^arn:[a-z-]+:logs:[^:]*:[^:]*:log-group:[^:]+$")
LAMBDA_PERMISSION: Final = "aws:lambda/permission:Permission"
#: Service principals for which AWS documents no confused-deputy keys when they assume a
#: role: Lambda's `aws:SourceArn` is about who may invoke a function, not about assuming
#: its execution role, and a condition the service never sends would stop every function.
DEFAULT_UNCONDITIONED_SERVICES: Final = ("lambda.amazonaws.com",)
_SOURCE_KEYS: Final = frozenset({"aws:sourceaccount", "aws:sourcearn"})


def _aws_documents(type_: str, name: str, props: Mapping[str, Any]
                   ) -> list[tuple[str, Mapping[str, Any]]]:
    """(label, document) of every IAM document a resource carries (identity, resource and
    key policies, a role's inline policies and its trust policy)."""
    label = _label(type_, name)
    found: list[tuple[str, Mapping[str, Any] | None]] = []
    if type_ in AWS_POLICY_DOCUMENTS:
        found.append((label, _document(props.get("policy"))))
    elif type_ == ROLE:
        found.append((f"{label} trust policy", _document(props.get("assumeRolePolicy"))))
        for inline in _mappings(props.get("inlinePolicies")):
            found.append((f"{label} inline policy '{inline.get('name')}'",
                          _document(inline.get("policy"))))
    return [(where, doc) for where, doc in found if doc is not None]


def _allow_statements(document: Mapping[str, Any]) -> Iterator[tuple[int, Mapping[str, Any]]]:
    for index, statement in enumerate(_mappings(document.get("Statement"))):
        if statement.get("Effect", "Allow") == "Allow":
            yield index, statement


def _condition_keys(statement: Mapping[str, Any]) -> set[str]:
    condition = statement.get("Condition")
    if not isinstance(condition, Mapping):
        return set()
    return {str(key).lower() for operator_ in condition.values()
            if isinstance(operator_, Mapping) for key in operator_}


def _log_writes_resource(type_: str, name: str, props: Mapping[str, Any],
                         config: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    for where, document in _aws_documents(type_, name, props):
        for index, statement in _allow_statements(document):
            actions = [str(a) for a in _items(statement.get("Action"))]
            writes = [a for a in actions if a.lower() in _LOG_WRITE_ACTIONS]
            if not writes:
                continue
            for resource in (str(r) for r in _items(statement.get("Resource"))):
                if _BARE_LOG_GROUP.match(resource):
                    problems.append(
                        f"{where}: statement {statement.get('Sid') or index} grants "
                        f"{', '.join(writes)} on the bare log-group ARN '{resource}': AWS "
                        f"authorises log writes on '{resource}:log-stream:*', so no log "
                        "line gets through")
    return problems


def _service_principals(statement: Mapping[str, Any]) -> list[str]:
    principal = statement.get("Principal")
    if not isinstance(principal, Mapping):
        return []
    return [str(p) for p in _items(principal.get("Service"))]


def _confused_deputy_resource(type_: str, name: str, props: Mapping[str, Any],
                              config: Mapping[str, Any]) -> list[str]:
    label = _label(type_, name)
    if type_ == LAMBDA_PERMISSION:
        principal = str(props.get("principal") or "")
        if principal.endswith(".amazonaws.com") and not (props.get("sourceArn")
                                                         or props.get("sourceAccount")):
            return [f"{label}: lets {principal} invoke the function with neither sourceArn "
                    "nor sourceAccount: any account's resources could invoke it through "
                    "that service"]
        return []
    exempt = set(_items(config.get("unconditionedServices", DEFAULT_UNCONDITIONED_SERVICES)))
    problems: list[str] = []
    for where, document in _aws_documents(type_, name, props):
        trust = where.endswith("trust policy")
        for index, statement in _allow_statements(document):
            services = [s for s in _service_principals(statement) if s not in exempt]
            if not services:
                continue
            keys = _condition_keys(statement)
            sid = statement.get("Sid") or index
            if trust and "aws:sourceaccount" not in keys:
                problems.append(
                    f"{where}: statement {sid} lets {', '.join(services)} assume the role "
                    "without an aws:SourceAccount condition (and aws:SourceArn where the "
                    "service documents it): another account could have the service act "
                    "with this role")
            elif not trust and not keys & _SOURCE_KEYS:
                problems.append(
                    f"{where}: statement {sid} grants {', '.join(services)} with neither "
                    "aws:SourceArn nor aws:SourceAccount: any account's resources could "
                    "use the grant through that service")
    return problems


def _put_events_resource(type_: str, name: str, props: Mapping[str, Any],
                         config: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    for where, document in _aws_documents(type_, name, props):
        if where.endswith("trust policy"):
            continue
        for index, statement in _allow_statements(document):
            actions = [str(a).lower() for a in _items(statement.get("Action"))]
            if "events:putevents" not in actions:
                continue
            if "events:source" not in _condition_keys(statement):
                problems.append(
                    f"{where}: statement {statement.get('Sid') or index} allows "
                    "events:PutEvents without an events:source condition: the publisher "
                    "may put any source's events on the bus (name the sources it sends, "
                    "and events:detail-type for its types)")
    return problems


# --- 3. one identity per function ---------------------------------------------------------


def _identity(stack: Stack, resource: Resource, *path: str) -> str | None:
    """The identity a function runs as: the value at `path`, or, while it is unknown (a
    role created in the same preview), the resources the property was computed from."""
    deps = resource.property_dependencies.get(path[0])
    try:
        value = _get(resource.props, *path)
    except stack.unknown:
        if not deps:
            raise
        value = None
    if value:
        return str(value)
    return "computed from " + ", ".join(sorted(deps)) if deps else None


def _shared(kind: str, users: Mapping[str, list[Resource]]) -> list[tuple[str, str]]:
    found = []
    for identity, resources in users.items():
        if len(resources) > 1:
            names = ", ".join(f"'{r.name}'" for r in resources)
            for r in resources:
                found.append((r.urn, f"{_label(r.type, r.name)}: shares its {kind} {identity} "
                                     f"with {names}: each function needs its own identity"))
    return found


def _identity_stack(stack: Stack, config: Mapping[str, Any]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    roles: dict[str, list[Resource]] = {}
    for fn in stack.of_type(LAMBDA):
        role = _identity(stack, fn, "role")
        if role:
            roles.setdefault(role, []).append(fn)
    for machine in stack.of_type(STATE_MACHINE):
        role = _identity(stack, machine, "roleArn")
        if role in roles:
            roles[role].append(machine)
    found += _shared("role", roles)

    accounts: dict[str, list[Resource]] = {}
    for fn in stack.of_type(FUNCTION_V2, FUNCTION_V1):
        path = ("serviceConfig", "serviceAccountEmail") if fn.type == FUNCTION_V2 else (
            "serviceAccountEmail",)
        account = _identity(stack, fn, *path)
        if not account:
            found.append((fn.urn, f"{_label(fn.type, fn.name)}: no service account set: it runs "
                                  "as the project's default compute identity"))
            continue
        accounts.setdefault(account, []).append(fn)
    for workflow in stack.of_type(WORKFLOW):
        account = _identity(stack, workflow, "serviceAccount")
        if account in accounts:
            accounts[account].append(workflow)
    found += _shared("service account", accounts)
    return found


# --- 4. encryption at rest ----------------------------------------------------------------

#: GCP encrypts everything at rest with Google-managed keys; where a stack chooses CMEK,
#: the reference must name one key.
_CMEK_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    PUBSUB_TOPIC: ("kmsKeyName",),
    "gcp:storage/bucket:Bucket": ("encryption", "defaultKmsKeyName"),
    "gcp:firestore/database:Database": ("cmekConfig", "kmsKeyName"),
    FUNCTION_V2: ("kmsKeyName",),
    WORKFLOW: ("cryptoKeyName",),
}


def _encryption_resource(type_: str, name: str, props: Mapping[str, Any],
                         config: Mapping[str, Any]) -> list[str]:
    label = _label(type_, name)
    if type_ == DYNAMODB_TABLE:
        if _get(props, "serverSideEncryption", "enabled") is not True:
            return [f"{label}: serverSideEncryption.enabled is not true"]
    elif type_ == SQS_QUEUE:
        if props.get("sqsManagedSseEnabled") is not True and not props.get("kmsMasterKeyId"):
            return [f"{label}: neither sqsManagedSseEnabled nor kmsMasterKeyId is set"]
    elif type_ == SNS_TOPIC:
        if not props.get("kmsMasterKeyId"):
            return [f"{label}: no kmsMasterKeyId: the topic stores messages unencrypted"]
    elif type_ == KMS_KEY:
        spec = str(props.get("customerMasterKeySpec") or props.get("keySpec")
                   or "SYMMETRIC_DEFAULT")
        if spec == "SYMMETRIC_DEFAULT" and props.get("enableKeyRotation") is not True:
            return [f"{label}: enableKeyRotation is not true"]
    elif type_ in _CMEK_FIELDS:
        key = _get(props, *_CMEK_FIELDS[type_])
        if key not in (None, "") and not KMS_KEY_PATH.match(str(key)):
            return [f"{label}: {'.'.join(_CMEK_FIELDS[type_])} '{key}' is not a key "
                    "(projects/P/locations/L/keyRings/R/cryptoKeys/K)"]
    return []


# --- 5. internal ingress on GCP functions -------------------------------------------------


def _ingress_resource(type_: str, name: str, props: Mapping[str, Any],
                      config: Mapping[str, Any]) -> list[str]:
    if type_ == FUNCTION_V2:
        ingress = _get(props, "serviceConfig", "ingressSettings")
        entry = _get(props, "buildConfig", "entryPoint")
    elif type_ == FUNCTION_V1:
        ingress, entry = props.get("ingressSettings"), props.get("entryPoint")
    else:
        return []
    if ingress == "ALLOW_INTERNAL_ONLY":
        return []
    public = config.get("publicEntryPoints", DEFAULT_PUBLIC_ENTRY_POINTS)
    if entry in _items(public):
        return []  # the HTTP ingress: reachable, but only by callers granted run.invoker
    return [f"{_label(type_, name)}: ingress is {ingress or 'unset (ALLOW_ALL)'}, must be "
            f"ALLOW_INTERNAL_ONLY (only entry points {sorted(_items(public))} may be public)"]


# --- 6. dead letters are retained, and Pub/Sub may move them -------------------------------


def _agent_grants(grants: list[Resource], target_key: str, role: str) -> set[str]:
    """Short names of the topics/subscriptions on which the Pub/Sub agent has `role`."""
    granted: set[str] = set()
    for grant in grants:
        members = _items(grant.props.get("members")) or _items(grant.props.get("member"))
        if grant.props.get("role") == role and any(PUBSUB_AGENT.match(str(m))
                                                   for m in members):
            granted.add(_short(grant.props.get(target_key)))
    return granted


def _dead_letters_stack(stack: Stack, config: Mapping[str, Any]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    topics = {_short(t.props.get("name") or t.name): t for t in stack.of_type(PUBSUB_TOPIC)}
    subscribed = {_short(s.props.get("topic")) for s in stack.of_type(PUBSUB_SUBSCRIPTION)}
    publishers = _agent_grants(stack.of_type(*TOPIC_IAM), "topic", "roles/pubsub.publisher")
    subscribers = _agent_grants(stack.of_type(*SUBSCRIPTION_IAM), "subscription",
                                "roles/pubsub.subscriber")
    for sub in stack.of_type(PUBSUB_SUBSCRIPTION):
        dead_letter = _get(sub.props, "deadLetterPolicy", "deadLetterTopic")
        if not dead_letter:
            continue
        label, short = _label(sub.type, sub.name), _short(dead_letter)
        topic = topics.get(short)
        if topic is None:
            found.append((sub.urn, f"{label}: dead-letter topic '{dead_letter}' is not in this "
                                   "stack, so its retention and grants cannot be checked"))
            continue
        if not topic.props.get("messageRetentionDuration"):
            found.append((topic.urn, f"{_label(topic.type, topic.name)}: dead-letter topic has "
                                     "no messageRetentionDuration"))
        if short not in subscribed:
            found.append((topic.urn, f"{_label(topic.type, topic.name)}: dead-letter topic has "
                                     "no subscription: whatever lands there is lost"))
        if short not in publishers:
            found.append((sub.urn, f"{label}: the Pub/Sub service agent is not granted "
                                   f"roles/pubsub.publisher on dead-letter topic '{short}': "
                                   "poison messages loop forever"))
        if _short(sub.props.get("name") or sub.name) not in subscribers:
            found.append((sub.urn, f"{label}: the Pub/Sub service agent is not granted "
                                   "roles/pubsub.subscriber on this subscription: it cannot "
                                   "ack what it dead-letters"))

    queues = {str(q.props.get("arn")): q for q in stack.of_type(SQS_QUEUE) if q.props.get("arn")}
    for queue in stack.of_type(SQS_QUEUE):
        policy = _document(queue.props.get("redrivePolicy"))
        dlq = queues.get(str(policy.get("deadLetterTargetArn"))) if policy else None
        if dlq is None:
            continue
        source = _int(queue.props.get("messageRetentionSeconds")) or SQS_DEFAULT_RETENTION_S
        kept = _int(dlq.props.get("messageRetentionSeconds"))
        if kept is None or kept < source:
            # SQS keeps a message's original enqueue time when it moves it to the DLQ.
            found.append((dlq.urn, f"{_label(dlq.type, dlq.name)}: dead-letter queue of "
                                   f"'{queue.name}' keeps messages {kept or 'the default'} s, "
                                   f"less than its source ({source} s)"))
    return found


# --- 7. no plaintext secret outputs -------------------------------------------------------

_SECRET_WORDS: Final = re.compile(
    r"(^|_)(password|passwd|pwd|secrets?|tokens?|credentials?|api_?key|private_?key|"
    r"access_?key|secret_?key|connection_?string|conn_?str)(_|$)")


def looks_secret(name: str) -> bool:
    """`dbPassword`, `api_key`, `ClientSecret` -> True; `alarmTopicArn` -> False."""
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).replace("-", "_").lower()
    return bool(_SECRET_WORDS.search(snake))


def _secret_paths(read: Callable[[], Any], path: str, unknown: tuple[type[Exception], ...]
                  ) -> Iterator[str]:
    if looks_secret(path.rsplit(".", 1)[-1]):
        yield path
    try:
        value = read()
    except unknown:
        return  # an output not known yet in preview: its name was checked, nothing below
    if isinstance(value, Mapping):
        for key in value:
            yield from _secret_paths(functools.partial(operator.getitem, value, key),
                                     f"{path}.{key}", unknown)


def _secret_outputs_stack(stack: Stack, config: Mapping[str, Any]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for root in stack.of_type(STACK):
        for name in root.props:
            read = functools.partial(operator.getitem, root.props, name)
            for path in _secret_paths(read, str(name), stack.unknown):
                if stack.secret_outputs is None:
                    found.append((root.urn, f"{_label(root.type, root.name)}: output '{path}' "
                                            "looks secret; policies cannot see whether it is "
                                            "encrypted, so do not export secrets (read them "
                                            "from config or a secret manager)"))
                elif name not in stack.secret_outputs:
                    found.append((root.urn, f"{_label(root.type, root.name)}: output '{path}' "
                                            "looks secret but is plaintext in the state: wrap "
                                            "it in pulumi.Output.secret"))
    return found


# --- 8. GCP: internal-ingress functions are called at their run.app URL -------------------

#: Gen2 functions' legacy host. Cloud Run counts Pub/Sub push, Eventarc, Cloud Scheduler and
#: Workflows requests as internal (what ALLOW_INTERNAL_ONLY admits) only when they are sent
#: to the service's default run.app URL; at a cloudfunctions.net URL they are refused.
CLOUDFUNCTIONS_URL: Final = re.compile(r"https://[A-Za-z0-9.-]*\.cloudfunctions\.net\b[^\s\"']*")
RUN_APP_HOST: Final = re.compile(r"^https://[a-z0-9-]+\.a\.run\.app(/|$)")


def _run_app_urls_resource(type_: str, name: str, props: Mapping[str, Any],
                           config: Mapping[str, Any]) -> list[str]:
    label = _label(type_, name)
    problems: list[str] = []
    if type_ == PUBSUB_SUBSCRIPTION:
        push = _get(props, "pushConfig")
        if not isinstance(push, Mapping):
            return []
        endpoint = str(push.get("pushEndpoint") or "")
        if CLOUDFUNCTIONS_URL.match(endpoint):
            problems.append(f"{label}: push endpoint {endpoint} is a cloudfunctions.net URL; "
                            "an internal-ingress function takes Pub/Sub pushes only at its "
                            "run.app URL (serviceConfig.uri)")
        token = push.get("oidcToken")
        if RUN_APP_HOST.match(endpoint) and not isinstance(token, Mapping):
            problems.append(f"{label}: pushes to {endpoint} without an OIDC token; Cloud Run "
                            "refuses unauthenticated calls (set oidcToken with an invoker "
                            "service account)")
        audience = token.get("audience") if isinstance(token, Mapping) else None
        if audience and audience != endpoint:
            # Unset, Pub/Sub uses the endpoint itself, which is what Cloud Run accepts.
            problems.append(f"{label}: OIDC audience {audience} is not the push endpoint "
                            f"{endpoint}; Cloud Run rejects tokens for another audience")
    elif type_ == WORKFLOW:
        for url in sorted(set(CLOUDFUNCTIONS_URL.findall(str(props.get("sourceContents")
                                                             or "")))):
            problems.append(f"{label}: calls {url}, a cloudfunctions.net URL; an "
                            "internal-ingress function takes Workflows calls only at its "
                            "run.app URL (serviceConfig.uri)")
    return problems


# --- 9. GCP: function identities hold no project-wide role ---------------------------------

#: Roles a function may hold on the project, because the service has no resource-level IAM
#: (Firestore grants stop at the project, narrowed to a database by a condition; Workflows
#: has no per-workflow policy). Each still needs a condition naming one resource.
PROJECT_ONLY_ROLES: Final = re.compile(r"^roles/(datastore\.[A-Za-z]+|workflows\.invoker)$")
#: `resource.name == "<one resource>"` (or several such, ORed): names, not patterns.
_EXACT_NAMES: Final = re.compile(
    r'^\s*resource\.name\s*==\s*"[^"*]+"(\s*\|\|\s*resource\.name\s*==\s*"[^"*]+")*\s*$')
_DATABASE_NAME: Final = re.compile(r'resource\.name\s*==\s*"projects/[^/"]+/databases/[^/"*]+"')


def _function_members(stack: Stack) -> dict[str, str]:
    """`serviceAccount:<email>` -> the function's name, for every function's identity."""
    out: dict[str, str] = {}
    for fn in stack.of_type(FUNCTION_V2, FUNCTION_V1):
        try:
            email = (_get(fn.props, "serviceConfig", "serviceAccountEmail")
                     if fn.type == FUNCTION_V2 else fn.props.get("serviceAccountEmail"))
        except stack.unknown:
            continue  # unknown in preview: checked at update
        if email:
            out[f"serviceAccount:{email}"] = fn.name
    return out


def _grant_members(grant: Resource) -> list[str]:
    return [str(m) for m in (_items(grant.props.get("members"))
                             or _items(grant.props.get("member")))]


def _condition(grant: Resource) -> str:
    return str(_get(grant.props, "condition", "expression") or "")


def _function_project_roles_stack(stack: Stack, config: Mapping[str, Any]
                                  ) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    functions = _function_members(stack)
    for grant in stack.of_type(*PROJECT_IAM):
        role = str(grant.props.get("role") or "")
        for member in _grant_members(grant):
            if member not in functions:
                continue
            label = _label(grant.type, grant.name)
            who = f"function '{functions[member]}'"
            if not PROJECT_ONLY_ROLES.match(role):
                found.append((grant.urn, f"{label}: grants {who} {role} on the project; the "
                                         "service has resource-level IAM: grant it on the "
                                         "one resource instead"))
            elif not _EXACT_NAMES.match(_condition(grant)):
                found.append((grant.urn, f"{label}: grants {who} {role} on the project "
                                         "without a condition naming exact resources "
                                         "(resource.name == \"...\")"))
    return found


# --- 10. GCP: per-function data access (Firestore) -----------------------------------------


def _data_access_stack(stack: Stack, config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """A datastore role must name a database: Firestore IAM is per database, and a grant on
    the project reaches every database in it. Unconditioned is tolerated only when the
    stack's one database is used by that one identity (it holds only that one's data)."""
    found: list[tuple[str, str]] = []
    grants = [g for g in stack.of_type(*PROJECT_IAM)
              if str(g.props.get("role") or "").startswith("roles/datastore.")]
    holders = {m for g in grants for m in _grant_members(g)}
    only_one = len(stack.of_type("gcp:firestore/database:Database")) == 1 and len(holders) == 1
    for grant in grants:
        condition = _condition(grant)
        label, role = _label(grant.type, grant.name), grant.props.get("role")
        if not condition:
            if not only_one:
                found.append((grant.urn, f"{label}: {role} without a condition reaches every "
                                         "Firestore database in the project; name the "
                                         "function's database(s) with resource.name"))
        elif not _EXACT_NAMES.match(condition) or not _DATABASE_NAME.search(condition):
            found.append((grant.urn, f"{label}: {role} condition '{condition}' does not name "
                                     "a database (resource.name == \"projects/P/databases/D"
                                     "\")"))
    return found


# --- the rule table -----------------------------------------------------------------------

RULES: Final[tuple[Rule, ...]] = (
    Rule("async-edge-dlq-and-retry",
         "Every async edge has a dead-letter queue/topic and an explicit retry policy.",
         "Give SQS queues a redrivePolicy, EventBridge targets and schedules a "
         "deadLetterConfig and retryPolicy, SQS event sources ReportBatchItemFailures, "
         "Task states a Retry, "
         "Pub/Sub subscriptions a deadLetterPolicy and retryPolicy.",
         resource_check=_async_edge_resource, stack_check=_async_edge_stack),
    Rule("no-iam-wildcards",
         "No IAM wildcard action or resource (X-Ray Put* on '*' excepted); no GCP primitive "
         "roles, public members or unconditioned project-wide grants.",
         "Name exact actions and ARNs; grant GCP roles on one resource.",
         resource_check=_iam_resource),
    Rule("aws-log-writes-on-streams",
         "CloudWatch Logs writes (CreateLogStream, PutLogEvents) are granted on the log "
         "group's streams, never on the bare log-group ARN (which AWS never matches).",
         "Grant them on '<log-group ARN>:log-stream:*'.",
         resource_check=_log_writes_resource),
    Rule("aws-confused-deputy",
         "Service principals are pinned to this account: trust policies carry "
         "aws:SourceAccount (Lambda excepted: it documents no such key), resource "
         "policies and Lambda permissions aws:SourceArn or aws:SourceAccount.",
         "Add aws:SourceAccount (and aws:SourceArn, the resource that may use the grant).",
         resource_check=_confused_deputy_resource,
         config_schema={"unconditionedServices": {
             "type": "array", "items": {"type": "string"},
             "default": list(DEFAULT_UNCONDITIONED_SERVICES),
             "description": "Service principals that document no confused-deputy keys for "
                            "assuming a role."}}),
    Rule("aws-put-events-scoped",
         "events:PutEvents is granted with an events:source condition (the sources the "
         "publisher sends), so no publisher can put another's events on the bus.",
         "Add ForAllValues:StringEquals events:source (and StringEquals events:detail-type).",
         resource_check=_put_events_resource),
    Rule("one-identity-per-function",
         "Each Lambda has its own role; each Cloud Function its own service account.",
         "Create one role / service account per function.",
         stack_check=_identity_stack),
    Rule("encryption-at-rest",
         "DynamoDB SSE, SQS SSE, SNS KMS, rotating KMS keys; GCP CMEK references (where set) "
         "name one key (GCP encrypts everything else with Google-managed keys).",
         "Enable server-side encryption on the resource.",
         resource_check=_encryption_resource),
    Rule("gcp-internal-ingress",
         "Cloud Functions accept internal traffic only (the HTTP ingress entry excepted).",
         "Set ingress_settings to ALLOW_INTERNAL_ONLY.",
         resource_check=_ingress_resource,
         config_schema={"publicEntryPoints": {
             "type": "array", "items": {"type": "string"},
             "default": list(DEFAULT_PUBLIC_ENTRY_POINTS),
             "description": "Entry points of functions that may accept external traffic."}}),
    Rule("dead-letters-retained-and-granted",
         "Dead-letter topics/queues keep messages and have a subscription; the Pub/Sub "
         "service agent may publish to each dead-letter topic and subscribe to its source.",
         "Set message retention, add a pull subscription, grant the agent "
         "roles/pubsub.publisher on the topic and roles/pubsub.subscriber on the source.",
         stack_check=_dead_letters_stack),
    Rule("no-plaintext-secret-outputs",
         "Stack outputs that look secret are Pulumi secrets.",
         "Wrap the value in pulumi.Output.secret, or do not export it.",
         stack_check=_secret_outputs_stack),
    Rule("gcp-internal-callers-use-run-app-urls",
         "Pub/Sub pushes and Workflows calls reach Cloud Functions at their run.app URL "
         "(never cloudfunctions.net), with an OIDC token whose audience is that URL.",
         "Use the function's serviceConfig.uri as push endpoint, call URL and audience.",
         resource_check=_run_app_urls_resource),
    Rule("gcp-no-project-roles-for-functions",
         "Function identities hold no project-level role, except where the service has no "
         "resource-level IAM (Firestore, Workflows), with a condition naming the resource.",
         "Grant the role on the resource; for Firestore and Workflows add a condition "
         "resource.name == \"...\".",
         stack_check=_function_project_roles_stack),
    Rule("gcp-function-data-access",
         "Firestore roles name the database(s) they reach: a project grant without such a "
         "condition reaches every database (tolerated only for a stack's one database used "
         "by one identity).",
         "Add a condition resource.name == \"projects/P/databases/D\" per database.",
         stack_check=_data_access_stack),
)


def rule(name: str) -> Rule:
    for candidate in RULES:
        if candidate.name == name:
            return candidate
    raise KeyError(f"no rule named {name!r}; known: {[r.name for r in RULES]}")


def check_resource(rule_: Rule, type_: str, name: str, props: Mapping[str, Any],
                   config: Mapping[str, Any] | None = None) -> list[str]:
    if rule_.resource_check is None:
        return []
    return rule_.resource_check(type_, name, props, {**rule_.defaults(), **(config or {})})


def check_stack(rule_: Rule, stack: Stack,
                config: Mapping[str, Any] | None = None) -> list[Violation]:
    if rule_.stack_check is None:
        return []
    found = rule_.stack_check(stack, {**rule_.defaults(), **(config or {})})
    return [Violation(rule_.name, urn, message) for urn, message in found]


def evaluate(resources: Iterable[Resource], stack: Stack | None = None,
             inputs: Mapping[str, Mapping[str, Any]] | None = None,
             rules: Iterable[Rule] = RULES) -> list[Violation]:
    """Every rule on every resource, as `pulumi preview --policy-pack` would run them.

    `inputs` (URN -> inputs) feeds the resource rules, which Pulumi runs on inputs; the
    stack rules run on `stack` (outputs). Without `inputs`, resource rules see `props`.
    """
    listed = tuple(resources)
    stack = stack or Stack(listed)
    violations: list[Violation] = []
    for rule_ in rules:
        for resource in listed:
            props = inputs.get(resource.urn, resource.props) if inputs else resource.props
            violations += [Violation(rule_.name, resource.urn, message) for message in
                           check_resource(rule_, resource.type, resource.name, props)]
        violations += check_stack(rule_, stack)
    return violations
