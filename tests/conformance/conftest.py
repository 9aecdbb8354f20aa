"""moto for the AWS front door: one fresh, fake-credentialed account per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.aws.conftest import moto_account


@pytest.fixture(scope="module")
def aws_module() -> Iterator[None]:
    with moto_account():
        yield
