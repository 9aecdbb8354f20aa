"""Hypothesis strategies for CloudEvents, shared by every binding's round-trip tests."""

from __future__ import annotations

import json
from datetime import datetime

from hypothesis import strategies as st

from handlers.core.events import CORE_ATTRIBUTES

# Any Unicode but lone surrogates (not encodable): non-ASCII, spaces, quotes, '%', controls.
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=24)
# Valid RFC 3339 timestamps in the spellings the spec allows (fractions, offsets, z/t).
RFC3339 = st.builds(
    lambda dt, frac, tz, t, z: dt.strftime(f"%Y-%m-%d{t}%H:%M:%S") + frac + (z if tz is None
                                                                           else tz),
    st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 31)),
    st.sampled_from(["", ".5", ".123", ".123456789"]),
    st.none() | st.sampled_from(["+00:00", "-05:30", "+14:00"]),
    st.sampled_from(["T", "t"]),
    st.sampled_from(["Z", "z"]),
)
EXTENSION_NAMES = st.from_regex(r"[a-z0-9]{1,20}", fullmatch=True).filter(
    lambda n: n not in CORE_ATTRIBUTES and n != "data"
)
EXTENSIONS = st.dictionaries(EXTENSION_NAMES, TEXT, max_size=4)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


# --- data by content type (the data codec, handlers/core/wire/data.py) -----------------

JSON_TYPES = ["application/json", "application/json; charset=utf-8", "text/json",
              "application/vnd.switchyard.order+json"]
TEXT_TYPES = ["text/plain", "text/plain; charset=utf-8", "text/csv", "application/xml",
              "image/svg+xml"]
BYTES_TYPES = ["application/octet-stream", "image/png", "application/protobuf"]
ODD_TYPES = ["application/cloudevents+json", "text/plain; charset=latin-1", " text/plain",
             "tëxt/plain", "", "application/x-unknown; charset=bogus-charset"]


def _not_json(body: bytes) -> bool:
    try:
        json.loads(body)
    except (ValueError, RecursionError):
        return True
    return False


# (datacontenttype, data) pairs that binary mode carries exactly.
BINARY_DATA = st.one_of(
    st.tuples(st.none(), JSON_VALUES),
    st.tuples(st.none(), st.binary(min_size=1, max_size=32).filter(_not_json)),
    st.tuples(st.sampled_from(JSON_TYPES), JSON_VALUES),
    st.tuples(st.sampled_from(TEXT_TYPES), st.none() | TEXT),
    st.tuples(st.sampled_from(BYTES_TYPES), st.none() | st.binary(min_size=1, max_size=32)),
)
