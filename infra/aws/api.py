"""Optional HTTP ingress: API Gateway HTTP API `POST /events` -> ingest function -> bus.

IAM-authorised: callers sign their requests (SigV4) with a principal allowed
`execute-api:Invoke` on the route; nothing is open to the internet by default.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from adapters.aws import topology
from adapters.aws.settings import Settings
from adapters.aws.topology import Names
from handlers.core.app import Catalog
from infra.aws.function import FunctionArgs, LambdaFunction
from infra.config import StackConfig

ROUTE_KEY = "POST /events"


@dataclass(frozen=True)
class IngestArgs:
    config: StackConfig
    names: Names
    bus_name: pulumi.Input[str]
    bus_arn: pulumi.Input[str]
    code: pulumi.Archive
    code_sha256: str
    #: What the ingress may put on the bus: the catalog's (Source, DetailType) pairs.
    catalog: Catalog


class IngestApi(pulumi.ComponentResource):
    def __init__(self, name: str, args: IngestArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("switchyard:aws:IngestApi", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        config, names = args.config, args.names
        function_name = names.ingest_function()
        self.ingest = LambdaFunction(function_name, FunctionArgs(
            name=function_name, handler=topology.API_HANDLER,
            description="POST /events -> PutEvents (202 once the bus accepted them)",
            code=args.code, code_sha256=args.code_sha256, memory_mb=config.memory_mb,
            timeout_s=config.timeout_s, log_retention_days=config.log_retention_days,
            tracing=config.tracing_environment(), layers=config.tracing_layers(),
            environment=pulumi.Output.from_input(args.bus_name).apply(
                lambda bus: Settings(bus_name=bus).environment()),
            grant_inputs={"bus_arn": args.bus_arn},
            grants=functools.partial(topology.ingest_grants, args.catalog)), opts=child)
        self.api = aws.apigatewayv2.Api(f"{name}-api", name=names.api(), protocol_type="HTTP",
                                        description="Event ingress", opts=child)
        integration = aws.apigatewayv2.Integration(
            f"{name}-integration", api_id=self.api.id, integration_type="AWS_PROXY",
            integration_uri=self.ingest.function.invoke_arn, payload_format_version="2.0",
            opts=child)
        aws.apigatewayv2.Route(
            f"{name}-route", api_id=self.api.id, route_key=ROUTE_KEY,
            authorization_type="AWS_IAM",
            target=integration.id.apply(lambda i: f"integrations/{i}"), opts=child)
        self.stage = aws.apigatewayv2.Stage(f"{name}-stage", api_id=self.api.id,
                                            name="$default", auto_deploy=True, opts=child)
        invoke = pulumi.InvokeOutputOptions(parent=self)
        region = aws.get_region_output(opts=invoke).region
        account = aws.get_caller_identity_output(opts=invoke).account_id
        partition = aws.get_partition_output(opts=invoke).partition
        # Built from the API id (always known) rather than read from `execution_arn` /
        # `api_endpoint`, in the documented formats of both.
        aws.lambda_.Permission(
            f"{name}-invoke", function=self.ingest.function.name, action="lambda:InvokeFunction",
            principal="apigateway.amazonaws.com",
            # Exactly this API, stage and route (the confused-deputy guard for a service
            # principal: the execute-api ARN names this account and this API).
            source_arn=pulumi.Output.format(
                "arn:{0}:execute-api:{1}:{2}:{3}/$default/POST/events", partition, region,
                account, self.api.id),
            opts=child)
        self.url = pulumi.Output.format("https://{0}.execute-api.{1}.amazonaws.com/events",
                                        self.api.id, region)
        self.register_outputs({"apiUrl": self.url})
