"""The one event type handlers see, and validation of CloudEvents attributes.

`Event` is our own frozen dataclass so no provider type (boto3 dicts, Pub/Sub messages,
the CloudEvents SDK) ever reaches a handler. Adapters convert into it with
`Event.from_attributes`, which reports every problem at once.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final

from handlers.core.errors import ValidationError
from handlers.core.values import valueclass

SPECVERSION: Final = "1.0"

#: Context attributes defined by the CloudEvents 1.0 spec (everything else is an extension).
CORE_ATTRIBUTES: Final = frozenset(
    {"id", "source", "type", "specversion", "time", "subject", "datacontenttype", "dataschema"}
)
REQUIRED_ATTRIBUTES: Final = ("id", "source", "type", "specversion")
_EXTENSION_NAME: Final = re.compile(r"^[a-z0-9]{1,20}$")
_RFC3339: Final = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$", re.ASCII
)
#: Names the JSON format reserves for the payload: an extension may not take them.
_RESERVED: Final = frozenset({"data", "data_base64"})
_EMPTY: Final[Mapping[str, str]] = MappingProxyType({})
_ZERO_TRACE: Final = "0" * 32
_ZERO_PARENT: Final = "0" * 16


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@valueclass
class Event:
    """A CloudEvent. `data` is a JSON value, or `bytes` for non-JSON payloads."""

    __slots__ = ("id", "source", "type", "data", "specversion", "time", "subject",
                 "datacontenttype", "dataschema", "extensions")

    id: str
    source: str
    type: str
    data: Any
    specversion: str
    time: str | None
    subject: str | None
    datacontenttype: str | None
    dataschema: str | None
    extensions: Mapping[str, str]

    def __init__(self, id: str, source: str, type: str, data: Any = None,
                 specversion: str = SPECVERSION, time: str | None = None,
                 subject: str | None = None, datacontenttype: str | None = None,
                 dataschema: str | None = None, extensions: Mapping[str, str] = _EMPTY) -> None:
        _set_id(self, id)
        _set_source(self, source)
        _set_type(self, type)
        _set_data(self, data)
        _set_specversion(self, specversion)
        _set_time(self, time)
        _set_subject(self, subject)
        _set_datacontenttype(self, datacontenttype)
        _set_dataschema(self, dataschema)
        # Freeze the extension mapping so an Event really is immutable.
        _set_extensions(self, extensions if isinstance(extensions, MappingProxyType)
                        else MappingProxyType(dict(extensions)))

    @classmethod
    def new(
        cls,
        source: str,
        type: str,
        data: Any = None,
        *,
        id: str | None = None,
        subject: str | None = None,
        time: str | None = None,
        extensions: Mapping[str, str] | None = None,
    ) -> Event:
        return cls(
            id=id or str(uuid.uuid4()),
            source=source,
            type=type,
            data=data,
            time=time or utc_now_iso(),
            subject=subject,
            datacontenttype="application/octet-stream" if isinstance(data, bytes)
            else "application/json",
            extensions=extensions or {},
        )

    @classmethod
    def from_attributes(cls, attributes: Mapping[str, Any], data: Any = None) -> Event:
        """Build an Event from context attributes, raising one error listing every problem."""
        problems = attribute_problems(attributes)
        if problems:
            raise ValidationError("invalid CloudEvent", problems)
        return cls.from_checked_attributes(attributes, data)

    @classmethod
    def from_checked_attributes(cls, attributes: Mapping[str, Any], data: Any = None) -> Event:
        """`from_attributes` for attributes the caller has just found free of problems
        with `attribute_problems` (a decoder that reports them with its own wording):
        the same Event, without checking them a second time."""
        extensions = {k: _ext_str(v) for k, v in attributes.items() if k not in CORE_ATTRIBUTES} \
            if not attributes.keys() <= CORE_ATTRIBUTES else None
        if cls is not Event:
            return cls(
                id=str(attributes["id"]),
                source=str(attributes["source"]),
                type=str(attributes["type"]),
                specversion=str(attributes["specversion"]),
                time=_opt_str(attributes.get("time")),
                subject=_opt_str(attributes.get("subject")),
                datacontenttype=_opt_str(attributes.get("datacontenttype")),
                dataschema=_opt_str(attributes.get("dataschema")),
                data=data,
                extensions=extensions or {},
            )
        # What `cls(...)` above makes, built field by field: no keyword arguments to
        # bind and no copy of the extensions (a new dict here) to make.
        get = attributes.get
        time, subject = get("time"), get("subject")
        datacontenttype, dataschema = get("datacontenttype"), get("dataschema")
        event = _new_event(Event)
        _set_id(event, str(attributes["id"]))
        _set_source(event, str(attributes["source"]))
        _set_type(event, str(attributes["type"]))
        _set_data(event, data)
        _set_specversion(event, str(attributes["specversion"]))
        _set_time(event, None if time is None else str(time))
        _set_subject(event, None if subject is None else str(subject))
        _set_datacontenttype(event, None if datacontenttype is None else str(datacontenttype))
        _set_dataschema(event, None if dataschema is None else str(dataschema))
        _set_extensions(event, _EMPTY if extensions is None else MappingProxyType(extensions))
        return event

    def attributes(self) -> dict[str, str]:
        """Context attributes (core and extensions) that are set, as strings."""
        out: dict[str, str] = {
            "specversion": self.specversion,
            "id": self.id,
            "source": self.source,
            "type": self.type,
        }
        for name in ("time", "subject", "datacontenttype", "dataschema"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        out.update(self.extensions)
        return out

    def with_extensions(self, **extensions: str) -> Event:
        # What `dataclasses.replace` does, without its generic walk over the fields.
        # A new mapping, frozen here: `__init__` then has no copy of it to make.
        return Event(self.id, self.source, self.type, self.data, self.specversion, self.time,
                     self.subject, self.datacontenttype, self.dataschema,
                     MappingProxyType({**self.extensions, **extensions}))

    @property
    def traceparent(self) -> str | None:
        return self.extensions.get("traceparent")


# The slots' own setters, for `__init__` and `from_checked_attributes` (the class is frozen: its
# `__setattr__` refuses, the slot descriptors do not).
_new_event: Final = object.__new__
(_set_id, _set_source, _set_type, _set_data, _set_specversion, _set_time, _set_subject,
 _set_datacontenttype, _set_dataschema, _set_extensions) = (
    vars(Event)[name].__set__ for name in (
        "id", "source", "type", "data", "specversion", "time", "subject", "datacontenttype",
        "dataschema", "extensions"))


def _ext_str(value: Any) -> str:
    # CloudEvents spells booleans in lowercase; Python's str() would not.
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _is_timestamp(value: Any) -> bool:
    if not isinstance(value, str) or not _RFC3339.match(value):
        return False
    if value[10] == "t" or value[-1] == "z":  # the only letters the pattern lets through
        value = value.replace("z", "Z").replace("t", "T")
    try:  # ranges too: month 13 or hour 25 match the pattern but are not times
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def attribute_problems(attributes: Mapping[str, Any]) -> list[str]:
    """Every problem with a set of CloudEvents context attributes (empty when valid)."""
    get = attributes.get
    id_, source, type_, time = get("id"), get("source"), get("type"), get("time")
    subject, content_type, schema = get("subject"), get("datacontenttype"), get("dataschema")
    if type(id_) is str and id_ and type(source) is str and source and type(type_) is str \
            and type_ and get("specversion") == SPECVERSION \
            and (subject is None or type(subject) is str) \
            and (content_type is None or type(content_type) is str) \
            and (schema is None or type(schema) is str) \
            and (time is None or _is_timestamp(time)) and attributes.keys() <= CORE_ATTRIBUTES:
        return []  # the usual event, valid at a glance: each check below passes
    problems: list[str] = []
    for name in REQUIRED_ATTRIBUTES:
        value = attributes.get(name)
        if value is None:
            problems.append(f"missing required attribute '{name}'")
        elif not isinstance(value, str) or not value:
            problems.append(f"attribute '{name}' must be a non-empty string")
    specversion = attributes.get("specversion")
    if isinstance(specversion, str) and specversion and specversion != SPECVERSION:
        problems.append(f"unsupported specversion '{specversion}' (expected '{SPECVERSION}')")
    time = attributes.get("time")
    if time is not None and not _is_timestamp(time):
        problems.append(f"attribute 'time' must be an RFC 3339 timestamp, got {time!r}")
    for name in ("subject", "datacontenttype", "dataschema"):
        value = attributes.get(name)
        if value is not None and not isinstance(value, str):
            problems.append(f"attribute '{name}' must be a string")
    if attributes.keys() <= CORE_ATTRIBUTES:
        return problems  # no extensions (the usual case)
    for name, value in attributes.items():
        if name in CORE_ATTRIBUTES:
            continue
        if name in _RESERVED:
            problems.append(f"'{name}' is reserved for the event data, not an attribute")
        elif not _EXTENSION_NAME.match(name):
            problems.append(
                f"extension attribute name '{name}' must be 1-20 lowercase letters or digits"
            )
        if not isinstance(value, (str, int, bool)):
            problems.append(f"extension attribute '{name}' must be a string, integer or boolean")
    return problems


def new_traceparent() -> str:
    """A fresh W3C trace context (version 00, sampled)."""
    while True:
        ids = os.urandom(24).hex()  # a 16-byte trace id and an 8-byte parent id
        trace_id, parent_id = ids[:32], ids[32:]
        if trace_id != _ZERO_TRACE and parent_id != _ZERO_PARENT:  # all zeros: invalid
            return f"00-{trace_id}-{parent_id}-01"


def ensure_traceparent(event: Event) -> Event:
    """The event itself if it carries a trace context, else a copy that starts one."""
    return event if event.traceparent else event.with_extensions(traceparent=new_traceparent())
