"""The event bus and its archive (kept `archive_days` for replay after a fix)."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from adapters.aws.topology import Names


class EventBus(pulumi.ComponentResource):
    def __init__(self, name: str, names: Names, archive_days: int,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("switchyard:aws:EventBus", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.bus = aws.cloudwatch.EventBus(f"{name}-bus", name=names.bus(), opts=child)
        self.archive = aws.cloudwatch.EventArchive(
            f"{name}-archive", name=names.archive(), event_source_arn=self.bus.arn,
            retention_days=archive_days,
            description="Every event on the bus, for replay after a fix", opts=child)
        self.register_outputs({"busName": self.bus.name, "busArn": self.bus.arn,
                               "archiveName": self.archive.name})
