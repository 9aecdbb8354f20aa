"""argparse types for the `switchyard` command line: each refuses bad input in one line.

An `argparse.ArgumentTypeError` raised here becomes `switchyard CMD: error: argument
--opt: <message>` and exit 2 (argparse names the option, so messages do not). argparse
also runs a type on a string default, so a bad
environment default (SWITCHYARD_DB, SWITCHYARD_PAYMENT_DECLINE_ABOVE) is refused the same
way, before anything starts.
"""

from __future__ import annotations

import argparse
import math
import os
import urllib.parse
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path


def positive_int(text: str) -> int:
    return _at_least(text, 1)


def non_negative_int(text: str) -> int:
    return _at_least(text, 0)


def _at_least(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse_error(f"{text!r} is not a whole number") from None
    if value < least:
        raise argparse_error(f"must be at least {least}, got {value}")
    return value


def seconds(allow_zero: bool = False) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse_error(f"{text!r} is not a number of seconds") from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
            raise argparse_error(f"must be {'>= 0' if allow_zero else '> 0'} "
                                 f"seconds, got {text!r}")
        return value
    return parse


def amount(env: str | None = None) -> Callable[[str], str]:
    """A non-negative money amount with at most two decimals, kept as text for
    `handlers.money.to_cents` (which would silently round a third decimal)."""
    origin = f" (check {env})" if env else ""

    def parse(text: str) -> str:
        try:
            value = Decimal(text.strip())
        except InvalidOperation:
            raise argparse_error(f"{text!r} is not an amount, e.g. 1000.00{origin}") \
                from None
        exponent = value.as_tuple().exponent
        if not value.is_finite() or value < 0 or not isinstance(exponent, int) \
                or exponent < -2:
            raise argparse_error(f"{text!r} must be a non-negative amount with at most two "
                                 f"decimals, e.g. 1000.00{origin}")
        return text.strip()
    return parse


def nonempty(env: str | None = None) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if not text.strip():
            raise argparse_error("must not be empty" + (f" (check {env})" if env else ""))
        return text
    return parse


def http_url(text: str) -> str:
    parts = urllib.parse.urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse_error(f"{text!r} is not an http(s) URL, e.g. http://127.0.0.1:8080")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as error:
        raise argparse_error(f"{text!r}: {error}") from None
    return text.strip()


def directory(text: str) -> str:
    """A folder that exists, or that can be created (its nearest existing parent is a
    writable folder). Nothing is created here: the runtime creates it when it starts."""
    if not text.strip():
        raise argparse_error("must not be empty")
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise argparse_error(f"{text} exists and is not a folder")
        if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
            raise argparse_error(f"folder {text} is not readable and writable by "
                                 "this user")
        return str(path)
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise argparse_error(f"cannot create {text}: {parent} is not a writable "
                             "folder")
    return str(path)


def argparse_error(message: str) -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(message)
