"""The SagaStarter port on Step Functions: one execution per saga id.

The execution name is derived from the saga id, and Step Functions refuses a second
execution of a name (`ExecutionAlreadyExists`, for 90 days after the first closed): that is
what makes a duplicate `Workflow Triggered` or a redelivered `Order Created` a no-op. The
input is serialised canonically, so a retried start of a *running* execution, which
STANDARD workflows answer with the same execution instead of an error, is the same too.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any, Final

from adapters.aws.asl import execution_input
from handlers.core.errors import TransientError

MAX_NAME: Final = 80
_INVALID: Final = re.compile(r"[^A-Za-z0-9_-]")


def execution_name(saga_id: str) -> str:
    """A valid, deterministic execution name (letters, digits, - and _, at most 80).

    Ids that are already valid are used as they are, so executions are easy to find;
    anything else is folded and suffixed with a hash, so two ids never share a name.
    """
    if saga_id and len(saga_id) <= MAX_NAME and not _INVALID.search(saga_id):
        return saga_id
    digest = hashlib.sha256(saga_id.encode()).hexdigest()[:16]
    folded = _INVALID.sub("_", saga_id)[: MAX_NAME - len(digest) - 1]
    return f"{folded}-{digest}"


class StepFunctionsStarter:
    def __init__(self, client: Any, state_machine_arn: str) -> None:
        self._client = client
        self._arn = state_machine_arn

    def start(self, saga_id: str, input: Mapping[str, Any], traceparent: str | None) -> bool:
        payload = json.dumps(execution_input(saga_id, dict(input), traceparent),
                             sort_keys=True, separators=(",", ":"))
        try:
            self._client.start_execution(stateMachineArn=self._arn,
                                         name=execution_name(saga_id), input=payload)
        except Exception as error:
            code = getattr(error, "response", {}).get("Error", {}).get("Code")
            if code == "ExecutionAlreadyExists":
                return False
            raise TransientError(f"StartExecution for saga {saga_id!r} failed: "
                                 f"{code or type(error).__name__}: {error}") from error
        return True
