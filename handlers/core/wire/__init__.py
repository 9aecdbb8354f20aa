"""The wire layer every binding shares: one JSON dialect, one data codec, one binary mode.

- `jsontext`: the strict JSON parser and writer (no NaN/Infinity), the one wording of a
  JSON value's type in error messages, and `Positioned` (an event and where it was).
- `data`: what an event's data looks like as bytes, keyed by `datacontenttype` (JSON,
  text, anything else bytes) and base64 for `data_base64`.
- `binary`: binary content mode (attributes beside the data), shared by the HTTP binding
  (`ce-*` headers) and the Pub/Sub binding (`ce-*` message attributes).

The bindings (`http_binding`, `jsonformat`, `eventbridge_binding`, the Pub/Sub binding in
`adapters/gcp`) and the claim check call these modules instead of keeping their own
copies, so a rule cannot drift between transports. Standard library only: this runs in
the Lambda and Cloud Functions archives.
"""
