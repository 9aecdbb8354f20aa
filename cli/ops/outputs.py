"""Finding a stack's `switchyard` output: from a file, or from the Pulumi CLI.

The document is read from a file (`--outputs FILE`, the JSON printed by `pulumi stack
output --json`, or that output alone) or, when the Pulumi CLI is on PATH, by running
`pulumi stack output --json --stack S`; either way `adapters.stack_outputs.parse` checks it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from adapters.stack_outputs import OutputsError, StackOutputs, parse

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


def load(stack: str, outputs_file: str | Path | None = None, *,
         which: Callable[[str], str | None] = shutil.which,
         run: Runner = subprocess.run) -> StackOutputs:
    """The outputs of `stack`: from `outputs_file` if given, else from the Pulumi CLI."""
    if outputs_file is not None:
        path = Path(outputs_file)
        try:
            raw = json.loads(path.read_text())
        except OSError as error:
            raise OutputsError(f"cannot read --outputs {path}: {error.strerror or error}"
                               ) from error
        except ValueError as error:
            raise OutputsError(f"--outputs {path} is not JSON: {error}") from error
        return parse(raw, stack, origin=str(path))
    pulumi = which("pulumi")
    if pulumi is None:
        raise OutputsError(
            f"cannot find the outputs of stack '{stack}': the pulumi CLI is not on PATH; "
            f"pass --outputs FILE with the JSON of `pulumi stack output --json --stack "
            f"{stack}` (saved where the CLI is available)")
    done = run([pulumi, "stack", "output", "--json", "--stack", stack],
               capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise OutputsError(f"`pulumi stack output --json --stack {stack}` failed "
                           f"(exit {done.returncode}): {done.stderr.strip() or done.stdout}")
    try:
        raw = json.loads(done.stdout)
    except ValueError as error:
        raise OutputsError(f"`pulumi stack output` printed no JSON: {error}") from error
    return parse(raw, stack, origin=f"pulumi stack output --stack {stack}")
