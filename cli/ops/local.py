"""The operations on the embedded runtime's SQLite database.

Dead letters are the `dlq` table; a redrive puts each selected row back on its
consumer's queue (or resumes its saga) and marks it redriven in the same transaction,
so a row is redriven at most once. A discard moves each selected row to the table
`dlq_discarded` (with who and when) in one transaction: it is neither redriven nor counted
again. Replay re-enqueues events from the event log (the local bus keeps every event) for
the consumers that consume them; consumers record (consumer, source, id) so a replay of
processed events has no effect, and a replayed event that fails again with the reason of
its open dead letter is not dead-lettered a second time (see `adapters.local.runtime`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from adapters.local.runtime import ALREADY_DEAD_LETTERED, Runtime
from cli.ops.model import (
    AuditLog,
    ConsumerStatus,
    DeadLetter,
    DiscardResult,
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

    def discard(self, selection: Selection, by: str, audit: AuditLog | None = None,
                dry_run: bool = False) -> DiscardResult:
        letters = self.dead_letters(selection)
        record = f"table dlq_discarded of {self.runtime.db.path}"
        if dry_run:
            return DiscardResult(letters, dry_run=True, record=record)
        wanted = {letter.details["dlq_id"]: letter for letter in letters}
        if audit is not None:  # an extra copy, when the operator asked for one
            audit.record(letters, by, "discarded")
            record += f" and {audit.location}"
        done = self.runtime.discard(list(wanted), by)
        return DiscardResult([wanted[did] for did in done], record=record)

    def status(self) -> list[ConsumerStatus]:
        return [ConsumerStatus(**row) for row in self.runtime.consumer_status(_RECENT)]

    def replay(self, start: datetime, end: datetime, types: Sequence[str] = (),
               dry_run: bool = False, wait_s: float = 0.0) -> ReplayResult:
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
        dead = self._open_dead_letters()
        known = [(c, seq) for c, seq, body in deliveries
                 if (c, json.loads(body).get("id")) in dead]
        details = {"events": len(rows), "deliveries": len(deliveries),
                   "already_dead_lettered": len(known)}
        window = f"{start.isoformat()} .. {end.isoformat()}"
        note = (f"; {_known(len(known))}" if known else "")
        if dry_run:
            return ReplayResult(f"would replay {len(rows)} events ({len(deliveries)} "
                                f"deliveries) from {window}{note}", len(rows), True, details)
        now = time.time()
        with self.runtime.db.write() as conn:
            mark = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM timeline").fetchone()[0]
            mids = [conn.execute("INSERT INTO queue (consumer, event_seq, body, visible_at, "
                                 "enqueued_at) VALUES (?, ?, ?, ?, ?)",
                                 (c, seq, body, now, now)).lastrowid
                    for c, seq, body in deliveries]
        self.runtime.wake()
        text = (f"replayed {len(rows)} events ({len(deliveries)} deliveries) from "
                f"{window}{note}")
        if wait_s > 0 and mids:
            pairs = {(c, json.loads(body).get("id")) for c, _, body in deliveries}
            text += "\n" + self._await_replay(mids, pairs, mark, wait_s, details)
        return ReplayResult(text, len(rows), False, details)

    def _open_dead_letters(self) -> set[tuple[str, str]]:
        return {(c, e) for c, e in self.runtime.db.read(
            "SELECT consumer, event_id FROM dlq WHERE redriven_at IS NULL")}

    def _await_replay(self, mids: Sequence[int | None], pairs: set[tuple[str, str]], mark: int,
                      wait_s: float, details: dict[str, Any]) -> str:
        """Wait until a running `switchyard serve` has processed the replayed deliveries,
        then count how many failed again with their recorded reason."""
        deadline = time.monotonic() + wait_s
        marks = ",".join("?" * len(mids))
        left = len(mids)
        while time.monotonic() < deadline:
            left = int(self.runtime.db.read(
                f"SELECT COUNT(*) FROM queue WHERE mid IN ({marks})", tuple(mids))[0][0])
            if left == 0:
                break
            time.sleep(0.1)
        # Other traffic may fail meanwhile: count only the replayed (consumer, event)s.
        outcomes = [o for c, e, o in self.runtime.db.read(
            "SELECT consumer, event_id, outcome FROM timeline WHERE seq > ? AND outcome IN "
            "(?, 'dead-lettered')", (mark, ALREADY_DEAD_LETTERED)) if (c, e) in pairs]
        again = outcomes.count(ALREADY_DEAD_LETTERED)
        new = outcomes.count("dead-lettered")
        details.update(failed_again=again, newly_dead_lettered=new, still_queued=left)
        lines = [f"{_plural(again, 'replayed event', 'replayed events')} failed again with "
                 f"{'its' if again == 1 else 'their'} recorded reason; already dead-lettered",
                 f"{_plural(new, 'replayed event', 'replayed events')} newly dead-lettered"]
        if left:
            lines.append(f"{left} replayed deliveries still queued after {wait_s:g}s "
                         "(is `switchyard serve` running on this database?)")
        return "\n".join(lines)


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _known(n: int) -> str:
    return (f"{_plural(n, 'delivery is of an event', 'deliveries are of events')} already "
            "dead-lettered by that consumer: failing again with the recorded reason, "
            f"{'it is' if n == 1 else 'they are'} not dead-lettered a second time")
