"""Golden files: Lambda's SQS records (`tests/events/aws/sqs-record-*.json`) in, Event out.

Each file says why it exists; `expected` is the Event the entry must hand the engine,
`error` the fragments a permanent error must name.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from adapters.aws.lambda_entry import decode_sqs_record
from handlers.app import APP
from handlers.core.errors import PermanentError
from handlers.core.events import Event

GOLDEN = Path(__file__).resolve().parents[1] / "events" / "aws"
FILES = sorted(GOLDEN.glob("sqs-record-*.json"))


def _event(expected: dict[str, Any]) -> Event:
    return Event(**expected)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_sqs_record_golden(path: Path) -> None:
    case = json.loads(path.read_text())
    assert case["kind"] == "sqs_record" and case["why"]
    runtime: Any = SimpleNamespace(app=APP)
    if "error" in case:
        with pytest.raises(PermanentError) as caught:
            decode_sqs_record(case["input"], runtime)
        for fragment in case["error"]:
            assert fragment in str(caught.value)
        return
    assert decode_sqs_record(case["input"], runtime) == _event(case["expected"])


def test_there_are_golden_files() -> None:
    assert len(FILES) >= 3
