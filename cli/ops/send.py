"""`switchyard send --stack S`: events checked as the stack's front door checks them, then
published on the deployed stack's bus with the caller's own cloud credentials.

The input is what `switchyard send` takes for the local runtime: `--type/--data` (with
`--source`, `--id`, `--subject`), or `--file` (`-` for stdin) holding a CloudEvent in the
JSON format, a CloudEvents batch, or an EventBridge PutEvents body `{"Entries": [...]}`.
Before anything is sent, every event is checked the way the clouds' HTTP ingress functions
check a request (`handlers.core.ingress_binding`): the CloudEvents envelope (required
attributes, specversion, time), a type the catalog knows, and data its schema accepts.
One bad event refuses the whole input, each problem named, so a file is never sent half.
Like those ingresses, an event without a trace context gets one here.

Sending is per cloud: `cli.ops.aws_send` (PutEvents through the AWS publisher:
batches of 10, only failed entries re-sent, sizes checked first) and
`cli.ops.gcp_send` (a Pub/Sub publish per event in CloudEvents binary mode). An
entry that the bus still refuses is reported with its error and the command exits 1; the
others were sent (consumers are idempotent, so sending the file again is harmless for
events that carry their own id).

Exit codes: 0 all sent; 1 some events not accepted by the bus, or the environment cannot
send (SDK missing, no credentials); 2 bad input or stack outputs (nothing was sent).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from adapters.stack_outputs import AwsOutputs, OutputsError, StackOutputs
from cli.ops.outputs import load
from handlers.core import tracing
from handlers.core.app import Catalog
from handlers.core.events import Event, attribute_problems

EXIT_NOT_SENT: Final = 1
EXIT_USAGE: Final = 2
STDIN: Final = "-"
_STRUCTURED: Final = "application/cloudevents+json"
_BATCH: Final = "application/cloudevents-batch+json"


class SendError(Exception):
    """The input cannot be sent as given (nothing was sent); `problems` names each one."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)

    def line(self) -> str:
        return f"{self}: {'; '.join(self.problems)}" if self.problems else str(self)


class CannotSend(Exception):
    """This machine cannot reach the bus: SDK missing, no credentials (nothing was sent)."""


@dataclass(frozen=True, slots=True)
class NotSent:
    """An event the bus did not accept, with the bus's error (AWS: its error code)."""

    event: Event
    error: str


class Sender(Protocol):
    """A deployed stack's bus, as seen from the operator's machine."""

    #: Where events go, named as the cloud names it (an ARN, a topic path).
    bus: str

    def send(self, events: Sequence[Event]) -> list[NotSent]:
        """Publish `events`; those not accepted. `SendError` when nothing could be sent
        because of the events themselves (over a size limit)."""
        ...


# --- reading the input ------------------------------------------------------------------


def read_file(path: str) -> bytes:
    """The bytes of `--file PATH` (`-`: standard input); `SendError` if unreadable."""
    if path == STDIN:
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise SendError(f"cannot read --file {path}: {error.strerror or error}") from None


def guess_content_type(body: bytes) -> str:
    """The content type a file of JSON most likely is: a batch, one event, or a PutEvents
    body (plain JSON, recognised by its `Entries`)."""
    if body.lstrip()[:1] == b"[":
        return _BATCH
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return "application/json"
    if isinstance(parsed, dict) and "specversion" in parsed:
        return _STRUCTURED
    return "application/json"


def events_from_body(body: bytes, content_type: str | None, catalog: Catalog,
                     origin: str = "the input") -> list[Event]:
    """Events of a file's body, checked as the ingress functions check a request."""
    from handlers.core.ingress_binding import read_request

    if not body.strip():
        raise SendError(f"{origin} is empty")
    if content_type is None:
        try:
            json.loads(body)
        except (ValueError, RecursionError) as error:
            raise SendError(f"{origin} is not valid JSON", [str(error)]) from None
        content_type = guess_content_type(body)
    events, problems = read_request({"content-type": content_type}, body, catalog)
    if problems:
        raise SendError(f"{origin} cannot be sent (nothing was sent)", problems)
    return [event for _, event in events]


def event_from_fields(catalog: Catalog, type_: str, data: str | None, *,
                      source: str | None = None, id_: str | None = None,
                      subject: str | None = None) -> Event:
    """The event `--type/--data [--source --id --subject]` describe, checked likewise."""
    from handlers.core.ingress_binding import catalog_problems

    problems: list[str] = []
    value: Any = None
    if data is not None:
        try:
            value = json.loads(data)
        except (ValueError, RecursionError) as error:
            problems.append(f"--data is not valid JSON: {error}")
    spec = catalog.get(type_)
    event = Event.new(source if source is not None else (spec.source if spec else "cli"),
                      type_, value, id=id_, subject=subject)
    if id_ == "":
        # Event.new takes "" as "make one up"; an explicit empty id is a mistake.
        problems.append("--id must not be empty")
    problems.extend(attribute_problems(event.attributes()))
    if not problems:
        problems.extend(catalog_problems(event, catalog))
    if problems:
        raise SendError("the event cannot be sent (nothing was sent)", problems)
    return event


def read_events(args: argparse.Namespace, catalog: Catalog) -> list[Event]:
    """The events the command line describes; `SendError` naming every problem."""
    if args.file and args.type:
        raise SendError("give either --file or --type (with --data), not both")
    if args.file:
        origin = "stdin" if args.file == STDIN else f"--file {args.file}"
        return events_from_body(read_file(args.file), args.content_type, catalog, origin)
    if not args.type:
        raise SendError("give --file, or --type with --data")
    return [event_from_fields(catalog, args.type, args.data, source=args.source,
                              id_=args.id, subject=args.subject)]


# --- sending ----------------------------------------------------------------------------


def connect(outputs: StackOutputs, catalog: Catalog) -> Sender:
    """The sender for the stack's cloud (imports only that cloud's SDK)."""
    if isinstance(outputs, AwsOutputs):
        from cli.ops.aws_send import AwsSender

        return AwsSender.connect(outputs, catalog)
    from cli.ops.gcp_send import GcpSender

    return GcpSender.connect(outputs)


def sent(events: Sequence[Event], not_sent: Sequence[NotSent]) -> list[Event]:
    """`events` but those not sent. By identity: a file may repeat an id (a consumer
    drops the copy), and one of two equal events can fail while the other goes."""
    failed = {id(n.event) for n in not_sent}
    return [e for e in events if id(e) not in failed]


def answer(bus: str, events: Sequence[Event], not_sent: Sequence[NotSent]) -> dict[str, Any]:
    """The `--json` answer: the local API's `{"accepted", "ids"}` plus the bus and what
    was not sent."""
    out: dict[str, Any] = {"accepted": len(events) - len(not_sent),
                           "ids": [e.id for e in sent(events, not_sent)], "bus": bus}
    if not_sent:
        out["failed"] = [{"id": n.event.id, "type": n.event.type, "error": n.error}
                         for n in not_sent]
    return out


def run(args: argparse.Namespace) -> int:
    """`switchyard send --stack S`: read, check, send, report. Never raises."""
    from handlers.core.app import load_app

    def fail(code: int, message: str) -> int:
        one_line = " ".join(message.split("\n"))  # SDK messages may span lines
        print(f"switchyard send: {one_line}", file=sys.stderr)
        return code

    try:
        # Input first: a mistake in it is reported without asking Pulumi or the cloud.
        catalog = load_app().catalog
        read = read_events(args, catalog)
        sender = connect(load(args.stack, args.outputs), catalog)
        with tracing.ingress(read, "send") as events:  # a span each when tracing is on
            not_sent = sender.send(events)
    except SendError as error:
        return fail(EXIT_USAGE, error.line())
    except OutputsError as error:
        return fail(EXIT_USAGE, str(error))
    except CannotSend as error:
        return fail(EXIT_NOT_SENT, str(error))
    except Exception as error:  # noqa: BLE001 - one line, never a traceback
        return fail(EXIT_NOT_SENT, f"{type(error).__name__}: {error} (some events may have "
                                   "been sent)")
    if args.json:
        print(json.dumps(answer(sender.bus, events, not_sent)))
    else:
        for event in sent(events, not_sent):
            print(f"sent {event.id} ({event.type}) to {sender.bus}")
    for item in not_sent:
        print(f"NOT sent {item.event.id} ({item.event.type}): {item.error}", file=sys.stderr)
    if not_sent:
        return fail(EXIT_NOT_SENT, f"{len(not_sent)} of {len(events)} events not accepted by "
                                   f"{sender.bus}; the others were sent")
    return 0


def install_hint(cloud: str, missing: str) -> str:
    extra = {"aws": "boto3", "gcp": "google-cloud-pubsub"}[cloud]
    return (f"the {cloud.upper()} SDK is not installed ({missing}): install the '{cloud}' "
            f"extra, e.g. `pip install -e '.[{cloud}]'` ({extra})")


def problems_of(error: Exception) -> list[str]:
    """A PermanentError's listed problems, or its message."""
    problems = getattr(error, "problems", None)
    return [str(p) for p in problems] if problems else [str(error)]
