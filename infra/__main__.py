"""What `pulumi up` runs (`main: infra/` in Pulumi.yaml): the program in `infra.program`.

Pulumi executes this file with `runpy.run_path(<program dir>, run_name="__main__")`, with
`infra/` itself on `sys.path` rather than the repository root, so the root is added first
to make `infra`, `handlers` and `adapters` importable as packages even without an
editable install. Under Pulumi mocks a test can import `infra.__main__` (or run it with
runpy) and the same program runs.
"""

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from infra.program import main  # noqa: E402  (needs the root on sys.path first)

# Unconditional on purpose: a guard on __name__ would turn any other way of loading the
# program into an empty one, and an empty program makes `pulumi up` delete the stack.
main()
