"""Backends for the contract scenarios, and the parity matrix printed after the run."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from handlers.core.app import load_app
from tests.contract.backends import Backend, LocalBackend

#: `local+processes`: the local runtime with a worker process running the handlers
#: ahead of the write lock (`adapters.local.offload`).
BACKENDS = ["local", "local+processes", "aws", "gcp"]
MakeBackend = Callable[..., Backend]


@pytest.fixture(scope="session")
def gcp_emulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Google's Pub/Sub and Firestore emulators (and workflows-emulators on demand), once
    per session; a missing gcloud, Java or workflows-emulator fails with what to install."""
    from tests.gcp.conftest import Processes, start_emulators
    from tests.gcp.contract_backend import Emulators

    base = tmp_path_factory.mktemp("contract-gcp")
    procs = Processes(base)
    try:
        pubsub_host, firestore_host = start_emulators(procs)
        yield Emulators(pubsub_host, firestore_host, procs, base)
    finally:
        procs.stop_all()


@contextmanager
def _platform(name: str) -> Iterator[None]:
    """What a backend's stand-ins need around a test (moto's in-process AWS account)."""
    if name == "aws":
        from tests.aws.conftest import moto_account
        from tests.aws.moto_stack import fast_saga_retries

        with moto_account(), fast_saga_retries():
            yield
    else:
        yield


@pytest.fixture(params=BACKENDS)
def make_backend(request: pytest.FixtureRequest, tmp_path) -> Iterator[MakeBackend]:
    """`make_backend(fault=None)`: a fresh backend hosting the order system, or the
    variant named `fault` in tests/contract/faulty_apps.py."""
    made: list[Any] = []

    def make(fault: str | None = None) -> Backend:
        spec = f"tests.contract.faulty_apps:{fault}" if fault else None
        app = load_app(spec)
        backend: Any
        if request.param.startswith("local"):
            # By name: a worker process imports the same app.
            backend = LocalBackend(tmp_path / f"b{len(made)}", app=spec,
                                   processes=1 if request.param == "local+processes" else 0)
        elif request.param == "gcp":
            from tests.gcp.contract_backend import GcpBackend

            backend = GcpBackend(app, request.getfixturevalue("gcp_emulators"))
        else:
            from tests.aws.contract_backend import AwsBackend

            backend = AwsBackend(app, prefix=f"c{len(made)}")
        made.append(backend)
        return backend

    with _platform(request.param):
        yield make
        for backend in made:
            backend.close()


_RESULTS: dict[str, dict[str, str]] = defaultdict(dict)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    callspec = getattr(item, "callspec", None)
    if callspec is None or "make_backend" not in callspec.params:
        return
    backend = callspec.params["make_backend"]
    scenario = item.name.split("[")[0].removeprefix("test_")
    extra = [part for part in callspec.id.split("-") if part != backend]
    if extra:
        scenario += f"[{','.join(extra)}]"
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        state = "xfail" if hasattr(report, "wasxfail") else report.outcome
        _RESULTS[scenario][backend] = state


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _RESULTS:
        return
    backends = [b for b in BACKENDS if any(b in row for row in _RESULTS.values())]
    width = max(len(s) for s in _RESULTS)
    terminalreporter.write_sep("=", "contract parity matrix (scenario x backend)")
    terminalreporter.write_line(f"{'scenario':<{width}}  " + "  ".join(
        f"{b:<{max(7, len(b))}}" for b in backends))
    for scenario in sorted(_RESULTS):
        row = _RESULTS[scenario]
        terminalreporter.write_line(f"{scenario:<{width}}  " + "  ".join(
            f"{row.get(b, '-'):<{max(7, len(b))}}" for b in backends))
