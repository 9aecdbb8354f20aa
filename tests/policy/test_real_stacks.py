"""Every policy of the pack on the real dev-aws and dev-gcp stacks (recorded under mocks).

Both stacks must pass, except for findings listed in `KNOWN_FINDINGS` (reported, to be
fixed outside the pack); the list is exact, so a new violation and a fixed finding both
fail this test.
"""

from __future__ import annotations

import pytest

from tests.policy.stacks import record, rules

STACKS = ("dev-aws", "dev-gcp")

#: (policy, message) pairs the real stacks are known to violate today.
KNOWN_FINDINGS: dict[str, set[tuple[str, str]]] = {
    "dev-aws": set(),
    "dev-gcp": set(),
}

#: Resource types each recording must hold, so a pass is never a pass over nothing.
EXPECTED_TYPES = {
    "dev-aws": {rules.SQS_QUEUE, rules.EVENT_TARGET, rules.EVENT_SOURCE_MAPPING,
                rules.STATE_MACHINE, rules.LAMBDA, rules.DYNAMODB_TABLE, rules.SNS_TOPIC,
                rules.KMS_KEY, "aws:iam/rolePolicy:RolePolicy",
                "aws:sqs/queuePolicy:QueuePolicy", rules.STACK},
    "dev-gcp": {rules.PUBSUB_TOPIC, rules.PUBSUB_SUBSCRIPTION, rules.FUNCTION_V2,
                rules.WORKFLOW, *rules.TOPIC_IAM[:1], *rules.SUBSCRIPTION_IAM[:1],
                rules.PROJECT_IAM[0], rules.STACK},
}


@pytest.mark.parametrize("stack", STACKS)
def test_the_recording_holds_what_the_policies_check(stack: str) -> None:
    types = {r.type for r in record(stack).resources}
    assert EXPECTED_TYPES[stack] <= types, sorted(EXPECTED_TYPES[stack] - types)


@pytest.mark.parametrize("stack", STACKS)
def test_the_real_stack_passes_every_policy(stack: str) -> None:
    found = {(v.policy, v.message) for v in record(stack).violations()}
    assert found == KNOWN_FINDINGS[stack]


@pytest.mark.parametrize("stack", STACKS)
def test_the_real_stack_passes_the_secret_rule_as_the_pack_runs_it(stack: str) -> None:
    # The pack cannot see secretness, so it refuses every secret-looking output name.
    found = [v for v in record(stack).violations(strict_secrets=True)
             if v.policy == "no-plaintext-secret-outputs"]
    assert found == []


def test_every_rule_is_exercised_on_some_real_resource() -> None:
    """Each resource rule has at least one real resource of a type it inspects: a rule
    whose types were misspelt would pass every stack without looking at anything."""
    inspected = {
        "async-edge-dlq-and-retry": {rules.EVENT_TARGET, rules.EVENT_SOURCE_MAPPING},
        "no-iam-wildcards": {"aws:iam/rolePolicy:RolePolicy", rules.PROJECT_IAM[0]},
        "encryption-at-rest": {rules.DYNAMODB_TABLE, rules.SQS_QUEUE, rules.SNS_TOPIC},
        "gcp-internal-ingress": {rules.FUNCTION_V2},
        "aws-log-writes-on-streams": {"aws:iam/rolePolicy:RolePolicy"},
        "aws-confused-deputy": {rules.ROLE, "aws:sqs/queuePolicy:QueuePolicy", rules.KMS_KEY},
        "aws-put-events-scoped": {"aws:iam/rolePolicy:RolePolicy"},
    }
    types = {r.type for s in STACKS for r in record(s).resources}
    for name, wanted in inspected.items():
        assert wanted <= types, (name, sorted(wanted - types))


@pytest.mark.parametrize("stack", STACKS)
def test_every_grant_type_in_the_stack_is_one_the_iam_rule_reads(stack: str) -> None:
    grants = {r.type for r in record(stack).resources
              if r.type.startswith("gcp:") and "iam" in r.type.lower()}
    assert all(rules._GCP_IAM.match(t) for t in grants), sorted(grants)


@pytest.mark.parametrize(("name", "secret"), [
    ("dbPassword", True), ("api_key", True), ("ClientSecret", True), ("apiToken", True),
    ("githubCredentials", True), ("connectionString", True),
    ("alarmTopicArn", False), ("deadLetterTopics", False), ("functionUrls", False),
    ("tokenizerUrl", False), ("busName", False),
])
def test_which_output_names_look_secret(name: str, secret: bool) -> None:
    assert rules.looks_secret(name) is secret
