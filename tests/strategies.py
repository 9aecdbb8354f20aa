"""Hypothesis strategies for CloudEvents, shared by every binding's round-trip tests."""

from __future__ import annotations

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
