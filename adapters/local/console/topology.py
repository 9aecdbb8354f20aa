"""The app description as JSON for the console's topology view.

Built from the same `App` the clouds' stacks and the local runtime are generated from
(no Pulumi needed): producers, event types, consumers with their queue and dead-letter
queue, what each touches, buckets, schedules, and the saga's steps and compensations.
"""

from __future__ import annotations

from typing import Any

from handlers.core.app import App, Step


def _step(step: Step | None) -> dict[str, Any] | None:
    if step is None:
        return None
    return {"name": step.name, "compensate": step.compensate.__name__ if step.compensate
            else None, "retry": {"max_attempts": step.retry.max_attempts,
                                 "interval_seconds": step.retry.interval_seconds,
                                 "backoff": step.retry.backoff},
            "stores": list(step.stores)}


def describe(app: App) -> dict[str, Any]:
    saga_scope = f"saga:{app.saga.name}"
    emitted_by: dict[str, list[str]] = {}
    for consumer in app.consumers:
        for type_ in consumer.emits:
            emitted_by.setdefault(type_, []).append(consumer.name)
    for type_ in app.saga.emits:
        emitted_by.setdefault(type_, []).append(saga_scope)
    for schedule in app.schedules:
        emitted_by.setdefault(schedule.emits, []).append(f"schedule:{schedule.name}")
    types = []
    for spec in app.catalog:
        types.append({
            "type": spec.type, "source": spec.source, "detail_type": spec.detail_type,
            "description": spec.description,
            "consumers": [c.name for c in app.routes(spec.type)],
            "emitted_by": emitted_by.get(spec.type, []),
        })
    return {
        "name": app.name,
        "types": types,
        "consumers": [{
            "name": c.name, "description": c.description, "consumes": list(c.consumes),
            "emits": list(c.emits), "stores": list(c.stores), "buckets": list(c.buckets),
            "notifies": c.notifies, "starts_saga": c.starts_saga,
            "queue": f"{c.name}-queue", "dlq": f"{c.name}-dlq",
        } for c in app.consumers],
        "saga": {
            "name": app.saga.name, "scope": saga_scope,
            "steps": [_step(s) for s in app.saga.steps],
            "on_success": _step(app.saga.on_success),
            "on_failure": _step(app.saga.on_failure),
            "stores": list(app.saga.stores), "emits": list(app.saga.emits),
        },
        "tables": list(app.tables),
        "buckets": [{"name": b.name, "events": b.events, "expire_days": b.expire_days,
                     "claim_check": b.claim_check, "description": b.description}
                    for b in app.buckets],
        "schedules": [{"name": s.name, "cron": s.cron, "emits": s.emits,
                       "description": s.description} for s in app.schedules],
    }
