"""The Pulumi program: read the stack config once, then hand the app to one cloud.

This is the only place the cloud is chosen. Only the chosen cloud's package is imported
(lazily, by name), so an AWS stack never imports `pulumi_gcp` and vice versa, and each
cloud's SDK is only needed where that cloud is deployed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Final, Protocol

from infra.config import Cloud, StackConfig

if TYPE_CHECKING:
    from handlers.core.app import App

# Cloud -> the package whose `deploy(app, config)` provisions it.
CLOUD_PACKAGES: Final[dict[Cloud, str]] = {
    "aws": "infra.aws",
    "gcp": "infra.gcp",
}


class Deploy(Protocol):
    """What each cloud package exposes as `deploy`."""

    def __call__(self, app: App, config: StackConfig) -> None: ...


def load_app() -> App:
    """The app description every backend generates from (`handlers.app.APP`).

    Imported here, not at module import, so the config is validated (and a bad `cloud`
    reported) before any application code is loaded.
    """
    from handlers.app import APP

    return APP


def cloud_deploy(cloud: Cloud) -> Deploy:
    """Import the chosen cloud's package and return its `deploy`."""
    module = importlib.import_module(CLOUD_PACKAGES[cloud])
    deploy: Deploy = module.deploy
    return deploy


def main() -> None:
    """Entry point called by `infra/__main__.py` inside a Pulumi run."""
    config = StackConfig.from_pulumi()
    deploy = cloud_deploy(config.cloud)
    deploy(load_app(), config)
