"""One entry point for an HTTP ingress: whatever a producer sends, events or every problem.

Producers written against EventBridge POST a PutEvents body (`{"Entries": [...]}`);
CloudEvents producers use the HTTP binding in any content mode. Either way the events must
be of a catalog type with data that satisfies its schema, checked here so a bad event is
refused at the door (400, with reasons) instead of being dead-lettered later.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from handlers.core import eventbridge_binding, http_binding, jsonformat
from handlers.core.app import Catalog
from handlers.core.errors import ValidationError
from handlers.core.events import Event
from handlers.core.http_binding import Positioned

_POSITION: Final = re.compile(r"^(?:Entries|event)\[(\d+)\]")


def decode_request(headers: Mapping[str, str], body: bytes, catalog: Catalog) -> list[Event]:
    """Events of an ingress request; `ValidationError` naming every problem and its event."""
    events, problems = read_request(headers, body, catalog)
    if problems:
        raise ValidationError("invalid request", problems)
    return [event for _, event in events]


def read_request(
    headers: Mapping[str, str], body: bytes, catalog: Catalog
) -> tuple[list[Positioned], list[str]]:
    """Events that decoded and passed the catalog, and every problem with the others.

    A CloudEvents marker (a `ce-specversion` header or a cloudevents content type) wins
    over the body's shape, so a binary-mode event whose data happens to have an "Entries"
    key is still read as that event.
    """
    if http_binding.content_mode(headers) is not None:
        decoded, problems = http_binding.read_http(headers, body)
    else:
        parsed, problem = jsonformat.read_json(body)
        if problem and _says_json(headers):
            # Declared JSON that the strict reader refuses (1e999, a lone surrogate, too
            # deep): name that problem rather than "not an event".
            return [], [f"body {problem}"]
        if not (isinstance(parsed, Mapping) and "Entries" in parsed):
            return [], [
                "not an event: no 'ce-specversion' header, the content type is not "
                "application/cloudevents+json or application/cloudevents-batch+json, and "
                "the body is not a PutEvents request (a JSON object with 'Entries')"
            ]
        decoded, problems = eventbridge_binding.read_put_events_body(parsed, catalog)
    accepted: list[Positioned] = []
    for where, event in decoded:
        more = catalog_problems(event, catalog)
        problems.extend(f"{where}: {p}" for p in more)
        if not more:
            accepted.append((where, event))
    # Decoding and catalog problems arrive in two passes; readers want them by position.
    return accepted, sorted(problems, key=_position)


def _position(problem: str) -> int:
    match = _POSITION.match(problem)
    return int(match.group(1)) if match else -1


def catalog_problems(event: Event, catalog: Catalog) -> list[str]:
    """Why the app cannot take this event: unknown type, or data the schema rejects."""
    known = catalog.get(event.type)
    if known is None:
        names = ", ".join(sorted(t.type for t in catalog))
        return [f"unknown event type '{event.type}' (known: {names})"]
    return known.data_problems(event.data)


def _says_json(headers: Mapping[str, str]) -> bool:
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    return content_type.partition(";")[0].strip().lower() == "application/json"
