"""The one normalised event type for "a file finished uploading", whatever the cloud.

S3's EventBridge `Object Created`, Cloud Storage's `OBJECT_FINALIZE` notification or
`google.cloud.storage.object.v1.finalized` CloudEvent, and the local uploads folder are
all turned into this type by their adapters; an app's catalog declares it (with its
schema) and its consumers consume it like any other event. Data: `bucket` (the app's
logical bucket name), `name`, `size`, `etag`, `content_type`, and `problem` when the
bucket refused the upload and holds no object for it (only the local uploads folder
refuses: a name that is not UTF-8, a file that is not a regular file, or one over the
size limit); its consumers dead-letter such an event with that reason.
"""

from __future__ import annotations

from typing import Final

STORAGE_OBJECT_FINALIZED: Final = "com.switchyard.storage.object.finalized"
