"""The one normalised event type for "a file finished uploading", whatever the cloud.

S3's EventBridge `Object Created`, Cloud Storage's `OBJECT_FINALIZE` notification or
`google.cloud.storage.object.v1.finalized` CloudEvent, and the local uploads folder are
all turned into this type by their adapters; an app's catalog declares it (with its
schema) and its consumers consume it like any other event. Data: `bucket` (the app's
logical bucket name), `name`, `size`, `etag`, `content_type`.
"""

from __future__ import annotations

from typing import Final

STORAGE_OBJECT_FINALIZED: Final = "com.switchyard.storage.object.finalized"
