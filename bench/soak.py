"""Soak: 50,000+ events through a real `switchyard serve`, two SIGKILLs, then the invariants.

    .venv/bin/python -m bench.soak [--events 50000] [--clients 4] [--batch 100] [--seed 5]

Starts `switchyard serve` on 127.0.0.1 (free port, temporary database), and a few client
threads post CloudEvents batches: restocks, orders (some above the 1000.00 decline limit,
some for items that run short), workflow triggers (a few overtaking their order),
notifications; 5% of events are posted again with the same id and 1% are poison: half
are triggers for an order that never exists (accepted, then dead-lettered after
maxDeliveries), half break their schema (the front door refuses those with 400, each
posted on its own after the traffic, and nothing of them may reach the log). Twice in the middle
the server is killed with SIGKILL and restarted on the same database; clients retry every
batch until it is answered 202, so a batch committed just before a kill lands twice,
which is at-least-once and must be absorbed. Once the server is quiet, the invariants of
`tests/invariants.py` are checked on the database file and the figures printed. Exit 1
when any invariant fails or anything accepted was lost.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import re
import sqlite3
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from handlers.catalog import (
    INVENTORY_UPDATED,
    NOTIFICATION_SENT,
    ORDER_CREATED,
    WORKFLOW_TRIGGERED,
)
from handlers.core.events import Event
from handlers.core.http_binding import to_batch
from tests.factories import order_data
from tests.invariants import check, snapshot_sqlite, watch_stock
from tests.serve_process import ServeProcess, pending_work

#: Share of the events sent, by kind (before the 5% duplicates and 1% poison).
MIX = {"restock": 0.08, "order": 0.55, "trigger": 0.20, "notification": 0.17}
DUPLICATE_RATE = 0.05
POISON_RATE = 0.01
ITEMS = [f"item-{n:03d}" for n in range(50)]
#: Items restocked well below demand: their orders run out of stock.
SCARCE = set(ITEMS[-8:])
#: Retrying clients give up on a batch after this long (the server restarts in ~1-2 s).
CLIENT_PATIENCE = 120.0


@dataclass
class Workload:
    batches: list[list[Event]]
    distinct: dict[tuple[str, str], Event]
    poison: set[str]  # ids of the events that must end in the DLQ, and nothing else may
    sent_by_kind: Counter[str] = field(default_factory=Counter)
    #: Events the front door must refuse (400): posted one per request, never accepted.
    refused: list[Event] = field(default_factory=list)


def build_workload(total: int, batch_size: int, rng: random.Random) -> Workload:
    """The event stream, cut into batches: deterministic for a seed."""
    poison_n = int(total * POISON_RATE)
    duplicate_n = int(total * DUPLICATE_RATE)
    fresh_n = total - poison_n - duplicate_n
    counts = {kind: int(fresh_n * share) for kind, share in MIX.items()}
    counts["order"] += fresh_n - sum(counts.values())
    # Demand per item ~ orders * 1.5 lines * 2 units / items; scarce items get a third.
    demand = counts["order"] * 3 / len(ITEMS)
    per_restock = max(1, int(demand * 1.3 * len(ITEMS) / max(counts["restock"], 1)))

    stream: list[Event] = []
    poison: set[str] = set()
    refused: list[Event] = []
    kinds: Counter[str] = Counter()
    order_ids: list[str] = []
    pending_triggers = counts["trigger"]
    # One restock per item first, so the first orders are not all out of stock.
    initial = min(len(ITEMS), counts["restock"])
    plan = (["restock"] * (counts["restock"] - initial) + ["order"] * counts["order"]
            + ["notification"] * counts["notification"] + ["poison"] * poison_n)
    rng.shuffle(plan)
    plan = ["restock"] * initial + plan
    for n, kind in enumerate(plan):
        if kind == "restock":
            item = ITEMS[n] if n < initial else rng.choice(ITEMS)
            qty = max(1, per_restock // 3) if item in SCARCE else per_restock
            stream.append(Event.new("inventory", INVENTORY_UPDATED,
                                    {"item_id": item, "quantity": qty, "action": "restock"}))
        elif kind == "order":
            order_id = f"soak-{len(order_ids)}"
            lines = [(item, rng.randint(1, 3),
                      600.0 if rng.random() < 0.05 else rng.choice([2.5, 10.0, 40.0]))
                     for item in rng.sample(ITEMS, rng.choice([1, 1, 2]))]
            if sum(q * p for _, q, p in lines) > 1000 and len(lines) == 1:
                lines = [(lines[0][0], 2, 600.0)]
            created = Event.new("orders", ORDER_CREATED,
                                order_data(order_id, lines, customer=f"cust-{n % 997}"))
            order_ids.append(order_id)
            stream.append(created)
            if pending_triggers and rng.random() < counts["trigger"] / counts["order"]:
                trigger = Event.new("workflow", WORKFLOW_TRIGGERED,
                                    {"workflow_id": f"wf-{order_id}", "order_id": order_id})
                pending_triggers -= 1
                kinds["trigger"] += 1
                if rng.random() < 0.1:
                    stream.insert(len(stream) - 1, trigger)  # overtakes its order
                else:
                    stream.append(trigger)
        elif kind == "notification":
            stream.append(Event.new("notifications", NOTIFICATION_SENT,
                                    {"recipient": f"ops-{n % 13}", "channel": "log",
                                     "message": f"soak notice {n}"}))
        else:
            if rng.random() < 0.5:
                # Breaks its schema: the front door refuses it (400), so it is posted
                # on its own and never reaches the log.
                refused.append(Event.new("orders", ORDER_CREATED, {"order_id": f"poison-{n}"}))
            else:
                stream.append(Event.new("workflow", WORKFLOW_TRIGGERED,
                                        {"workflow_id": f"wf-ghost-{n}",
                                         "order_id": f"ghost-{n}"}))
                poison.add(stream[-1].id)
        kinds[kind] += 1
    # Orders without their share of triggers: make up the count with late triggers.
    for order_id in rng.sample(order_ids, min(pending_triggers, len(order_ids))):
        stream.append(Event.new("workflow", WORKFLOW_TRIGGERED,
                                {"workflow_id": f"wf2-{order_id}", "order_id": order_id}))
        kinds["trigger"] += 1
    # Duplicates: an event already sent, posted again later with the same id.
    for _ in range(duplicate_n):
        at = rng.randrange(1, len(stream))
        stream.insert(min(len(stream), at + rng.randint(1, 5 * batch_size)),
                      stream[rng.randrange(0, at)])
        kinds["duplicate"] += 1
    distinct = {(e.source, e.id): e for e in stream}
    batches = [stream[i:i + batch_size] for i in range(0, len(stream), batch_size)]
    return Workload(batches, distinct, poison, kinds, refused)


class Client(threading.Thread):
    """Posts its share of batches in order; retries each until 202, across restarts."""

    def __init__(self, server: ServeProcess, batches: list[list[Event]],
                 progress: Counter[str], lock: threading.Lock) -> None:
        super().__init__(daemon=True)
        self.server, self.batches, self.progress, self.lock = server, batches, progress, lock
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            conn = self.server.connection()
            for batch in self.batches:
                conn = self._post(conn, batch)
            conn.close()
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            self.error = error

    def _post(self, conn: http.client.HTTPConnection,
              batch: list[Event]) -> http.client.HTTPConnection:
        headers, body = to_batch(batch)
        deadline = time.monotonic() + CLIENT_PATIENCE
        tries = 0
        while True:
            tries += 1
            try:
                conn.request("POST", "/events", body, headers)
                response = conn.getresponse()
                reply = response.read()
                if response.status == 202:
                    accepted = json.loads(reply)["accepted"]
                    if accepted != len(batch):
                        raise AssertionError(f"202 accepted {accepted} of {len(batch)}")
                    with self.lock:
                        self.progress["events"] += len(batch)
                        self.progress["requests"] += 1
                        self.progress["retries"] += tries - 1
                    return conn
                raise AssertionError(f"HTTP {response.status}: {reply[:500]!r}")
            except (OSError, http.client.HTTPException):
                conn.close()  # the server died mid-request: a new connection, same batch
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
                conn = self.server.connection()


def _post_refused(server: ServeProcess, events: list[Event]) -> int:
    """Post each event alone; how many the server refused with 400 (as it must)."""
    refused = 0
    conn = server.connection()
    try:
        for event in events:
            headers, body = to_batch([event])
            conn.request("POST", "/events", body, headers)
            response = conn.getresponse()
            response.read()
            refused += response.status == 400
    finally:
        conn.close()
    return refused


def _reason_group(reason: str) -> str:
    """Dead-letter reasons with ids and numbers taken out, so that alike ones group."""
    reason = re.sub(r"'[^']*'", "'…'", reason)
    reason = re.sub(r"\d+(\.\d+)?", "N", reason)
    return reason[:110]


def _timeline_outcomes(db: Path) -> Counter[str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return Counter({f"{consumer}:{outcome}": n for consumer, outcome, n in conn.execute(
            "SELECT consumer, outcome, COUNT(*) FROM timeline WHERE consumer IS NOT NULL "
            "AND consumer NOT LIKE 'saga:%' GROUP BY consumer, outcome")})
    finally:
        conn.close()


def _split(batches: list[list[Event]], clients: int) -> Iterator[list[list[Event]]]:
    """Contiguous shares keep each client's order (an order before its late trigger)."""
    share = -(-len(batches) // clients)
    for n in range(clients):
        yield batches[n * share:(n + 1) * share]


def run(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    workload = build_workload(args.events, args.batch, rng)
    sent = sum(len(b) for b in workload.batches)
    print(f"soak: {sent} events in {len(workload.batches)} batches of {args.batch} "
          f"({len(workload.distinct)} distinct; {dict(workload.sent_by_kind)}), "
          f"{args.clients} clients, seed {args.seed}, serve --workers {args.workers} "
          f"--processes {args.processes}", flush=True)
    with tempfile.TemporaryDirectory(prefix="switchyard-soak-") as tmp:
        db = Path(args.db) if args.db else Path(tmp) / "soak.db"
        server = ServeProcess(db, Path(tmp) / "server.log", workers=args.workers,
                              visibility_timeout=args.visibility_timeout,
                              extra_args=("--processes", str(args.processes)))
        watch_stock(db)  # every commit that would leave stock negative is recorded
        started = time.monotonic()
        server.start()
        progress: Counter[str] = Counter()
        lock = threading.Lock()
        clients = [Client(server, share, progress, lock)
                   for share in _split(workload.batches, args.clients)]
        kills: list[dict[str, float]] = []
        try:
            for client in clients:
                client.start()
            for fraction in (1 / 3, 2 / 3):  # two SIGKILLs in the middle of the traffic
                while progress["events"] < sent * fraction and any(c.is_alive()
                                                                   for c in clients):
                    time.sleep(0.05)
                server.kill()
                at = time.monotonic() - started
                in_flight = pending_work(db)
                time.sleep(1.0)  # down for a second: clients keep retrying
                server.start()
                kills.append({"at_s": round(at, 1), "events_sent": progress["events"],
                              "work_in_flight": in_flight})
                print(f"  SIGKILL at {at:.1f}s after {progress['events']} events, "
                      f"{in_flight} deliveries/sagas in flight; restarted", flush=True)
            for client in clients:
                client.join(args.quiet_timeout)
            errors = [c.error for c in clients if c.error is not None]
            if errors:
                raise SystemExit(f"soak: a client failed: {errors[0]!r}")
            ingest_done = time.monotonic() - started
            refused = _post_refused(server, workload.refused)
            print(f"  all {sent} events accepted in {ingest_done:.1f}s; waiting for quiet",
                  flush=True)
            last = [0.0]

            def report(health: dict[str, int]) -> None:
                if time.monotonic() - last[0] > 15:
                    last[0] = time.monotonic()
                    print(f"    {time.monotonic() - started:6.0f}s queued {health['queued']}"
                          f", sagas active {health['sagas_active']}", flush=True)

            server.wait_quiet(timeout=args.quiet_timeout, poll=0.5, progress=report)
            quiet = time.monotonic() - started
        finally:
            server.stop()
        result = check(snapshot_sqlite(db), workload.distinct.values())
        outcomes = _timeline_outcomes(db)
        dead_letters = snapshot_sqlite(db, with_bus=False).dead_letters
        dead = Counter(_reason_group(d.reason) for d in dead_letters)
        log_text = (Path(tmp) / "server.log").read_text(errors="replace")
        tracebacks = log_text.count("Traceback")

    figures = result.figures
    duplicates = sum(n for key, n in outcomes.items() if key.endswith(":duplicate"))
    print("\nsoak figures")
    print(f"  events sent            {sent} ({progress['requests']} requests, "
          f"{progress['retries']} retried across the kills)")
    print(f"  events accepted        {figures['accepted']} distinct (all {sent} answered 202)")
    print(f"  duplicates sent        {workload.sent_by_kind['duplicate']} re-posted ids, "
          f"plus batches re-sent after a kill")
    print(f"  duplicates absorbed    {duplicates} deliveries with no effect "
          f"({', '.join(f'{k} {v}' for k, v in sorted(outcomes.items()) if 'duplicate' in k)})")
    print(f"  processed              {figures['processed']} (consumer, event) pairs done")
    print(f"  dead-lettered          {sum(dead.values())}")
    for reason, n in dead.most_common():
        print(f"    {n:6d}  {reason}")
    print(f"  lost                   {figures['lost']}")
    print(f"  orders                 completed {figures.get('orders_completed', 0)}, "
          f"cancelled {figures.get('orders_cancelled', 0)} "
          f"(charged {figures.get('charged', 0)}, refunded {figures.get('refunded', 0)}), "
          f"pending {figures.get('orders_pending', 0)}")
    print(f"  notifications          {figures['notifications']}")
    print(f"  SIGKILL restarts       {len(kills)}: {kills}")
    print(f"  throughput             {sent / ingest_done:.0f} events/s accepted; "
          f"{figures['accepted'] / quiet:.0f} events/s end to end (quiet after {quiet:.1f}s)")
    print(f"  wall time              {quiet:.1f}s")
    print(f"  server log tracebacks  {tracebacks}")
    if result.needs_attention:
        print(f"  needs attention        {result.needs_attention[:10]}")
    # The invariants accept any dead letter that has a reason; the soak knows better:
    # exactly the poison it sent must be there, and nothing else.
    unexpected = [d for d in dead_letters if d.event_id not in workload.poison]
    missing = workload.poison - {d.event_id for d in dead_letters}
    print(f"  poison dead-lettered   {len(workload.poison) - len(missing)} of "
          f"{len(workload.poison)}; unexpected dead letters {len(unexpected)}")
    print(f"  refused at the door    {refused} of {len(workload.refused)} schema-breaking "
          f"events (400)")
    problems = list(result.violations)
    if refused != len(workload.refused):
        problems.append(f"only {refused} of {len(workload.refused)} schema-breaking events "
                        "were refused with 400")
    if unexpected:
        problems.append(f"{len(unexpected)} dead letters that are not poison, e.g. "
                        f"{unexpected[0].consumer}/{unexpected[0].event_id}: "
                        f"{unexpected[0].reason}")
    if missing:
        problems.append(f"{len(missing)} poison events not dead-lettered, e.g. "
                        f"{sorted(missing)[0]}")
    if figures["lost"]:
        problems.append(f"lost {figures['lost']} accepted events")
    if tracebacks:
        problems.append(f"{tracebacks} tracebacks in the server log")
    if any(k["work_in_flight"] == 0 for k in kills):
        problems.append("a SIGKILL found no work in flight: it proved nothing")
    if problems:
        print(f"\nsoak: FAILED, {len(problems)} problem(s):", file=sys.stderr)
        for problem in problems[:50]:
            print(f"  {problem}", file=sys.stderr)
        return 1
    print("\nsoak: OK, every invariant holds")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.soak", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--processes", type=int, default=1,
                        help="serve --processes: worker processes running the handlers")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--visibility-timeout", type=float, default=5.0)
    parser.add_argument("--quiet-timeout", type=float, default=1800.0)
    parser.add_argument("--db", help="keep the database here instead of a temp file")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
