"""The operations on the embedded runtime's SQLite database.

Dead letters are the `dlq` table; a redrive puts each selected row back on its
consumer's queue (or resumes its saga) and marks it redriven in the same transaction,
so a row is redriven at most once. Replay re-enqueues events from the event log (the
local bus keeps every event) for the consumers that consume them; consumers record
(consumer, source, id) so a replay of processed events has no effect.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from adapters.local.runtime import Runtime
from adapters.ops.model import (
    ConsumerStatus,
    DeadLetter,
    OpsError,
    RedriveResult,
    ReplayResult,
    Selection,
)

_RECENT = 5


def _iso(epoch: float | None) -> str | None:
    return datetime.fromtimestamp(epoch, UTC).isoformat() if epoch else None


class LocalOps:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def _names(self) -> list[str]:
        return [*self.runtime.app.consumer_names(), f"saga:{self.runtime.app.saga.name}"]

    def dead_letters(self, selection: Selection) -> list[DeadLetter]:
        selection.consumers(self._names())  # an unknown consumer is an error, not "none"
        letters = [
            DeadLetter(consumer=e["consumer"], event_id=e["event_id"], type=e["type"],
                       reason=e["reason"], attempts=e["attempts"], location=f"dlq#{e['dlq_id']}",
                       failed_at=_iso(e["failed_at"]), event=e["event"],
                       details={"dlq_id": e["dlq_id"]})
            for e in self.runtime.dlq(consumer=selection.consumer)]
        return [letter for letter in letters if selection.matches(letter)]

    def redrive(self, selection: Selection, dry_run: bool = False) -> RedriveResult:
        letters = self.dead_letters(selection)
        if dry_run:
            return RedriveResult(letters, dry_run=True)
        wanted = {letter.details["dlq_id"]: letter for letter in letters}
        done = self._redrive_rows(list(wanted))
        return RedriveResult([wanted[did] for did in done])

    def _redrive_rows(self, dlq_ids: list[int]) -> list[int]:
        return self.runtime.redrive(ids=dlq_ids) if dlq_ids else []

    def status(self) -> list[ConsumerStatus]:
        db = self.runtime.db
        out = []
        now = time.time()
        for name in self._names():
            queued = db.read("SELECT COUNT(*), SUM(visible_at > ? AND attempts > 0) FROM queue "
                             "WHERE consumer = ?", (now, name))[0]
            dead = db.read("SELECT COUNT(*) FROM dlq WHERE consumer = ? AND redriven_at IS "
                           "NULL", (name,))[0][0]
            recent = db.read("SELECT event_type, outcome, detail FROM timeline WHERE consumer "
                             "= ? AND outcome IN ('retry', 'dead-lettered') ORDER BY seq DESC "
                             "LIMIT ?", (name, _RECENT))
            in_flight = int(queued[1] or 0)
            out.append(ConsumerStatus(
                consumer=name, backlog=int(queued[0]) - in_flight, in_flight=in_flight,
                dead_letters=int(dead),
                recent_failures=[f"{t} {o}: {d}" for t, o, d in recent]))
        return out

    def replay(self, start: datetime, end: datetime, types: Sequence[str] = (),
               dry_run: bool = False) -> ReplayResult:
        if start > end:
            raise OpsError(f"--from {start.isoformat()} is after --to {end.isoformat()}")
        unknown = [t for t in types if self.runtime.app.catalog.get(t) is None]
        if unknown:
            raise OpsError(f"unknown event type(s): {', '.join(unknown)}")
        sql = ("SELECT seq, type, body FROM events WHERE accepted_at >= ? AND accepted_at <= ?")
        params: list[Any] = [start.timestamp(), end.timestamp()]
        if types:
            sql += f" AND type IN ({','.join('?' * len(types))})"
            params.extend(types)
        rows = self.runtime.db.read(sql + " ORDER BY seq", tuple(params))
        deliveries = [(c.name, seq, body) for seq, type_, body in rows
                      for c in self.runtime.app.routes(type_)]
        details = {"events": len(rows), "deliveries": len(deliveries)}
        window = f"{start.isoformat()} .. {end.isoformat()}"
        if dry_run:
            return ReplayResult(f"would replay {len(rows)} events ({len(deliveries)} "
                                f"deliveries) from {window}", len(rows), True, details)
        now = time.time()
        with self.runtime.db.write() as conn:
            conn.executemany("INSERT INTO queue (consumer, event_seq, body, visible_at, "
                             "enqueued_at) VALUES (?, ?, ?, ?, ?)",
                             [(c, seq, body, now, now) for c, seq, body in deliveries])
        self.runtime.wake()
        return ReplayResult(f"replayed {len(rows)} events ({len(deliveries)} deliveries) "
                            f"from {window}", len(rows), False, details)
