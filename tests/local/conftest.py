from __future__ import annotations

from collections.abc import Iterator

import pytest

from adapters.local.runtime import Runtime, RuntimeSettings


@pytest.fixture()
def runtime(tmp_path) -> Iterator[Runtime]:
    rt = Runtime(tmp_path / "test.db", settings=RuntimeSettings(retry_scale=0.001))
    yield rt
    rt.close()
