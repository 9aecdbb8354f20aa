"""The `main.py` at the root of the functions' source zip (Cloud Functions loads it).

Each function's entry point (`consume`, `saga_step` or `ingest`) is re-exported from
`adapters.gcp.entry`; which consumer a `consume` function serves is set by its
environment (`SWITCHYARD_CONSUMER`), so one archive serves every function.
"""

from adapters.gcp.entry import consume, ingest, saga_step

__all__ = ["consume", "ingest", "saga_step"]
