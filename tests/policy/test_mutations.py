"""Each policy catches a mutated copy of a real stack that breaks it.

One row per mutation, both clouds: the row changes one thing in the recorded dev stack
(resource inputs and outputs alike, as a changed program would) and names the policy that
must catch it and the words its message must contain (the resource's name and the
problem). Violations the unmutated stack already has do not count.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.policy.stacks import Recording, record, rules

Props = dict[str, Any]


@dataclass(frozen=True)
class Mutation:
    id: str
    stack: str
    apply: Callable[[Recording], Recording]
    policy: str
    words: tuple[str, ...]  # must all appear in one new violation's message


def change(type_: str, suffix: str, edit: Callable[[Props], None]
           ) -> Callable[[Recording], Recording]:
    def apply(rec: Recording) -> Recording:
        return rec.mutate(rec.get(type_, suffix).urn, edit)
    return apply


def set_(**values: Any) -> Callable[[Props], None]:
    return lambda props: props.update(values)


def drop(*keys: str) -> Callable[[Props], None]:
    def edit(props: Props) -> None:
        for key in keys:
            props.pop(key)
    return edit


def edit_json(key: str, edit: Callable[[Any], None]) -> Callable[[Props], None]:
    def apply(props: Props) -> None:
        document = json.loads(props[key])
        edit(document)
        props[key] = json.dumps(document)
    return apply


def add_statement(statement: dict[str, Any]) -> Callable[[Props], None]:
    return edit_json("policy", lambda doc: doc["Statement"].append(statement))


def without_task_retry(definition: dict[str, Any]) -> None:
    del definition["States"]["payment"]["Retry"]


def share_with(type_: str, suffix: str, other: str, path: tuple[str, ...]
               ) -> Callable[[Recording], Recording]:
    """Give `suffix` the identity `other` has (the value at `path`)."""
    def apply(rec: Recording) -> Recording:
        value: Any = rec.get(type_, other).props
        for key in path:
            value = value[key]

        def edit(props: Props) -> None:
            target = props
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = value
        return rec.mutate(rec.get(type_, suffix).urn, edit)
    return apply


def remove(type_: str, suffix: str) -> Callable[[Recording], Recording]:
    return lambda rec: rec.without(rec.get(type_, suffix).urn)


def output(name: str, value: Any) -> Callable[[Recording], Recording]:
    def apply(rec: Recording) -> Recording:
        return rec.mutate(rec.get(rules.STACK, "").urn, set_(**{name: value}))
    return apply


def add(resource_type: str, name: str, props: Props) -> Callable[[Recording], Recording]:
    def apply(rec: Recording) -> Recording:
        urn = f"urn:pulumi:{rec.stack}::switchyard::{resource_type}::{name}"
        return rec.add(rules.Resource(resource_type, name, urn, props))
    return apply


A, G = "dev-aws", "dev-gcp"
Q, T, ESM = rules.SQS_QUEUE, rules.EVENT_TARGET, rules.EVENT_SOURCE_MAPPING
RP, SUB, FN = "aws:iam/rolePolicy:RolePolicy", rules.PUBSUB_SUBSCRIPTION, rules.FUNCTION_V2
ROLE = rules.ROLE
PIAM = rules.PROJECT_IAM[0]
AGENT = "serviceAccount:service-123456789@gcp-sa-pubsub.iam.gserviceaccount.com"
#: A gen2 function's cloudfunctions.net URL: never reachable by internal callers.
CF_URL = "https://us-central1-switchyard-dev.cloudfunctions.net/switchyard-dev-gcp-orders"
CF_SAGA_URL = ("https://us-central1-switchyard-dev.cloudfunctions.net/"
               "switchyard-dev-gcp-saga-order")
RUN_APP = re.compile(r"https://[a-z0-9-]+\.a\.run\.app")
ORDERS_SA = "serviceAccount:switchyard-dev-gcp-orders@switchyard-dev.iam.gserviceaccount.com"

MUTATIONS = [
    # --- AWS ---------------------------------------------------------------------------
    Mutation("aws-queue-without-redrive", A, change(Q, "orders-queue", drop("redrivePolicy")),
             "async-edge-dlq-and-retry", ("switchyard-dev-aws-orders-queue", "no redrivePolicy")),
    Mutation("aws-redrive-without-max-receive", A,
             change(Q, "orders-queue", edit_json("redrivePolicy",
                                                 lambda d: d.pop("maxReceiveCount"))),
             "async-edge-dlq-and-retry", ("orders-queue", "maxReceiveCount")),
    Mutation("aws-target-without-dlq", A, change(T, "orders-target", drop("deadLetterConfig")),
             "async-edge-dlq-and-retry", ("switchyard-dev-aws-orders-target", "deadLetterConfig")),
    Mutation("aws-schedule-without-dlq", A,
             change(rules.SCHEDULE, "sources-inventory-audit",
                    lambda props: props["target"].pop("deadLetterConfig")),
             "async-edge-dlq-and-retry", ("sources-inventory-audit", "deadLetterConfig")),
    Mutation("aws-schedule-without-retry", A,
             change(rules.SCHEDULE, "sources-inventory-audit",
                    lambda props: props["target"].pop("retryPolicy")),
             "async-edge-dlq-and-retry", ("sources-inventory-audit", "retryPolicy")),
    Mutation("aws-every-bucket-object", A,
             change(RP, "file-processor-policy", add_statement(
                 {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::*"})),
             "no-iam-wildcards", ("file-processor-policy", "arn:aws:s3:::*")),
    Mutation("aws-target-without-retry", A, change(T, "inventory-target", drop("retryPolicy")),
             "async-edge-dlq-and-retry", ("inventory-target", "retryPolicy")),
    Mutation("aws-mapping-without-batch-failures", A,
             change(ESM, "orders-source", drop("functionResponseTypes")),
             "async-edge-dlq-and-retry", ("orders-source", "ReportBatchItemFailures")),
    Mutation("aws-task-without-retry", A,
             change(rules.STATE_MACHINE, "saga-state-machine",
                    edit_json("definition", without_task_retry)),
             "async-edge-dlq-and-retry", ("saga-state-machine", "'payment' has no Retry")),
    Mutation("aws-action-star", A,
             change(RP, "orders-policy", add_statement(
                 {"Sid": "Oops", "Effect": "Allow", "Action": "*",
                  "Resource": "arn:aws:sqs:us-east-1:123456789012:x"})),
             "no-iam-wildcards", ("orders-policy", "Oops", "wildcard action '*'")),
    Mutation("aws-service-wildcard-action", A,
             change(RP, "inventory-policy", add_statement(
                 {"Sid": "AllDynamo", "Effect": "Allow", "Action": ["dynamodb:*"],
                  "Resource": "arn:aws:dynamodb:us-east-1:123456789012:table/t"})),
             "no-iam-wildcards", ("inventory-policy", "wildcard action 'dynamodb:*'")),
    Mutation("aws-resource-star", A,
             change(RP, "orders-policy", add_statement(
                 {"Sid": "AnyQueue", "Effect": "Allow", "Action": "sqs:SendMessage",
                  "Resource": "*"})),
             "no-iam-wildcards", ("orders-policy", "AnyQueue", "Resource '*'")),
    Mutation("aws-resource-arn-wildcard", A,
             change(RP, "orders-policy", add_statement(
                 {"Sid": "AllTables", "Effect": "Allow", "Action": "dynamodb:GetItem",
                  "Resource": "arn:aws:dynamodb:us-east-1:123456789012:table/*"})),
             "no-iam-wildcards", ("orders-policy", "wildcard resource")),
    Mutation("aws-queue-policy-public", A,
             change("aws:sqs/queuePolicy:QueuePolicy", "orders-queue-policy",
                    edit_json("policy", lambda d: [s.update(Principal="*") or s.pop("Condition")
                                                   for s in d["Statement"]])),
             "no-iam-wildcards", ("orders-queue-policy", "Principal '*'")),
    Mutation("aws-log-writes-on-the-bare-log-group", A,
             change(RP, "orders-policy", edit_json("policy", lambda doc: [
                 st.update(Resource=st["Resource"].removesuffix(":log-stream:*"))
                 for st in doc["Statement"] if st.get("Sid") == "OwnLogStreams"])),
             "aws-log-writes-on-streams",
             ("orders-policy", "OwnLogStreams", "logs:PutLogEvents",
              "log-group:/aws/lambda/switchyard-dev-aws-orders'", "log-stream:*")),
    Mutation("aws-trust-without-source-account", A,
             change(ROLE, "saga-role", edit_json("assumeRolePolicy", lambda doc: [
                 st.pop("Condition") for st in doc["Statement"]])),
             "aws-confused-deputy",
             ("saga-role", "trust policy", "states.amazonaws.com", "aws:SourceAccount")),
    Mutation("aws-scheduler-trust-pins-the-wrong-key", A,
             change(ROLE, "sources-schedules-role", edit_json("assumeRolePolicy", lambda doc: [
                 st.update(Condition={"ArnEquals": st["Condition"]["ArnEquals"]})
                 for st in doc["Statement"]])),
             "aws-confused-deputy",
             ("sources-schedules-role", "scheduler.amazonaws.com", "aws:SourceAccount")),
    Mutation("aws-queue-policy-without-source", A,
             change("aws:sqs/queuePolicy:QueuePolicy", "orders-queue-policy",
                    edit_json("policy", lambda doc: [st.pop("Condition")
                                                     for st in doc["Statement"]])),
             "aws-confused-deputy",
             ("orders-queue-policy", "events.amazonaws.com", "aws:SourceArn")),
    Mutation("aws-lambda-permission-without-source", A,
             add(rules.LAMBDA_PERMISSION, "s3-invoke", {
                 "function": "f", "action": "lambda:InvokeFunction",
                 "principal": "s3.amazonaws.com"}),
             "aws-confused-deputy", ("s3-invoke", "s3.amazonaws.com", "sourceArn")),
    Mutation("aws-put-events-unscoped", A,
             change(RP, "file-processor-policy", edit_json("policy", lambda doc: [
                 st.pop("Condition") for st in doc["Statement"]
                 if st.get("Sid") == "PublishToBus"])),
             "aws-put-events-scoped",
             ("file-processor-policy", "PublishToBus", "events:source")),
    Mutation("aws-put-events-scoped-by-detail-type-only", A,
             change(RP, "sources-schedules-policy", edit_json("policy", lambda doc: [
                 st["Condition"].pop("ForAllValues:StringEquals")
                 for st in doc["Statement"] if st.get("Sid") == "PutEventsOnAppBus"])),
             "aws-put-events-scoped",
             ("sources-schedules-policy", "PutEventsOnAppBus", "events:source")),
    Mutation("aws-shared-role", A,
             share_with(rules.LAMBDA, "inventory", "orders", ("role",)),
             "one-identity-per-function",
             ("switchyard-dev-aws-inventory", "switchyard-dev-aws-orders", "shares its role")),
    Mutation("aws-dynamodb-sse-off", A,
             change(rules.DYNAMODB_TABLE, "tables-orders",
                    set_(serverSideEncryption={"enabled": False})),
             "encryption-at-rest", ("tables-orders", "serverSideEncryption")),
    Mutation("aws-sqs-sse-off", A,
             change(Q, "orders-dlq", set_(sqsManagedSseEnabled=False)),
             "encryption-at-rest", ("orders-dlq", "sqsManagedSseEnabled")),
    Mutation("aws-sns-unencrypted", A,
             change(rules.SNS_TOPIC, "topics-notifications", drop("kmsMasterKeyId")),
             "encryption-at-rest", ("topics-notifications", "kmsMasterKeyId")),
    Mutation("aws-key-without-rotation", A,
             change(rules.KMS_KEY, "topics-alarms-key", set_(enableKeyRotation=False)),
             "encryption-at-rest", ("topics-alarms-key", "enableKeyRotation")),
    Mutation("aws-dlq-retention-short", A,
             change(Q, "orders-dlq", set_(messageRetentionSeconds=60)),
             "dead-letters-retained-and-granted", ("orders-dlq", "orders-queue", "60 s")),
    Mutation("aws-async-invoke-without-destination", A,
             add(rules.EVENT_INVOKE_CONFIG, "orders-async", {"functionName": "f",
                                                             "maximumRetryAttempts": 2}),
             "async-edge-dlq-and-retry", ("orders-async", "onFailure")),
    Mutation("aws-sns-queue-subscription-without-dlq", A,
             add(rules.SNS_SUBSCRIPTION, "fanout", {"protocol": "sqs", "topic": "t",
                                                    "endpoint": "arn:aws:sqs:r:1:q"}),
             "async-edge-dlq-and-retry", ("fanout", "redrivePolicy")),
    Mutation("aws-stream-mapping-without-on-failure", A,
             add(ESM, "stream-source", {
                 "eventSourceArn": "arn:aws:kinesis:us-east-1:123456789012:stream/s",
                 "functionName": "f"}),
             "async-edge-dlq-and-retry", ("stream-source", "destinationConfig.onFailure")),
    Mutation("aws-not-action", A,
             change(RP, "orders-policy", add_statement(
                 {"Sid": "AllBut", "Effect": "Allow", "NotAction": "iam:*",
                  "Resource": "arn:aws:sqs:us-east-1:123456789012:x"})),
             "no-iam-wildcards", ("orders-policy", "NotAction")),
    Mutation("aws-admin-managed-policy", A,
             add(rules.ROLE_POLICY_ATTACHMENT, "orders-admin", {
                 "role": "r", "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"}),
             "no-iam-wildcards", ("orders-admin", "AdministratorAccess")),
    Mutation("aws-plaintext-secret-output", A, output("dbPassword", "hunter2"),
             "no-plaintext-secret-outputs", ("switchyard-dev-aws", "'dbPassword'", "plaintext")),
    # --- GCP ---------------------------------------------------------------------------
    Mutation("gcp-subscription-without-dlq", G, change(SUB, "orders", drop("deadLetterPolicy")),
             "async-edge-dlq-and-retry", ("switchyard-dev-gcp-orders", "no deadLetterPolicy")),
    Mutation("gcp-subscription-without-retry", G, change(SUB, "inventory", drop("retryPolicy")),
             "async-edge-dlq-and-retry", ("switchyard-dev-gcp-inventory", "no retryPolicy")),
    Mutation("gcp-max-deliveries-out-of-range", G,
             change(SUB, "orders", lambda p: p["deadLetterPolicy"].update(
                 maxDeliveryAttempts=3)),
             "async-edge-dlq-and-retry", ("switchyard-dev-gcp-orders", "5-100", "3")),
    Mutation("gcp-eventarc-trigger", G,
             add("gcp:eventarc/trigger:Trigger", "orders-trigger", {"location": "us-central1"}),
             "async-edge-dlq-and-retry", ("orders-trigger", "Eventarc")),
    Mutation("gcp-event-triggered-function", G,
             add(rules.FUNCTION_V1, "legacy", {"eventTrigger": {"eventType": "e"},
                                               "ingressSettings": "ALLOW_INTERNAL_ONLY",
                                               "serviceAccountEmail": "legacy@p.iam"}),
             "async-edge-dlq-and-retry", ("legacy", "event-triggered")),
    Mutation("gcp-ingress-allow-all", G,
             change(FN, "orders", lambda p: p["serviceConfig"].update(
                 ingressSettings="ALLOW_ALL")),
             "gcp-internal-ingress", ("switchyard-dev-gcp-orders", "ALLOW_ALL")),
    Mutation("gcp-primitive-role", G,
             change(PIAM, "orders-datastore-orders", set_(role="roles/editor")),
             "no-iam-wildcards", ("orders-datastore", "primitive role roles/editor")),
    Mutation("gcp-all-users-invoker", G,
             change("gcp:cloudrunv2/serviceIamMember:ServiceIamMember", "orders-push-invoker",
                    set_(member="allUsers")),
             "no-iam-wildcards", ("orders-push-invoker", "allUsers")),
    Mutation("gcp-project-wide-grant", G,
             change(PIAM, "orders-datastore-orders", drop("condition")),
             "no-iam-wildcards", ("orders-datastore", "whole project")),
    Mutation("gcp-shared-service-account", G,
             share_with(FN, "inventory", "orders", ("serviceConfig", "serviceAccountEmail")),
             "one-identity-per-function",
             ("switchyard-dev-gcp-inventory", "switchyard-dev-gcp-orders",
              "shares its service account")),
    Mutation("gcp-default-compute-identity", G,
             change(FN, "notifications",
                    lambda p: p["serviceConfig"].pop("serviceAccountEmail")),
             "one-identity-per-function", ("switchyard-dev-gcp-notifications", "default compute")),
    Mutation("gcp-dead-letter-topic-not-retained", G,
             change(rules.PUBSUB_TOPIC, "orders-dlq", drop("messageRetentionDuration")),
             "dead-letters-retained-and-granted",
             ("switchyard-dev-gcp-orders-dlq", "messageRetentionDuration")),
    Mutation("gcp-dead-letter-topic-unsubscribed", G,
             remove(SUB, "orders-dlq-pull"),
             "dead-letters-retained-and-granted", ("orders-dlq", "no subscription")),
    Mutation("gcp-agent-cannot-publish-dead-letters", G,
             remove(rules.TOPIC_IAM[0], "orders-agent-dlq-publisher"),
             "dead-letters-retained-and-granted",
             ("switchyard-dev-gcp-orders", "roles/pubsub.publisher", "orders-dlq")),
    Mutation("gcp-agent-cannot-ack-source", G,
             remove(rules.SUBSCRIPTION_IAM[0], "inventory-agent-subscriber"),
             "dead-letters-retained-and-granted",
             ("switchyard-dev-gcp-inventory", "roles/pubsub.subscriber")),
    Mutation("gcp-agent-grant-to-someone-else", G,
             change(rules.TOPIC_IAM[0], "orders-agent-dlq-publisher",
                    set_(member="serviceAccount:x@switchyard-dev.iam.gserviceaccount.com")),
             "dead-letters-retained-and-granted", ("orders", "roles/pubsub.publisher")),
    Mutation("gcp-bogus-cmek", G,
             change(rules.PUBSUB_TOPIC, "events", set_(kmsKeyName="projects/p/keyRings/r")),
             "encryption-at-rest", ("switchyard-dev-gcp-events", "kmsKeyName", "not a key")),
    Mutation("gcp-plaintext-secret-output", G, output("apiToken", "abc"),
             "no-plaintext-secret-outputs", ("switchyard-dev-gcp", "'apiToken'", "plaintext")),
    Mutation("gcp-nested-secret-output", G,
             output("functionSettings", {"orders": {"clientSecret": "s3cr3t"}}),
             "no-plaintext-secret-outputs", ("functionSettings.orders.clientSecret",)),
    Mutation("gcp-push-to-cloudfunctions-net", G,
             change(SUB, "orders", lambda p: p["pushConfig"].update(
                 pushEndpoint=CF_URL, oidcToken={**p["pushConfig"]["oidcToken"],
                                                 "audience": CF_URL})),
             "gcp-internal-callers-use-run-app-urls",
             ("switchyard-dev-gcp-orders", CF_URL, "run.app")),
    Mutation("gcp-push-audience-is-not-the-endpoint", G,
             change(SUB, "inventory", lambda p: p["pushConfig"]["oidcToken"].update(
                 audience=CF_URL)),
             "gcp-internal-callers-use-run-app-urls",
             ("switchyard-dev-gcp-inventory", "audience", CF_URL, "not the push endpoint")),
    Mutation("gcp-push-without-oidc", G,
             change(SUB, "notifications", lambda p: p["pushConfig"].pop("oidcToken")),
             "gcp-internal-callers-use-run-app-urls",
             ("switchyard-dev-gcp-notifications", "without an OIDC token")),
    Mutation("gcp-workflow-calls-cloudfunctions-net", G,
             change(rules.WORKFLOW, "saga-order", lambda p: p.update(
                 sourceContents=RUN_APP.sub(CF_SAGA_URL, p["sourceContents"]))),
             "gcp-internal-callers-use-run-app-urls",
             ("switchyard-dev-gcp-saga-order", CF_SAGA_URL)),
    Mutation("gcp-function-project-role", G,
             add(PIAM, "orders-project-publisher", {
                 "project": "switchyard-dev", "role": "roles/pubsub.publisher",
                 "member": ORDERS_SA,
                 "condition": {"title": "t", "expression":
                               'resource.name == "projects/switchyard-dev/topics/x"'}}),
             "gcp-no-project-roles-for-functions",
             ("orders-project-publisher", "function 'switchyard-dev-gcp-orders'",
              "roles/pubsub.publisher", "resource-level IAM")),
    Mutation("gcp-function-workflow-invoker-on-all-workflows", G,
             change(PIAM, "orders-workflow-invoker", lambda p: p["condition"].update(
                 expression='resource.name.startsWith("projects/switchyard-dev/")')),
             "gcp-no-project-roles-for-functions",
             ("orders-workflow-invoker", "roles/workflows.invoker", "naming exact resources")),
    Mutation("gcp-datastore-on-every-database", G,
             change(PIAM, "notifications-datastore-notifications-records", drop("condition")),
             "gcp-function-data-access",
             ("notifications-datastore-notifications-records", "roles/datastore.user",
              "every Firestore database")),
    Mutation("gcp-datastore-condition-names-no-database", G,
             change(PIAM, "inventory-datastore-inventory", lambda p: p["condition"].update(
                 expression='resource.name == "projects/switchyard-dev"')),
             "gcp-function-data-access",
             ("inventory-datastore-inventory", "does not name a database")),
]


def _new(rec: Recording, mutated: Recording) -> list[rules.Violation]:
    before = {(v.policy, v.urn, v.message) for v in rec.violations()}
    return [v for v in mutated.violations() if (v.policy, v.urn, v.message) not in before]


@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m.id for m in MUTATIONS])
def test_the_policy_catches_the_mutation(mutation: Mutation) -> None:
    rec = record(mutation.stack)
    new = _new(rec, mutation.apply(rec))
    assert new, f"{mutation.id}: no policy noticed"
    caught = [v for v in new if v.policy == mutation.policy
              and all(word in v.message for word in mutation.words)]
    assert caught, (f"{mutation.id}: expected a {mutation.policy} violation mentioning "
                    f"{mutation.words}, got {[(v.policy, v.message) for v in new]}")
    assert all(v.urn for v in caught), "a violation must point at a resource"


def test_every_policy_has_a_mutation_on_each_cloud_it_covers() -> None:
    covered = {(m.policy, m.stack) for m in MUTATIONS}
    for rule in rules.RULES:
        clouds = {G} if rule.name.startswith("gcp-") else \
            {A} if rule.name.startswith("aws-") else {A, G}
        for stack in clouds:
            assert (rule.name, stack) in covered, (rule.name, stack)


def test_a_secret_output_passes_when_it_is_a_pulumi_secret() -> None:
    rec = record(G)
    mutated = output("apiToken", "abc")(rec).with_secret_outputs(frozenset({"apiToken"}))
    assert not [v for v in _new(rec, mutated) if v.policy == "no-plaintext-secret-outputs"]
    # ... but the pack, blind to secretness, still refuses to export it.
    strict = [v for v in mutated.violations(strict_secrets=True)
              if v.policy == "no-plaintext-secret-outputs"]
    assert [("apiToken" in v.message, "do not export" in v.message) for v in strict] == [
        (True, True)]


@pytest.mark.parametrize(("actions", "allowed"), [
    (["xray:PutTraceSegments", "xray:PutTelemetryRecords"], True),
    (["xray:Put*"], True),
    (["xray:GetSamplingRules", "xray:GetSamplingTargets"], True),
    (["logs:CreateLogDelivery", "logs:GetLogDelivery"], True),
    (["xray:*"], False),
    (["xray:PutTraceSegments", "sqs:SendMessage"], False),
    (["logs:PutLogEvents"], False),
])
def test_only_actions_without_resource_level_permissions_may_use_resource_star(
        actions: list[str], allowed: bool) -> None:
    document = json.dumps({"Statement": [{"Sid": "S", "Effect": "Allow", "Action": actions,
                                          "Resource": "*"}]})
    problems = rules.check_resource(rules.rule("no-iam-wildcards"), RP, "p",
                                    {"policy": document})
    assert (problems == []) is allowed, problems


def test_the_actions_the_stack_grants_on_resource_star_are_the_ones_the_pack_allows() -> None:
    """adapters/aws/topology.STAR_RESOURCE_ACTIONS is the stack's one list; the pack (which
    imports nothing from the app) must allow each of them, alone, on "*"."""
    from adapters.aws.topology import STAR_RESOURCE_ACTIONS

    for action in STAR_RESOURCE_ACTIONS:
        document = json.dumps({"Statement": [{"Effect": "Allow", "Action": action,
                                              "Resource": "*"}]})
        assert rules.check_resource(rules.rule("no-iam-wildcards"), RP, "p",
                                    {"policy": document}) == [], action


def test_the_public_ingress_entry_point_is_configurable() -> None:
    props = {"buildConfig": {"entryPoint": "ingest"},
             "serviceConfig": {"ingressSettings": "ALLOW_ALL"}}
    ingress = rules.rule("gcp-internal-ingress")
    assert rules.check_resource(ingress, FN, "api", props) == []
    assert rules.check_resource(ingress, FN, "api", props, {"publicEntryPoints": []}) == [
        f"{FN} 'api': ingress is ALLOW_ALL, must be ALLOW_INTERNAL_ONLY (only entry points "
        "[] may be public)"]


@pytest.mark.parametrize(("type_", "props"), [
    (rules.SNS_SUBSCRIPTION, {"protocol": "email", "endpoint": "ops@example.com"}),
    (rules.SNS_SUBSCRIPTION, {"protocol": "sqs", "redrivePolicy": json.dumps(
        {"deadLetterTargetArn": "arn:aws:sqs:r:1:dlq"})}),
    (rules.EVENT_INVOKE_CONFIG, {"maximumRetryAttempts": 0,
                                 "destinationConfig": {"onFailure": {"destination": "arn"}}}),
    (rules.EVENT_SOURCE_MAPPING, {
        "eventSourceArn": "arn:aws:kinesis:us-east-1:123456789012:stream/s",
        "maximumRetryAttempts": 3,
        "destinationConfig": {"onFailure": {"destinationArn": "arn:aws:sqs:r:1:dlq"}}}),
    (RP, {"policy": json.dumps({"Statement": [{"Effect": "Deny", "Action": "*",
                                               "Resource": "*"}]})}),
    (rules.KMS_KEY, {"keySpec": "RSA_2048", "enableKeyRotation": False}),
    (rules.PUBSUB_TOPIC, {"kmsKeyName":
                          "projects/p/locations/l/keyRings/r/cryptoKeys/k"}),
    # Lambda's execution-role trust documents no source keys; log writes on the streams.
    (ROLE, {"assumeRolePolicy": json.dumps({"Statement": [{
        "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
        "Action": "sts:AssumeRole"}]})}),
    (RP, {"policy": json.dumps({"Statement": [{
        "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": "arn:aws:logs:us-east-1:123456789012:log-group:g:log-stream:*"}]})}),
    (rules.LAMBDA_PERMISSION, {"principal": "apigateway.amazonaws.com",
                               "sourceArn": "arn:aws:execute-api:us-east-1:1:a/*"}),
])
def test_what_the_rules_allow(type_: str, props: Props) -> None:
    """Controls: the valid forms next to the mutations above pass every resource rule."""
    assert [m for rule in rules.RULES
            for m in rules.check_resource(rule, type_, "ok", props)] == []


@pytest.mark.parametrize("push", [
    {"pushEndpoint": "https://fn-a1b2c3d4e5-uc.a.run.app",
     "oidcToken": {"serviceAccountEmail": "push@p.iam.gserviceaccount.com",
                   "audience": "https://fn-a1b2c3d4e5-uc.a.run.app"}},
    # Unset, Pub/Sub's audience is the endpoint itself.
    {"pushEndpoint": "https://fn-a1b2c3d4e5-uc.a.run.app",
     "oidcToken": {"serviceAccountEmail": "push@p.iam.gserviceaccount.com"}},
    # A push to something that is not a Cloud Run service is not this rule's business.
    {"pushEndpoint": "https://hooks.example.com/in"},
])
def test_run_app_pushes_with_their_own_audience_pass(push: Props) -> None:
    rule = rules.rule("gcp-internal-callers-use-run-app-urls")
    assert rules.check_resource(rule, SUB, "ok", {"pushConfig": push}) == []
