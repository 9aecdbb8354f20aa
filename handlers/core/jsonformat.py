"""CloudEvents JSON format (the body of structured mode): Event <-> dict, lossless.

`bytes` data travels as `data_base64`; any JSON value travels as `data`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Final

from handlers.core import fastjson
from handlers.core.errors import ValidationError
from handlers.core.events import Event, attribute_problems
from handlers.core.wire import data as codec
from handlers.core.wire import jsontext


def to_dict(event: Event) -> dict[str, Any]:
    out: dict[str, Any] = event.attributes()  # a new dict each call: ours to add to
    if isinstance(event.data, (bytes, bytearray)):
        out["data_base64"] = codec.encode_base64(bytes(event.data))
    elif event.data is not None:
        out["data"] = event.data
    return out


def from_dict(body: Any, where: str = "event") -> Event:
    """Parse one JSON-format event; every problem is reported at once."""
    if type(body) is not dict and not isinstance(body, Mapping):  # dict: no ABC check
        raise ValidationError(f"invalid {where}", [
            f"{where} must be a JSON object, got {jsontext.json_type(body)}"])
    attributes = _attrs(body)
    problems = [f"{where}: {p}" for p in attribute_problems(attributes)]
    data: Any = body.get("data")
    if "data_base64" in body:
        if "data" in body:
            problems.append(f"{where}: has both 'data' and 'data_base64'")
        data, problem = codec.decode_base64(body["data_base64"], f"{where}: 'data_base64'")
        if problem:
            problems.append(problem)
    if problems:
        raise ValidationError("invalid CloudEvent", problems)
    return Event.from_checked_attributes(attributes, data)  # checked just above


def _attrs(body: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in ("data", "data_base64")}


#: `json.dumps` with options builds an encoder per call: one of each, made once.
_encode_event: Final = fastjson.encoder(json.JSONEncoder(
    separators=(",", ":"), sort_keys=True, allow_nan=False))
_encode_fingerprint: Final = fastjson.encoder(json.JSONEncoder(
    separators=(",", ":"), sort_keys=True, default=str))


def dumps(event: Event) -> str:
    return _encode_event(to_dict(event))


def loads(text: str | bytes) -> Event:
    return from_dict(jsontext.loads(text))


def fingerprint(event: Event) -> str:
    """Hash of what makes two deliveries of one (source, id) the same event."""
    data = event.data
    binary = isinstance(data, (bytes, bytearray))
    # What `to_dict(event)` holds under these names (None for what it leaves out).
    material = {"type": event.type, "subject": event.subject,
                "data": None if binary else data,
                "data_base64": codec.encode_base64(bytes(data)) if binary else None}
    if "claimcheck" in event.extensions:
        # A claim-checked event has no data here; its reference names the payload's
        # content (see `claim_check.claim_key`), so other data is another fingerprint.
        material["claimcheck"] = event.extensions["claimcheck"]
    canonical = _encode_fingerprint(material)
    return hashlib.sha256(canonical.encode()).hexdigest()
