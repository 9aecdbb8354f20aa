"""Notification processor: hands `Notification Sent` events to the notifier port, once."""

from __future__ import annotations

from handlers.core.context import Context


def on_notification(ctx: Context) -> None:
    data = dict(ctx.event.data)
    data.setdefault("channel", "log")
    ctx.notify({**data, "event_id": ctx.event.id})
