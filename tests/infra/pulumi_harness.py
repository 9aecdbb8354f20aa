"""Run the Pulumi program under mocks and record everything it registers (for the tests).

The machinery is product code in `infra/synth.py` (it also backs `switchyard synth`); this
module re-exports it under the names the infra tests use. See that module for `run_program`,
`Recorded`, the fakes and their extension points (`fake=`, `calls=`, `app=`).

A test may load this file by path before the repository is on sys.path (to run the program
the way Pulumi does, where `infra/__main__.py` adds it): `infra/synth.py` imports nothing
from `infra`, so it is then loaded by path too, under a private module name.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("infra") is not None:
    from infra import synth as _synth
else:  # pragma: no cover - exercised by tests/infra/test_program.py in a subprocess
    _path = Path(__file__).resolve().parents[2] / "infra" / "synth.py"
    _spec = importlib.util.spec_from_file_location("_switchyard_synth", _path)
    assert _spec is not None and _spec.loader is not None, _path
    _synth = sys.modules["_switchyard_synth"] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_synth)

FAKE_ACCOUNT = _synth.FAKE_ACCOUNT
FAKE_PROJECT_NUMBER = _synth.FAKE_PROJECT_NUMBER
NAMESPACE = _synth.NAMESPACE
PROJECT = _synth.PROJECT
CallFake = _synth.CallFake
Fake = _synth.Fake
FakeContext = _synth.FakeContext
FakeState = _synth.FakeState
Recorded = _synth.Recorded
RecordedCall = _synth.RecordedCall
RecordedResource = _synth.RecordedResource
default_call = _synth.default_call
default_fake = _synth.default_fake
qualify = _synth.qualify
run_program = _synth.run_program

__all__ = [
    "FAKE_ACCOUNT",
    "FAKE_PROJECT_NUMBER",
    "FakeContext",
    "FakeState",
    "Recorded",
    "RecordedCall",
    "RecordedResource",
    "default_call",
    "default_fake",
    "qualify",
    "run_program",
]
