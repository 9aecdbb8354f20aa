"""The SagaStarter port on Step Functions: one execution per saga id.

A saga id starts one execution, ever. The saga-start registry (table `sagas`) records
each start and is checked first: it has no expiry, while Step Functions only refuses a
second execution of a name (`ExecutionAlreadyExists`) for 90 days after the first closed.
The execution name is derived from the saga id, which covers the gap between starting and
recording (a crash there is retried: the restart is refused by name and then recorded).
The input is serialised canonically, so a retried start of a *running* execution, which
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
from handlers.core.ports import SAGAS, Store

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


def saga_traceparent(saga_id: str) -> str:
    """A W3C traceparent for a saga started without one, the same for every start of
    that saga (sampled, version 00)."""
    digest = hashlib.sha256(f"switchyard-saga:{saga_id}".encode()).hexdigest()
    return f"00-{digest[:32]}-{digest[32:48]}-01"


class StepFunctionsStarter:
    def __init__(self, client: Any, state_machine_arn: str, store: Store) -> None:
        self._client = client
        self._arn = state_machine_arn
        self._store = store

    def start(self, saga_id: str, input: Mapping[str, Any], traceparent: str | None) -> bool:
        if self._store.get(SAGAS, saga_id) is not None:
            return False
        started = self._start_execution(saga_id, input, traceparent)
        self._store.put_if_absent(SAGAS, saga_id, {
            "saga_id": saga_id, "execution": execution_name(saga_id),
            "state_machine": self._arn})
        return started

    def _start_execution(self, saga_id: str, input: Mapping[str, Any],
                         traceparent: str | None) -> bool:
        # A saga whose trigger carried no trace context (a seed PutEvents entry) gets one
        # derived from its id: every step and event it emits can then be correlated, and
        # a retried start sends the very same input.
        payload = json.dumps(execution_input(saga_id, dict(input),
                                             traceparent or saga_traceparent(saga_id)),
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
