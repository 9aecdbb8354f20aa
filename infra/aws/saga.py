"""The saga: the steps' function and a STANDARD state machine compiled from the saga.

The definition is `adapters.aws.asl.compile_saga(app.saga, ...)`: the same saga the local
executor runs, with the same retries, compensations and terminal states. Its role may
invoke exactly the functions the definition names. A failed execution (a saga that needs
attention) raises an alarm.
"""

from __future__ import annotations

import functools
import json

import pulumi
import pulumi_aws as aws

from adapters.aws import asl, topology
from adapters.aws.topology import Names
from infra.aws.function import FunctionArgs, LambdaFunction, StackContext


class SagaStateMachine(pulumi.ComponentResource):
    def __init__(self, name: str, args: StackContext,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("switchyard:aws:Saga", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        app, config, names = args.app, args.config, args.names
        saga = app.saga
        function_name = names.saga_function(saga.name)
        environment = pulumi.Output.all(table_names=args.table_names,
                                        bus_name=args.bus_name,
                                        bucket_names=dict(args.bucket_names)).apply(
            lambda v: topology.saga_settings(app, topology.Wiring(
                table_names=v["table_names"], bus_name=v["bus_name"],
                notification_topic_arn="", state_machine_arn="",
                decline_above_cents=int(config.payment_decline_above * 100),
                bucket_names=v["bucket_names"] or {},
                claims_bucket=args.claims_bucket)).environment())
        self.steps = LambdaFunction(function_name, FunctionArgs(
            name=function_name, handler=topology.STEP_HANDLER,
            description=f"Steps and compensations of the '{saga.name}' saga",
            code=args.code, code_sha256=args.code_sha256, memory_mb=config.memory_mb,
            timeout_s=config.timeout_s, log_retention_days=config.log_retention_days,
            tracing=config.tracing_environment(), layers=config.tracing_layers(),
            environment=environment,
            grant_inputs={"table_arns": args.table_arns, "bus_arn": args.bus_arn,
                          "bucket_arns": dict(args.bucket_arns)},
            grants=functools.partial(topology.saga_grants, app,
                                     claims_bucket=args.claims_bucket)), opts=child)

        machine_name = names.state_machine(saga.name)
        self.log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs", name=Names.state_machine_log_group(machine_name),
            retention_in_days=config.log_retention_days, opts=child)
        invoke = pulumi.InvokeOutputOptions(parent=self)
        account = aws.get_caller_identity_output(opts=invoke).account_id
        # Only Step Functions, for this state machine of this account, may assume the role
        # (its ARN is built from the name: the machine itself needs the role first).
        trust = pulumi.Output.all(aws.get_partition_output(opts=invoke).partition,
                                  aws.get_region_output(opts=invoke).region, account).apply(
            lambda v: json.dumps(topology.assume_role_policy(
                "states.amazonaws.com", v[2],
                topology.state_machine_arn(v[0], v[1], v[2], machine_name))))
        self.role = aws.iam.Role(
            f"{name}-role", name=Names.role(machine_name),
            description=f"Identity of the {machine_name} state machine only",
            assume_role_policy=trust, opts=child)
        self.definition = self.steps.function.arn.apply(
            lambda arn: json.dumps(asl.compile_saga(saga, arn), indent=1))
        self.policy_document = self.definition.apply(
            lambda d: json.dumps(topology.state_machine_policy(
                sorted(asl.task_functions(json.loads(d))))))
        policy = aws.iam.RolePolicy(f"{name}-policy", role=self.role.id,
                                    name="least-privilege", policy=self.policy_document,
                                    opts=child)
        self.state_machine = aws.sfn.StateMachine(
            f"{name}-state-machine", name=machine_name, type="STANDARD",
            role_arn=self.role.arn, definition=self.definition,
            logging_configuration=aws.sfn.StateMachineLoggingConfigurationArgs(
                level=topology.STATE_MACHINE_LOG_LEVEL,
                include_execution_data=topology.STATE_MACHINE_LOG_EXECUTION_DATA,
                # Step Functions wants the log group ARN with its ":*" suffix.
                log_destination=self.log_group.arn.apply(lambda a: f"{a}:*")),
            tracing_configuration=aws.sfn.StateMachineTracingConfigurationArgs(enabled=True),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[policy]))
        self.alarm = aws.cloudwatch.MetricAlarm(
            f"{name}-failed-alarm", name=f"{machine_name}-needs-attention",
            alarm_description="A saga ended in NeedsAttention (a compensation or the final "
                              "step kept failing): inspect the execution, fix, and redrive.",
            namespace="AWS/States", metric_name="ExecutionsFailed",
            dimensions={"StateMachineArn": self.state_machine.arn}, statistic="Sum",
            period=60, evaluation_periods=1, threshold=0,
            comparison_operator="GreaterThanThreshold", treat_missing_data="notBreaching",
            alarm_actions=[args.alarm_topic_arn], opts=child)
        self.register_outputs({"stateMachineArn": self.state_machine.arn,
                               "functionArn": self.steps.function.arn})
