"""One Lambda function with its own identity: role, inline policy, log group, tracing.

Every function in the stack goes through this component, so "one role per function,
exact ARNs only, its own log group with retention, X-Ray active" holds by construction.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from adapters.aws import topology
from adapters.aws.topology import Grants, Names
from handlers.core.app import App
from infra.config import StackConfig


@dataclass(frozen=True)
class StackContext:
    """What every function-bearing component of the stack is built against."""

    app: App
    config: StackConfig
    names: Names
    bus_name: pulumi.Input[str]
    bus_arn: pulumi.Input[str]
    table_names: Mapping[str, pulumi.Input[str]]
    table_arns: Mapping[str, pulumi.Input[str]]
    code: pulumi.Archive
    code_sha256: str
    alarm_topic_arn: pulumi.Input[str]
    #: The app's buckets (logical name -> S3 name / ARN); see infra/aws/sources.py.
    bucket_names: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    bucket_arns: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)

    @property
    def claims_bucket(self) -> str | None:
        claims = self.app.claim_check_bucket()
        return claims.name if claims else None


@dataclass(frozen=True)
class FunctionArgs:
    name: str  # physical function name (also names the role and the log group)
    handler: str
    description: str
    code: pulumi.Archive
    code_sha256: str
    memory_mb: int
    timeout_s: int
    log_retention_days: int
    environment: pulumi.Input[Mapping[str, str]]
    #: The values `grants` needs (besides `log_group_arn`: this component owns the group).
    grant_inputs: Mapping[str, Any]
    #: Resolved `grant_inputs` + `log_group_arn` -> the role's grants (a `topology` rule).
    grants: Callable[..., Grants]
    #: OTEL_* variables added to `environment`, and the layers that bring OpenTelemetry
    #: (both empty while tracing is off: README "Tracing").
    tracing: Mapping[str, str] = field(default_factory=dict)
    layers: Sequence[str] = ()


def _with(environment: pulumi.Input[Mapping[str, str]], extra: Mapping[str, str]
          ) -> pulumi.Input[Mapping[str, str]]:
    if not extra:
        return environment
    return pulumi.Output.from_input(environment).apply(lambda found: {**found, **extra})


class LambdaFunction(pulumi.ComponentResource):
    function: aws.lambda_.Function
    role: aws.iam.Role
    log_group: aws.cloudwatch.LogGroup

    def __init__(self, name: str, args: FunctionArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("switchyard:aws:Function", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs", name=Names.function_log_group(args.name),
            retention_in_days=args.log_retention_days, opts=child)
        self.role = aws.iam.Role(
            f"{name}-role", name=Names.role(args.name),
            description=f"Identity of the {args.name} function only",
            assume_role_policy=json.dumps(topology.assume_role_policy("lambda.amazonaws.com")),
            opts=child)
        self.policy_document = pulumi.Output.all(
            log_group_arn=self.log_group.arn, **args.grant_inputs
        ).apply(lambda values: json.dumps(topology.function_policy(args.grants(**values))))
        policy = aws.iam.RolePolicy(f"{name}-policy", role=self.role.id,
                                    name="least-privilege", policy=self.policy_document,
                                    opts=child)
        self.function = aws.lambda_.Function(
            name, name=args.name, description=args.description,
            runtime=topology.LAMBDA_RUNTIME, architectures=[topology.LAMBDA_ARCHITECTURE],
            handler=args.handler, code=args.code, source_code_hash=args.code_sha256,
            memory_size=args.memory_mb, timeout=args.timeout_s, role=self.role.arn,
            environment=aws.lambda_.FunctionEnvironmentArgs(variables=_with(args.environment,
                                                                            args.tracing)),
            layers=list(args.layers) or None,
            tracing_config=aws.lambda_.FunctionTracingConfigArgs(mode="Active"),
            logging_config=aws.lambda_.FunctionLoggingConfigArgs(
                log_format="JSON", log_group=self.log_group.name),
            # The role's policy must exist before the function first runs.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[policy, self.log_group]))
        self.register_outputs({"functionArn": self.function.arn, "roleArn": self.role.arn,
                               "logGroup": self.log_group.name})
