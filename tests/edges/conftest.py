"""moto for the Lambda edges: the same fresh, fake-credentialed account tests/aws uses."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.aws.conftest import moto_account


@pytest.fixture(scope="module")
def aws_module() -> Iterator[None]:
    """One account per module: the edge tests change nothing in it (that is the point,
    and each test checks it), so tables and queues are created once."""
    with moto_account():
        yield
