"""The platform core every backend shares: event type, bindings, ports and engine."""
