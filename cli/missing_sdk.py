"""One line saying what to install when a command needs an SDK the environment lacks.

`make demo` installs only the base package (the local runtime needs nothing else), while
`switchyard synth` / `cost` run the Pulumi program and the operations commands on a
deployed stack talk to AWS or Google Cloud. Those import their SDKs lazily; when one is
missing they must say which extra to install, in one line, instead of a traceback.
Only imports of the SDKs below are translated: any other `ImportError` is a bug and
propagates as such. Both forms of a missing SDK count: `ModuleNotFoundError` (nothing of it
installed) and `ImportError` "cannot import name 'pubsub_v1' from 'google.cloud'" (the
`google` namespace exists because another package, such as protobuf, put something in it).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final

#: The exit status of a command that cannot run for lack of an SDK (as for other
#: environment problems of these commands, such as a missing Pulumi CLI).
EXIT_MISSING_SDK: Final = 2


@dataclass(frozen=True, slots=True)
class _Sdk:
    what: str  # how the message names it
    extras: str  # the pyproject.toml extras that install it


# Top-level module -> the SDK it belongs to. pyyaml comes with the pulumi SDK and is
# read only by the Pulumi-side code (stack files, the program).
_SDKS: Final[dict[str, _Sdk]] = {
    "pulumi": _Sdk("the Pulumi SDKs", "aws,gcp"),
    "pulumi_aws": _Sdk("the Pulumi SDKs", "aws,gcp"),
    "pulumi_gcp": _Sdk("the Pulumi SDKs", "aws,gcp"),
    "yaml": _Sdk("the Pulumi SDKs", "aws,gcp"),
    "boto3": _Sdk("the AWS SDK (boto3)", "aws"),
    "botocore": _Sdk("the AWS SDK (boto3)", "aws"),
    "google": _Sdk("the Google Cloud client libraries", "gcp"),
}


_CANNOT_IMPORT: Final = re.compile(
    r"cannot import name '(?P<name>[\w.]+)' from '(?P<module>[\w.]+)'")


class MissingSdkError(RuntimeError):
    """A command needs an SDK that is not installed; the message says what to run."""


def missing_module(error: ImportError) -> str:
    """The dotted name that could not be imported."""
    if type(error) is not ModuleNotFoundError:
        found = _CANNOT_IMPORT.search(str(error))
        if found:
            return f"{found['module']}.{found['name']}"
    return error.name or ""


def hint(command: str, error: ImportError) -> str | None:
    """The one-line message for `error` raised under `switchyard COMMAND`, or None when the
    missing module is not one of the SDKs (then it is a real bug, not an install step)."""
    missing = missing_module(error)
    sdk = _SDKS.get(missing.partition(".")[0])
    if sdk is None:
        return None
    return (f"switchyard {command} needs {sdk.what} (missing: {missing}): "
            f"run `.venv/bin/pip install -e '.[{sdk.extras}]'` (or `pulumi install`)")


@contextmanager
def translated(command: str) -> Iterator[None]:
    """Turn a missing SDK inside the block into `MissingSdkError` with the hint."""
    try:
        yield
    except ImportError as error:
        message = hint(command, error)
        if message is None:
            raise
        raise MissingSdkError(message) from None


def guarded(command: str, run: Callable[[], int]) -> int:
    """Run a command; a missing SDK prints its hint on stderr and exits 2."""
    try:
        with translated(command):
            return run()
    except MissingSdkError as error:
        print(error, file=sys.stderr)
        return EXIT_MISSING_SDK
