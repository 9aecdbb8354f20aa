"""GCP: provisions the app on GCP (Pub/Sub, Cloud Functions, Firestore, Workflows).

`deploy(app, config)` is the package's one entry point, called by `infra.program` when
`switchyard:cloud` is `gcp`. For now it registers only the top-level component, a
placeholder the GCP work grows: every GCP resource is to be created inside `GcpStack`
with `parent=self`. Nothing here may import `pulumi_aws`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pulumi

from infra.config import StackConfig

if TYPE_CHECKING:
    from handlers.core.app import App

COMPONENT_TYPE = "switchyard:gcp:Stack"


class GcpStack(pulumi.ComponentResource):
    """Everything one stack deploys on GCP, as children of one component."""

    def __init__(
        self,
        name: str,
        app: App,
        config: StackConfig,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(COMPONENT_TYPE, name, None, opts)
        self.cloud = "gcp"
        self.register_outputs({"cloud": self.cloud, "prefix": config.prefix})


def deploy(app: App, config: StackConfig) -> None:
    """Provision `app` on GCP as described by `config`."""
    stack = GcpStack(config.prefix, app, config)
    pulumi.export("cloud", stack.cloud)
