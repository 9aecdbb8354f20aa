"""What a handler may use: the `Context` a consumer's handler gets, and a saga step's.

Handlers are typed against these protocols, not against the engine's classes that
implement them (`engine.HandlerContext`, `engine.StepHandlerContext`), so the surface a
handler sees is exactly what is listed here. Reads go straight to the store; writes,
emitted events, notifications and saga starts are buffered and applied by the engine
with the idempotency record, atomically, after the handler returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from handlers.core.events import Event
from handlers.core.ports import PaymentGateway


class Context(Protocol):
    """A consumer's view of one delivery."""

    @property
    def event(self) -> Event:
        """The event being handled."""
        ...

    @property
    def buckets(self) -> tuple[str, ...]:
        """The buckets this consumer declares (and so may read)."""
        ...

    # reads ------------------------------------------------------------------
    def get(self, table: str, key: str) -> dict[str, Any] | None: ...

    def scan(self, table: str) -> list[dict[str, Any]]:
        """Every item of a table the consumer declares in `scans` (audits only)."""
        ...

    def read_blob(self, bucket: str, key: str) -> bytes:
        """An object from a bucket the consumer declares."""
        ...

    def now_iso(self) -> str:
        """The clock port's time, ISO 8601 with milliseconds, in UTC (`Z`)."""
        ...

    # buffered writes --------------------------------------------------------
    def put_if_absent(self, table: str, key: str, item: Mapping[str, Any]) -> None: ...

    def put(self, table: str, key: str, item: Mapping[str, Any]) -> None: ...

    def update(self, table: str, key: str, **kwargs: Any) -> None:
        """A conditional change (the fields of `ports.Update`)."""
        ...

    # buffered effects -------------------------------------------------------
    def emit(self, type_: str, data: Mapping[str, Any], subject: str | None = None,
             id: str | None = None) -> Event:
        """Publish an event of a catalog type after the handler's writes commit."""
        ...

    def notify(self, message: Mapping[str, Any]) -> None: ...

    def start_saga(self, saga_id: str, input: Mapping[str, Any]) -> None: ...


class StepContext(Context, Protocol):
    """A saga step's view: the saga so far, the step's idempotency key, the payments port."""

    @property
    def saga_id(self) -> str: ...

    @property
    def state(self) -> Mapping[str, Any]: ...

    @property
    def idempotency_key(self) -> str:
        """`<saga id>:<step>:<phase>`: the same on every retry of this step."""
        ...

    @property
    def payments(self) -> PaymentGateway: ...

    def result_of(self, step: str) -> Mapping[str, Any]: ...
