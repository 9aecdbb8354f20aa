"""What `pulumi destroy` may delete: the one switch `switchyard:protectData` decides it.

Two kinds of stack, one table of arguments, so AWS and GCP agree:

* **dev** (`protectData: false`, the default): `pulumi destroy` removes everything the stack
  created and leaves nothing billable behind. Buckets are emptied first (`force_destroy`:
  S3 and Cloud Storage refuse to delete a bucket that still holds objects), DynamoDB tables
  and the Firestore database carry no deletion protection, the Firestore database is really
  deleted (`deletion_policy: DELETE`; the provider's default, ABANDON, only forgets it), and
  the KMS key is scheduled for deletion after the shortest wait AWS allows.
* **production** (`protectData: true`): the data resources (tables, the Firestore database,
  the buckets) are protected three ways. The cloud refuses to delete them (DynamoDB
  `deletion_protection_enabled`, Firestore `DELETE_PROTECTION_ENABLED` with `ABANDON`),
  Pulumi refuses to delete or replace them (`protect`), and even once unprotected
  (`pulumi state unprotect`) a destroy leaves them in the account (`retain_on_delete`).
  Buckets are never emptied. The KMS key gets the longest waiting period.

Switching a stack from production to dev takes a `pulumi up` first: the cloud-side flags
and `force_destroy` are read from the last deployed state, not from the program.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import pulumi

# AWS KMS ScheduleKeyDeletion accepts a waiting period of 7 to 30 days (30 by default);
# a key is never deleted sooner than 7 days after `pulumi destroy`.
KMS_DELETION_WINDOW_MIN_DAYS: Final = 7
KMS_DELETION_WINDOW_MAX_DAYS: Final = 30


@dataclass(frozen=True, slots=True)
class DataProtection:
    """The destroy behaviour of one stack (built from `StackConfig.protect_data`)."""

    enabled: bool

    def data_options(self, parent: pulumi.Resource,
                     depends_on: list[pulumi.Resource] | None = None) -> pulumi.ResourceOptions:
        """Options of a resource that holds data (table, database, bucket), or configures
        one that must keep its settings when kept (a retained bucket stays private,
        encrypted and TLS-only, with its expiry rules)."""
        return pulumi.ResourceOptions(parent=parent, depends_on=depends_on,
                                      protect=self.enabled, retain_on_delete=self.enabled)

    @property
    def force_destroy(self) -> bool:
        """Buckets: empty them on destroy (dev) or refuse to (production)."""
        return not self.enabled

    @property
    def dynamodb_deletion_protection(self) -> bool:
        return self.enabled

    @property
    def firestore_delete_protection_state(self) -> str:
        return "DELETE_PROTECTION_ENABLED" if self.enabled else "DELETE_PROTECTION_DISABLED"

    @property
    def firestore_deletion_policy(self) -> str:
        # DELETE needs delete protection disabled, which dev has; ABANDON drops the
        # database from the state and leaves it (and its data) in the project.
        return "ABANDON" if self.enabled else "DELETE"

    @property
    def kms_deletion_window_days(self) -> int:
        return KMS_DELETION_WINDOW_MAX_DAYS if self.enabled else KMS_DELETION_WINDOW_MIN_DAYS
