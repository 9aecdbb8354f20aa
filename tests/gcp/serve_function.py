"""Start functions-framework on an extracted source archive, and on nothing else.

The dev venv has this repository installed in editable mode, so `handlers` and
`adapters` would silently be imported from the checkout. This launcher drops the editable
finders and the checkout from the import path first: the server can only import what the
archive contains (plus the installed third-party packages), as on Cloud Functions.
Usage: python serve_function.py <extracted dir> <functions-framework args...>
       python serve_function.py <extracted dir> --origins   (print where modules load from)
"""

from __future__ import annotations

import os
import sys


def isolate(source_dir: str) -> None:
    checkout = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    sys.meta_path[:] = [f for f in sys.meta_path if "Editable" not in type(f).__name__
                        and "Editable" not in getattr(f, "__name__", "")]
    sys.path[:] = [p for p in sys.path
                   if p and os.path.abspath(p) != checkout and "__editable__" not in p]
    sys.path.insert(0, source_dir)


if __name__ == "__main__":
    source = os.path.abspath(sys.argv[1])
    isolate(source)
    os.chdir(source)
    if sys.argv[2:] == ["--origins"]:
        import json

        import main  # the archive's main.py

        import adapters.gcp.entry
        import handlers.app

        entries = [callable(getattr(main, n)) for n in ("consume", "saga_step", "ingest")]
        print(json.dumps([main.__file__, adapters.gcp.entry.__file__, handlers.app.__file__,
                          entries]))
        sys.exit(0)
    # JSON log lines on stderr (the harness keeps them per function): each push the
    # consumer handles logs "delivered" with its event id and outcome, which is what the
    # tests wait on to know that a duplicate has arrived (see `deliveries` in conftest).
    from handlers.core.observability import configure_logging

    configure_logging("INFO")
    from functions_framework._cli import _cli

    sys.argv = ["functions-framework", *sys.argv[2:]]
    _cli()
