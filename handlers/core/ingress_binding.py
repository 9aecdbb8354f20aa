"""The ingress policy: what every HTTP front door takes, and what it answers.

The three front doors (the local server's `POST /events`, the AWS API function behind
API Gateway, the GCP ingest function) call `read_request` and answer with `accepted` /
`refused`, so a producer gets the same verdict for the same request whichever one it
talks to:

- **CloudEvents**, in any content mode of the HTTP binding: a `ce-specversion` header
  (binary mode) or an `application/cloudevents+json` / `application/cloudevents-batch+json`
  Content-Type (structured / batched mode). A CloudEvents marker wins over the body's
  shape, so a binary event whose data has an "Entries" key is still that event. Binary
  mode without a Content-Type reads the data the way the CloudEvents SDK does (the JSON
  value if the body parses, else the bytes): the SDK's `to_binary` sends JSON that way.
- **A PutEvents body** (`{"Entries": [...]}`, as EventBridge producers send it), with a
  JSON Content-Type (including the AWS SDKs' `application/x-amz-json-1.1`) or none.
- **Refused with a hint**: `application/x-www-form-urlencoded`, the type `curl -d` sends
  when none is given. The body is then almost always JSON that the sender forgot to label;
  reading it as JSON anyway would make the recorded `datacontenttype` a lie, and reading
  it as form data would turn an event into text its schema refuses. So the answer names
  the header to add instead.
- Every event must be of a catalog type, come from that type's source, and its data must
  satisfy that type's schema:
  a bad event is refused at the door with its reasons instead of being accepted and
  dead-lettered later. One bad event refuses the whole request (nothing is published),
  so a producer can fix and resend all of it without creating duplicates.

The answer is `400` with every problem, each prefixed by where it was ("Entries[2]: ...",
"event[0]: ..."), or `202` with the ids in request order.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from handlers.core import eventbridge_binding, http_binding
from handlers.core.app import Catalog
from handlers.core.errors import ValidationError
from handlers.core.events import Event
from handlers.core.wire import jsontext
from handlers.core.wire.data import data_kind, parse_media_type
from handlers.core.wire.jsontext import Positioned

#: The Content-Type `curl -d` sends unless told otherwise.
FORM_CONTENT_TYPE: Final = "application/x-www-form-urlencoded"
_FORM_HINT: Final = (
    f"Content-Type {FORM_CONTENT_TYPE} (what `curl -d` sends by default) is not an event "
    "format: send JSON with -H 'Content-Type: application/json' (a PutEvents body, or the "
    "data of a binary-mode event) or -H 'Content-Type: application/cloudevents+json' (a "
    "structured event)"
)
_POSITION: Final = re.compile(r"^(?:Entries|event)\[(\d+)\]")
#: The error line of a refusal, the same on every front door.
REFUSED: Final = "invalid request"


def decode_request(headers: Mapping[str, str], body: bytes, catalog: Catalog) -> list[Event]:
    """Events of an ingress request; `ValidationError` naming every problem and its event."""
    events, problems = read_request(headers, body, catalog)
    if problems:
        raise ValidationError(REFUSED, problems)
    return [event for _, event in events]


def read_request(
    headers: Mapping[str, str], body: bytes, catalog: Catalog
) -> tuple[list[Positioned], list[str]]:
    """Events that decoded and passed the catalog, and every problem with the others."""
    content_type = _header(headers, "content-type")
    media_type = parse_media_type(content_type)[0] if content_type is not None else None
    if media_type == FORM_CONTENT_TYPE:
        return [], [_FORM_HINT]
    if http_binding.content_mode(headers) is not None:
        decoded, problems = http_binding.read_http(headers, body)
    else:
        parsed, problem = _put_events_body(content_type, body)
        if problem:
            return [], [problem]
        decoded, problems = eventbridge_binding.read_put_events_body(parsed, catalog)
    accepted: list[Positioned] = []
    for where, event in decoded:
        more = catalog_problems(event, catalog)
        problems.extend(f"{where}: {p}" for p in more)
        if not more:
            accepted.append((where, event))
    # Decoding and catalog problems arrive in two passes; readers want them by position.
    return accepted, sorted(problems, key=_position)


def catalog_problems(event: Event, catalog: Catalog) -> list[str]:
    """Why the app cannot take this event: unknown type, a source that is not its type's,
    or data the schema rejects."""
    known = catalog.get(event.type)
    if known is None:
        names = ", ".join(sorted(t.type for t in catalog))
        return [f"unknown event type '{event.type}' (known: {names})"]
    problems = []
    if event.source != known.source:
        # On AWS the bus routes on (Source, DetailType) and the API function may put only
        # the catalog's pairs (an events:source condition), so such an event would be
        # refused entry by entry there; every door refuses it alike.
        problems.append(f"source '{event.source}' is not '{known.source}', the source of "
                        f"{event.type} in the catalog")
    return [*problems, *known.data_problems(event.data)]


def accepted(events: Sequence[Event]) -> dict[str, Any]:
    """The 202 body: how many, and their ids in request order."""
    return {"accepted": len(events), "ids": [e.id for e in events]}


def refused(problems: Sequence[str], error: str = REFUSED) -> dict[str, Any]:
    """The 400 body: one line saying what was refused, and every problem."""
    return {"error": error, "problems": list(problems) or [error]}


def _put_events_body(content_type: str | None, body: bytes) -> tuple[Any, str | None]:
    """The parsed PutEvents body of a request without a CloudEvents marker, or why it is
    not one either."""
    if content_type is not None and data_kind(content_type) != "json":
        return None, (f"not an event: no 'ce-specversion' header, and the content type "
                      f"{content_type!r} is not JSON: send a PutEvents body as "
                      "application/json, a structured event as application/cloudevents+json "
                      "(a batch as application/cloudevents-batch+json), or binary mode with "
                      "ce-* headers")
    if content_type is None:
        # Refused rather than guessed: a request without a Content-Type is one a web page
        # may send cross-site without asking (so is a form post), and a local door must
        # not take events from any page the user visits; every door answers alike.
        return None, ("not an event: no 'ce-specversion' header and no Content-Type: send a "
                      "PutEvents body with Content-Type: application/json, a structured "
                      "event as application/cloudevents+json, or binary mode with ce-* "
                      "headers")
    parsed, problem = jsontext.parse(body)
    if problem:
        return None, problem
    if not (isinstance(parsed, Mapping) and "Entries" in parsed):
        return None, ("not an event: no 'ce-specversion' header, the content type is not "
                "application/cloudevents+json or application/cloudevents-batch+json, and "
                "the body is not a PutEvents request (a JSON object with 'Entries'), got "
                f"{jsontext.json_type(parsed)}")
    return parsed, None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _position(problem: str) -> int:
    match = _POSITION.match(problem)
    return int(match.group(1)) if match else -1


__all__ = ["FORM_CONTENT_TYPE", "REFUSED", "accepted", "catalog_problems", "decode_request",
           "read_request", "refused"]
