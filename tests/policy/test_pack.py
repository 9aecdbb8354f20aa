"""The policy pack itself: well-formed, and served the way the Pulumi CLI runs it.

`build_policies()` is inspected in-process (PolicyPack's constructor would serve and
block). Then the pack runs as the CLI runs it (`python -m pulumi.policy <engine> .` in the
pack's folder, its own process), prints its port, and this test speaks the analyzer gRPC
protocol to it: the
policies it announces, and its verdicts on the recorded real stacks, must match the plain
functions'. No CLI is needed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

from tests.policy.stacks import POLICY_DIR, Recording, record, rules

pulumi_policy = pytest.importorskip("pulumi_policy", reason=(
    "pulumi-policy is not installed: `.venv/bin/pip install --no-deps -r policy/requirements.txt`"
    " (it pins protobuf 5; see README 'Policy pack')"))

import switchyard_pack as pack  # noqa: E402  (tests.policy.stacks puts policy/ on sys.path)

MANDATORY = analyzer_pb2.EnforcementLevel.Value("MANDATORY")
ADVISORY = analyzer_pb2.EnforcementLevel.Value("ADVISORY")


# --- the definitions ----------------------------------------------------------------------


def test_policy_names_are_unique_and_every_policy_blocks() -> None:
    policies = pack.build_policies()
    names = [p.name for p in policies]
    assert len(names) == len(set(names)), names
    assert all(p.enforcement_level is pulumi_policy.EnforcementLevel.MANDATORY
               for p in policies)
    assert all(p.description and p.remediation_steps for p in policies)


def test_every_rule_is_wired_to_a_policy_of_its_kind() -> None:
    by_name = {p.name: p for p in pack.build_policies()}
    wired = 0
    for rule in rules.RULES:
        assert rule.resource_check or rule.stack_check, rule.name
        if rule.resource_check:
            assert isinstance(by_name[rule.name], pulumi_policy.ResourceValidationPolicy)
            wired += 1
        if rule.stack_check:
            name = f"{rule.name}-stack" if rule.resource_check else rule.name
            assert isinstance(by_name[name], pulumi_policy.StackValidationPolicy)
            wired += 1
    assert wired == len(by_name), "a policy that no rule backs"


def test_the_pack_arguments_are_what_policy_pack_accepts() -> None:
    args = pack.pack_arguments()
    assert args["name"] == "switchyard-reliability"
    assert args["enforcement_level"] is pulumi_policy.EnforcementLevel.MANDATORY
    assert [p.name for p in args["policies"]] == [p.name for p in pack.build_policies()]


def test_the_pack_folder_is_complete() -> None:
    import yaml

    project = yaml.safe_load((POLICY_DIR / "PulumiPolicy.yaml").read_text())
    assert project["runtime"]["name"] == "python"
    assert "pulumi-policy" in (POLICY_DIR / "requirements.txt").read_text()
    main = (POLICY_DIR / "__main__.py").read_text()
    assert "serve()" in main


# --- the served pack ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def analyzer(tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
    log = tmp_path_factory.mktemp("pack") / "stderr.log"
    with log.open("w") as stderr:  # a file, not a pipe nobody drains
        # Exactly how the CLI's pulumi-analyzer-policy-python starts a pack: the SDK's
        # runner, given an engine address (unused by Python packs) and the pack folder.
        process = subprocess.Popen(
            [sys.executable, "-u", "-m", "pulumi.policy", "127.0.0.1:1", "."], cwd=POLICY_DIR,
            env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if not line.isdigit():
            process.kill()
            process.wait()
            raise AssertionError(f"the pack did not print its port: {line!r}\n"
                                 f"{log.read_text()}")
        with grpc.insecure_channel(f"127.0.0.1:{line}") as channel:
            yield analyzer_pb2_grpc.AnalyzerStub(channel)
    finally:
        process.kill()
        process.wait()


def _struct(props: Any) -> struct_pb2.Struct:
    from pulumi_policy.deserialize import serialize_properties

    struct = struct_pb2.Struct()
    struct.update(json.loads(json.dumps(serialize_properties(props), default=str)))
    return struct


def test_the_served_pack_announces_every_policy(
        analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty(), timeout=30)
    assert info.name == pack.PACK_NAME
    assert sorted((p.name, p.enforcementLevel) for p in info.policies) == sorted(
        (p.name, MANDATORY) for p in pack.build_policies())


def _verdict(diagnostic: analyzer_pb2.AnalyzeDiagnostic) -> tuple[str, str]:
    # The SDK prefixes each message with the policy's description and a newline.
    description, _, message = diagnostic.message.partition("\n")
    assert description == diagnostic.description, diagnostic.message
    assert diagnostic.enforcementLevel == MANDATORY, diagnostic
    return diagnostic.policyName.removesuffix("-stack"), message


def _served_verdicts(analyzer: analyzer_pb2_grpc.AnalyzerStub, rec: Recording
                     ) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for resource in rec.resources:
        if resource.urn not in rec.inputs:
            continue
        response = analyzer.Analyze(analyzer_pb2.AnalyzeRequest(
            type=resource.type, name=resource.name, urn=resource.urn,
            properties=_struct(rec.inputs[resource.urn])), timeout=30)
        found |= {_verdict(d) for d in response.diagnostics}
    response = analyzer.AnalyzeStack(analyzer_pb2.AnalyzeStackRequest(resources=[
        analyzer_pb2.AnalyzerResource(type=r.type, name=r.name, urn=r.urn,
                                      properties=_struct(r.props))
        for r in rec.resources]), timeout=60)
    found |= {_verdict(d) for d in response.diagnostics}
    return found


@pytest.mark.parametrize("stack", ["dev-aws", "dev-gcp"])
def test_the_served_pack_agrees_with_the_rules_on_the_real_stack(
        analyzer: analyzer_pb2_grpc.AnalyzerStub, stack: str) -> None:
    rec = record(stack)
    expected = {(v.policy, v.message) for v in rec.violations(strict_secrets=True)}
    assert _served_verdicts(analyzer, rec) == expected


def test_the_served_pack_blocks_a_mutated_stack(
        analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    rec = record("dev-gcp")
    sub = rec.get(rules.PUBSUB_SUBSCRIPTION, "orders")
    broken = rec.mutate(sub.urn, lambda p: p.pop("deadLetterPolicy"))
    broken = broken.mutate(rec.get(rules.FUNCTION_V2, "orders").urn,
                           lambda p: p["serviceConfig"].update(ingressSettings="ALLOW_ALL"))
    found = _served_verdicts(analyzer, broken)
    assert ("async-edge-dlq-and-retry",
            f"{rules.PUBSUB_SUBSCRIPTION} 'switchyard-dev-gcp-orders': no deadLetterPolicy: a "
            "poison message is redelivered until it expires") in found
    assert any(policy == "gcp-internal-ingress" and "ALLOW_ALL" in message
               for policy, message in found)


def test_a_value_unknown_in_preview_is_reported_not_guessed(
        analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    from pulumi_policy.proxy import UNKNOWN_STRING_VALUE

    response = analyzer.Analyze(analyzer_pb2.AnalyzeRequest(
        type=rules.SQS_QUEUE, name="q", urn="urn:pulumi:s::p::aws:sqs/queue:Queue::q",
        properties=_struct({"redrivePolicy": UNKNOWN_STRING_VALUE,
                            "sqsManagedSseEnabled": True})), timeout=30)
    assert [(d.policyName, d.enforcementLevel, "during preview" in d.message)
            for d in response.diagnostics] == [("async-edge-dlq-and-retry", ADVISORY, True)]


def test_a_secret_output_is_refused_even_when_wrapped(
        analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    secret = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270",
              "value": "hunter2"}
    response = analyzer.AnalyzeStack(analyzer_pb2.AnalyzeStackRequest(resources=[
        analyzer_pb2.AnalyzerResource(
            type=rules.STACK, name="s", urn="urn:pulumi:s::p::pulumi:pulumi:Stack::p-s",
            properties=_struct({"dbPassword": secret, "busName": "b"}))]), timeout=30)
    assert [(d.policyName, "'dbPassword'" in d.message) for d in response.diagnostics] == [
        ("no-plaintext-secret-outputs", True)]


@pytest.mark.parametrize(("role_urns", "shared"), [
    (("urn:pulumi:s::p::aws:iam/role:Role::a", "urn:pulumi:s::p::aws:iam/role:Role::a"), True),
    (("urn:pulumi:s::p::aws:iam/role:Role::a", "urn:pulumi:s::p::aws:iam/role:Role::b"), False),
])
def test_a_shared_role_is_caught_in_preview_before_its_arn_is_known(
        analyzer: analyzer_pb2_grpc.AnalyzerStub, role_urns: tuple[str, str],
        shared: bool) -> None:
    from pulumi_policy.proxy import UNKNOWN_STRING_VALUE

    functions = [analyzer_pb2.AnalyzerResource(
        type=rules.LAMBDA, name=name, urn=f"urn:pulumi:s::p::{rules.LAMBDA}::{name}",
        properties=_struct({"role": UNKNOWN_STRING_VALUE}),
        propertyDependencies={"role": analyzer_pb2.AnalyzerPropertyDependencies(urns=[urn])})
        for name, urn in zip(("f1", "f2"), role_urns, strict=True)]
    # The SDK resolves dependencies to resources of the request: the roles are in it.
    roles = [analyzer_pb2.AnalyzerResource(type=rules.ROLE, name=urn.rsplit("::", 1)[1],
                                           urn=urn, properties=_struct({}))
             for urn in sorted(set(role_urns))]
    response = analyzer.AnalyzeStack(
        analyzer_pb2.AnalyzeStackRequest(resources=[*roles, *functions]), timeout=30)
    verdicts = [_verdict(d) for d in response.diagnostics]
    if shared:
        assert [(p, "shares its role" in m) for p, m in verdicts] == [
            ("one-identity-per-function", True)] * 2
    else:
        assert verdicts == []
