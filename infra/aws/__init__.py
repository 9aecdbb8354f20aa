"""AWS: provisions the app on AWS (EventBridge, SQS, Lambda, DynamoDB, Step Functions).

`deploy(app, config)` is the package's one entry point, called by `infra.program` when
`switchyard:cloud` is `aws`. For now it registers only the top-level component, a
placeholder the AWS work grows: every AWS resource is to be created inside `AwsStack`
with `parent=self`. Nothing here may import `pulumi_gcp`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pulumi

from infra.config import StackConfig

if TYPE_CHECKING:
    from handlers.core.app import App

COMPONENT_TYPE = "switchyard:aws:Stack"


class AwsStack(pulumi.ComponentResource):
    """Everything one stack deploys on AWS, as children of one component."""

    def __init__(
        self,
        name: str,
        app: App,
        config: StackConfig,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(COMPONENT_TYPE, name, None, opts)
        self.cloud = "aws"
        self.register_outputs({"cloud": self.cloud, "prefix": config.prefix})


def deploy(app: App, config: StackConfig) -> None:
    """Provision `app` on AWS as described by `config`."""
    stack = AwsStack(config.prefix, app, config)
    pulumi.export("cloud", stack.cloud)
