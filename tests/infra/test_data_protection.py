"""`switchyard:protectData`: what `pulumi destroy` removes, on both clouds, both settings.

Dev stacks (the default) must leave nothing behind; production stacks must keep every
table, database and bucket, guarded by the cloud and by Pulumi. Checked on the programs
recorded under Pulumi mocks.
"""

from __future__ import annotations

import functools

import pytest

from infra.protection import KMS_DELETION_WINDOW_MAX_DAYS, KMS_DELETION_WINDOW_MIN_DAYS
from tests.infra.pulumi_harness import Recorded, RecordedResource, run_program

T_TABLE = "aws:dynamodb/table:Table"
T_S3 = "aws:s3/bucket:Bucket"
T_KMS = "aws:kms/key:Key"
T_FIRESTORE = "gcp:firestore/database:Database"
T_FIELD = "gcp:firestore/field:Field"
T_GCS = "gcp:storage/bucket:Bucket"
GCP = {"cloud": "gcp", "gcp:project": "switchyard-dev", "gcp:region": "us-central1"}


@functools.cache
def stack(cloud: str, protect: bool | None) -> Recorded:
    """dev-<cloud>; `protect` None leaves protectData unset (its default)."""
    config: dict[str, object] = GCP if cloud == "gcp" else {"cloud": "aws"}
    if protect is not None:
        config = {**config, "protectData": protect}
    return run_program(config, f"dev-{cloud}")


def kept(rec: Recorded) -> list[RecordedResource]:
    return [r for r in rec.resources if r.protect or r.retain_on_delete]


def _s3_children(rec: Recorded) -> list[RecordedResource]:
    """Resources configuring an S3 bucket (public access block, policy, encryption...)."""
    buckets = {r.urn for r in rec.of_type(T_S3)}
    return [r for r in rec.resources if r.type.startswith("aws:s3/")
            and r.type != T_S3 and any(d in buckets for d in r.dependencies)]


@pytest.mark.parametrize("cloud", ["aws", "gcp"])
def test_a_dev_stack_is_destroyed_completely(cloud: str) -> None:
    for rec in (stack(cloud, None), stack(cloud, False)):
        assert kept(rec) == []


def test_aws_dev_stack_lets_destroy_delete_data() -> None:
    rec = stack("aws", None)
    tables = rec.of_type(T_TABLE)
    buckets = rec.of_type(T_S3)
    assert tables and buckets
    assert all(t.inputs["deletionProtectionEnabled"] is False for t in tables)
    # S3 refuses to delete a bucket that holds objects: dev buckets are emptied first.
    assert all(b.inputs["forceDestroy"] is True for b in buckets)
    [key] = rec.of_type(T_KMS)
    assert key.inputs["deletionWindowInDays"] == KMS_DELETION_WINDOW_MIN_DAYS == 7


def test_aws_production_stack_keeps_tables_and_buckets() -> None:
    rec = stack("aws", True)
    tables, buckets = rec.of_type(T_TABLE), rec.of_type(T_S3)
    for table in tables:
        assert table.inputs["deletionProtectionEnabled"] is True
        assert table.protect and table.retain_on_delete, table.name
    for bucket in buckets:
        assert "forceDestroy" not in bucket.inputs or bucket.inputs["forceDestroy"] is False
        assert bucket.protect and bucket.retain_on_delete, bucket.name
    # A kept bucket keeps its settings: private, encrypted, TLS-only, expiring claims.
    children = _s3_children(rec)
    assert {c.type for c in children} >= {
        "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
        "aws:s3/bucketPolicy:BucketPolicy",
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
    }
    assert all(c.retain_on_delete and c.protect for c in children)
    [key] = rec.of_type(T_KMS)
    assert key.inputs["deletionWindowInDays"] == KMS_DELETION_WINDOW_MAX_DAYS == 30
    # Only data is kept: queues, functions, roles... go with the stack.
    assert {r.urn for r in kept(rec)} == {r.urn for r in [*tables, *buckets, *children]}


def test_gcp_dev_stack_lets_destroy_delete_data() -> None:
    rec = stack("gcp", None)
    databases = rec.of_type(T_FIRESTORE)
    assert len(databases) > 1  # one per data set
    for database in databases:
        assert database.inputs["deleteProtectionState"] == "DELETE_PROTECTION_DISABLED"
        # The provider's default (ABANDON) would only forget a database: DELETE deletes it.
        assert database.inputs["deletionPolicy"] == "DELETE"
    buckets = rec.of_type(T_GCS)
    assert len(buckets) >= 2  # the app's buckets and the functions' source bucket
    assert all(b.inputs["forceDestroy"] is True for b in buckets)


def test_gcp_production_stack_keeps_the_database_and_the_data_buckets() -> None:
    rec = stack("gcp", True)
    databases = rec.of_type(T_FIRESTORE)
    assert len(databases) > 1  # one per data set
    for database in databases:
        assert database.inputs["deleteProtectionState"] == "DELETE_PROTECTION_ENABLED"
        assert database.inputs["deletionPolicy"] == "ABANDON"
        assert database.protect and database.retain_on_delete
    ttls = rec.of_type(T_FIELD)
    assert ttls and all(ttl.protect and ttl.retain_on_delete for ttl in ttls)
    data_buckets = [b for b in rec.of_type(T_GCS) if not b.name.endswith("-source-bucket")]
    [source] = [b for b in rec.of_type(T_GCS) if b.name.endswith("-source-bucket")]
    assert data_buckets
    for bucket in data_buckets:
        assert bucket.inputs.get("forceDestroy", False) is False
        assert bucket.protect and bucket.retain_on_delete, bucket.name
    # The functions' zip is not data: it goes with the stack in every setting.
    assert source.inputs["forceDestroy"] is True and not source.protect
    assert {r.urn for r in kept(rec)} == {r.urn for r in [*databases, *ttls, *data_buckets]}


@pytest.mark.parametrize("cloud", ["aws", "gcp"])
def test_protection_changes_no_resource_names(cloud: str) -> None:
    """Turning protectData on for a deployed stack updates in place: no replacement."""
    dev, prod = stack(cloud, False), stack(cloud, True)
    assert sorted((r.type, r.name) for r in dev.resources) == \
        sorted((r.type, r.name) for r in prod.resources)
