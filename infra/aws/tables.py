"""DynamoDB tables of the app: on-demand, point-in-time recovery, SSE, TTL on dedupe records.

Deletion protection follows `switchyard:protectData` (infra/protection.py): on, neither
DynamoDB nor Pulumi deletes a table; off, `pulumi destroy` removes them.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from adapters.aws import topology
from adapters.aws.topology import Names
from handlers.core.app import App
from infra.protection import DataProtection


class Tables(pulumi.ComponentResource):
    def __init__(self, name: str, app: App, names: Names, protection: DataProtection,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("switchyard:aws:Tables", name, None, opts)
        self.tables: dict[str, aws.dynamodb.Table] = {}
        for spec in topology.table_specs(app):
            self.tables[spec.logical] = aws.dynamodb.Table(
                f"{name}-{spec.logical}", name=names.table(spec.logical),
                billing_mode="PAY_PER_REQUEST", hash_key=spec.key,
                attributes=[aws.dynamodb.TableAttributeArgs(name=spec.key, type="S")],
                point_in_time_recovery=aws.dynamodb.TablePointInTimeRecoveryArgs(enabled=True),
                server_side_encryption=aws.dynamodb.TableServerSideEncryptionArgs(enabled=True),
                ttl=aws.dynamodb.TableTtlArgs(attribute_name=spec.ttl_attribute, enabled=True)
                if spec.ttl_attribute else None,
                deletion_protection_enabled=protection.dynamodb_deletion_protection,
                opts=protection.data_options(self))
        self.names = {k: t.name for k, t in self.tables.items()}
        self.arns = {k: t.arn for k, t in self.tables.items()}
        self.register_outputs({"tableNames": self.names})
