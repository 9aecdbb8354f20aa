"""`switchyard send --stack S` on GCP: a Pub/Sub publish per event on the stack's bus topic.

Events go through the same `PubSubPublisher` the functions publish with: CloudEvents
binary mode (`ce-*` attributes, `content-type`, the data as the message bytes; structured
mode only for an event binary mode cannot carry exactly), Pub/Sub's limits checked before
anything is sent, and only the messages that failed re-sent.

One limit is stricter than Pub/Sub's 10 MB: the functions claim-check events over
`CLAIM_CHECK_ABOVE` (just under 1 MiB, so that an event that travels on one cloud travels
on the other), and this command has no access to the claim-check bucket, so it refuses
them, naming the size, instead of putting on the bus what no other publisher would.

The client is built like `cli.ops.gcp`: `pubsub_v1.PublisherClient()` with
Application Default Credentials (`PUBSUB_EMULATOR_HOST` points it at an emulator).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from adapters.gcp.pubsub_publisher import PubSubPublisher
from adapters.gcp.topology import topic_path
from adapters.stack_outputs import GcpOutputs
from cli.ops.send import CannotSend, NotSent, SendError, install_hint, problems_of
from handlers.core.claim_check import event_bytes
from handlers.core.errors import PermanentError
from handlers.core.events import Event

NO_CREDENTIALS = ("no Google credentials found: run `gcloud auth application-default "
                  "login`, or set GOOGLE_APPLICATION_CREDENTIALS to a key file; nothing "
                  "was sent")


def claim_check_above() -> int:
    # The functions' own constant; imported lazily, as it lives with their entry points.
    from adapters.gcp.entry import CLAIM_CHECK_ABOVE

    return int(CLAIM_CHECK_ABOVE)


class GcpSender:
    def __init__(self, outputs: GcpOutputs, client: Any) -> None:
        self.bus = topic_path(outputs.project, outputs.bus_topic)
        self._publisher = PubSubPublisher(client, self.bus)

    @classmethod
    def connect(cls, outputs: GcpOutputs) -> GcpSender:
        try:
            from google.auth.exceptions import DefaultCredentialsError

            # google.cloud is a namespace package shared with typed Firestore: mypy looks
            # for pubsub_v1 (which ships no types) as an attribute of it, not a module.
            from google.cloud import pubsub_v1  # type: ignore[attr-defined]
        except ImportError as error:
            raise CannotSend(install_hint("gcp", str(error))) from None
        try:
            # The client looks up Application Default Credentials as it is built.
            return cls(outputs, pubsub_v1.PublisherClient())
        except DefaultCredentialsError as error:
            raise CannotSend(f"{NO_CREDENTIALS} ({error})".replace("\n", " ")) from None

    def send(self, events: Sequence[Event]) -> list[NotSent]:
        limit = claim_check_above()
        too_big = [f"event '{e.id}' ({e.type}) is {size} bytes"
                   for e in events if (size := event_bytes(e)) > limit]
        if too_big:
            raise SendError(f"over {limit} bytes, above which Switchyard's publishers "
                            "claim-check an event (this command cannot: it has no access to "
                            "the claim-check bucket); nothing was sent", too_big)
        try:
            failed = self._publisher.put(events)
        except PermanentError as error:
            raise SendError(str(error), problems_of(error)) from None
        return [NotSent(f.event, f.error) for f in failed]
