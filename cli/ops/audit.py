"""The record of discarded dead letters on the clouds: one JSON line per letter in a file.

SQS and Pub/Sub keep nothing once a message is deleted or acked, so `dlq discard|purge`
on a deployed stack writes the letter (event, reason, attempts, where it sat), who
discarded it (the OS user) and when to a JSON-lines file before it deletes anything:
`switchyard-discards.jsonl` in the working directory unless `--audit-log PATH` says
otherwise. Each line is flushed and fsynced before the delete, so a crash can leave a
line for a letter that was not deleted yet, never a deleted letter without its line; a
delete that fails adds a second line for the same letter with `"outcome": "failed"`.
(The local runtime keeps the same record in its database, table `dlq_discarded`.)

Both clouds document that a delete can, rarely, not stick: SQS may return a message
after DeleteMessage (a server holding a copy was unavailable), and a Pub/Sub subscription
without exactly-once delivery may redeliver a message after a successful ack. A letter
that comes back is listed again by `dlq list`; discarding it again adds a second line.
"""

from __future__ import annotations

import getpass
import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from cli.ops.model import DeadLetter, OpsError, PlatformError

DEFAULT_AUDIT_LOG: Final = "switchyard-discards.jsonl"


def operator() -> str:
    """Who runs the command: the OS login name (`getpass.getuser`), else the uid."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no LOGNAME/USER and no passwd entry (some containers)
        return f"uid:{os.getuid()}"


class JsonLinesAudit:
    def __init__(self, path: str | Path, stack: str) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        self.stack = stack
        if self.path.is_dir():
            raise OpsError(f"--audit-log {self.path} is a directory; give a file path")
        if not self.path.parent.is_dir():
            raise OpsError(f"--audit-log {self.path}: folder {self.path.parent} does not "
                           "exist")

    def record(self, letters: Sequence[DeadLetter], by: str, outcome: str,
               error: str | None = None) -> None:
        if not letters:
            return
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        lines = []
        for letter in letters:
            line = {"discarded_at": now, "discarded_by": by, "outcome": outcome,
                    "stack": self.stack, **letter.to_dict()}
            if error:
                line["error"] = error
            lines.append(json.dumps(line, default=str, ensure_ascii=False) + "\n")
        try:
            with open(self.path, "a", encoding="utf-8") as out:
                out.writelines(lines)
                out.flush()
                os.fsync(out.fileno())
        except OSError as failure:
            # Written before any delete: if the record cannot be kept, nothing goes.
            consequence = "; nothing was discarded" if outcome == "discarded" else ""
            raise PlatformError(f"cannot write the discard record to {self.path}: "
                           f"{failure.strerror or failure}{consequence}") from None
