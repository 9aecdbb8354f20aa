"""The SagaStarter port on Cloud Workflows: one execution per saga id, started once.

Workflows has no client-chosen execution id, so "once" is made here with a claim in the
store before the execution is created:

1. `put_if_absent(saga_starts/<saga id>, {status: starting})`: whoever creates the claim
   creates the execution, then marks the claim `started` with the execution's name.
2. A caller that finds the claim `started` returns False (already started).
3. A caller that finds a fresh `starting` claim raises TransientError: the claimant is
   still at it, so the delivery is retried later and then sees `started`.
4. A `starting` claim older than the lease (the claimant crashed between 1 and the end
   of 1) is taken over with a conditional update, and the execution is created again.

Only step 4 can start a second execution (when the crash came after the execution was
created); every saga step is idempotent under (saga id, step, phase), so a second
execution replays recorded step results and causes no second effect.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final, Protocol

from handlers.core.errors import PermanentError, TransientError
from handlers.core.events import new_traceparent
from handlers.core.ports import SAGAS, Clock, Store, Update

STARTS: Final = SAGAS  # the app's saga-start registry
LEASE_S: Final = 120.0


class ExecutionsApi(Protocol):
    def create(self, argument: Mapping[str, Any]) -> str:
        """Create one execution of the workflow; returns its resource name."""
        ...


class RestExecutionsApi:
    """`executions.create` of the Workflow Executions REST API.

    `base_url` points at workflowexecutions.googleapis.com, or at a workflows-emulator
    (then requests are anonymous, as the emulators of the Google clients are).
    """

    def __init__(self, project: str, region: str, workflow: str, *,
                 base_url: str = "https://workflowexecutions.googleapis.com",
                 session_factory: Callable[[], Any] | None = None,
                 timeout_s: float = 60.0) -> None:
        self.url = (f"{base_url.rstrip('/')}/v1/projects/{project}/locations/{region}/"
                    f"workflows/{workflow}/executions")
        self._session_factory = session_factory or _google_session
        self._session: Any = None
        self._timeout = timeout_s

    def create(self, argument: Mapping[str, Any]) -> str:
        if self._session is None:
            self._session = self._session_factory()
        try:
            response = self._session.post(
                self.url, json={"argument": json.dumps(dict(argument))}, timeout=self._timeout)
        except Exception as error:  # noqa: BLE001 - network trouble is worth a retry
            raise TransientError(f"creating a workflow execution failed: {error}") from error
        if response.status_code in (429,) or response.status_code >= 500:
            raise TransientError(f"workflow executions API said {response.status_code}: "
                                 f"{response.text[:500]}")
        if response.status_code >= 400:
            raise PermanentError(f"workflow executions API refused the execution "
                                 f"({response.status_code}): {response.text[:500]}")
        body = response.json() if response.content else {}
        return str(body.get("name", "") if isinstance(body, dict) else "")


def _google_session() -> Any:
    import google.auth
    from google.auth.transport.requests import AuthorizedSession

    credentials, _ = google.auth.default(
        scopes=["https://www.googleapis.com/auth/cloud-platform"])
    return AuthorizedSession(credentials)


def anonymous_session() -> Any:
    import requests

    return requests.Session()


class WorkflowsSagaStarter:
    def __init__(self, store: Store, clock: Clock, api: ExecutionsApi,
                 lease_s: float = LEASE_S) -> None:
        self._store = store
        self._clock = clock
        self._api = api
        self._lease_s = lease_s

    def start(self, saga_id: str, input: Mapping[str, Any], traceparent: str | None) -> bool:
        now = self._clock.now()
        claim = {"saga_id": saga_id, "status": "starting", "claimed_at": now.isoformat()}
        if not self._store.put_if_absent(STARTS, saga_id, claim):
            existing = self._store.get(STARTS, saga_id) or {}
            if existing.get("status") == "started":
                return False
            claimed_at = existing.get("claimed_at")
            if not self._stale(claimed_at, now):
                raise TransientError(f"saga {saga_id!r} is being started by another delivery")
            taken = self._store.transact([Update(
                STARTS, saga_id, set={"claimed_at": now.isoformat()},
                expect={"status": "starting", "claimed_at": claimed_at}, must_exist=True)])
            if not taken:
                raise TransientError(f"saga {saga_id!r} start claim changed under us")
        # A saga whose trigger carried no trace context starts its own, so every step
        # and every event it emits can be correlated.
        execution = self._api.create({"saga_id": saga_id, "input": dict(input),
                                      "traceparent": traceparent or new_traceparent()})
        self._store.transact([Update(STARTS, saga_id, set={
            "status": "started", "execution": execution,
            "started_at": self._clock.now().isoformat()})])
        return True

    def _stale(self, claimed_at: Any, now: datetime) -> bool:
        try:
            then = datetime.fromisoformat(str(claimed_at))
        except ValueError:
            return True
        return (now - then).total_seconds() > self._lease_s
