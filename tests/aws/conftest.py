"""moto for the AWS tests: in-process, fake credentials, nothing can reach a real account.

Step Functions executions really run (`execute_state_machine`) in moto's interpreter.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from moto import mock_aws

from tests.aws.moto_stack import REGION

_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION}


@contextmanager
def moto_account() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        for key, value in _ENV.items():
            patch.setenv(key, value)
        patch.delenv("AWS_PROFILE", raising=False)
        with mock_aws(config={"stepfunctions": {"execute_state_machine": True},
                              "lambda": {"use_docker": False}}):
            yield


@pytest.fixture
def aws() -> Iterator[None]:
    """A fresh moto account for one test."""
    with moto_account():
        yield


@pytest.fixture(scope="module")
def aws_module() -> Iterator[None]:
    """One moto account shared by a module's tests (they use distinct ids)."""
    with moto_account():
        yield
