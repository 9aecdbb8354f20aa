"""Dependencies point one way: handlers <- adapters <- infra <- cli.

A module may import its own layer or lower ones, never a higher one:

    handlers   the app and its core; no cloud SDK, no Pulumi, nothing of ours above it
    adapters   per-platform runtime code (aws, gcp, local, memory); never Pulumi or infra
    infra      the Pulumi program; may import adapters and handlers
    cli        the command line; may import everything

Runtime code (handlers, adapters) never imports Pulumi: it runs in Lambda and Cloud
Functions, where Pulumi is not installed. The policy pack (policy/) is served from its own
folder and imports none of our packages. The check reads every module's imports with
`ast`: module-level, function-level (lazy) and TYPE_CHECKING imports, relative imports,
and `importlib.import_module("...")` / `__import__("...")` with a literal name.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Our layered packages, lowest first.
LAYERS: Final = ("handlers", "adapters", "infra", "cli")
PULUMI: Final = frozenset({"pulumi", "pulumi_aws", "pulumi_gcp", "pulumi_policy"})
#: What the cloud-agnostic handlers never import (besides higher layers and Pulumi).
CLOUD: Final = frozenset({"boto3", "botocore", "google", "cloudevents",
                          "functions_framework", "waitress", "moto",
                          # spans go through handlers.core.tracing; the SDK is an adapter's
                          "opentelemetry"})
#: Kept for the import-at-runtime check below.
FORBIDDEN = tuple(sorted(CLOUD | PULUMI | set(LAYERS[1:])))


@dataclass(frozen=True, slots=True)
class Violation:
    path: str
    line: int
    imported: str
    rule: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line} imports {self.imported}: {self.rule}"


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, module: str) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in the file, lazy ones included."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = node.module or ""
            else:  # relative: resolve against the importing module's package
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            yield node.lineno, base
            if not node.module:  # `from . import x`: x is a module of that package
                for alias in node.names:
                    yield node.lineno, ".".join(filter(None, (base, alias.name)))
        elif (isinstance(node, ast.Call) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name) and node.func.id == "__import__"))):
            yield node.lineno, node.args[0].value


def check(root: Path) -> list[Violation]:
    """Every import under `root` that breaks the layer order or the Pulumi/SDK rules."""
    found: list[Violation] = []
    for top in (*LAYERS, "policy"):
        for path in sorted((root / top).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            rel = path.relative_to(root).as_posix()
            for line, name in imports(path, _module_name(root, path)):
                head = name.split(".")[0]
                if top == "policy":
                    if head in LAYERS:
                        found.append(Violation(rel, line, name, "the policy pack is served on "
                                               "its own and imports none of our packages"))
                    continue
                layer = LAYERS.index(top)
                if head in LAYERS and LAYERS.index(head) > layer:
                    found.append(Violation(rel, line, name, f"{top} is below {head} "
                                           f"({' <- '.join(LAYERS)})"))
                elif head in PULUMI and top in ("handlers", "adapters"):
                    found.append(Violation(rel, line, name,
                                           "runtime code never imports Pulumi"))
                elif head in CLOUD and top == "handlers":
                    found.append(Violation(rel, line, name,
                                           "handlers import nothing cloud-specific"))
    return found


def test_every_import_follows_the_layer_order() -> None:
    violations = check(ROOT)
    assert violations == [], "\n".join(map(str, violations))


def test_the_checker_reports_reversed_imports(tmp_path: Path) -> None:
    """The check itself, on a synthetic tree with one violation of each kind."""
    files = {
        "handlers/__init__.py": "",
        "handlers/core/__init__.py": "",
        "handlers/core/ok.py": "from handlers.core import ok\nfrom . import ok\n",
        "handlers/core/bad.py": "def f():\n    from adapters.local import runtime\n",
        "handlers/cloud.py": "import boto3\nfrom google.cloud import pubsub_v1\n",
        "adapters/__init__.py": "",
        "adapters/lazy.py": ("import importlib\n\ndef f():\n"
                             "    return importlib.import_module('infra.program')\n"),
        "adapters/sdk.py": "def f():\n    import pulumi_aws\n",
        "adapters/fine.py": "import boto3\nfrom handlers.core import ok\n",
        "infra/__init__.py": "",
        "infra/up.py": "from cli.main import main\nimport pulumi\nfrom adapters import fine\n",
        "infra/sub/__init__.py": "",
        # Relative imports resolve inside their package (they cannot leave it).
        "infra/sub/rel.py": "from .. import up\nfrom . import rel\n",
        "cli/__init__.py": "",
        "cli/main.py": "import infra.up\nimport adapters.fine\nimport handlers\n",
        "policy/pack.py": "__import__('handlers.app')\n",
    }
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    reported = {(v.path, v.imported) for v in check(tmp_path)}
    assert reported == {
        ("handlers/core/bad.py", "adapters.local"),
        ("handlers/cloud.py", "boto3"),
        ("handlers/cloud.py", "google.cloud"),
        ("adapters/lazy.py", "infra.program"),
        ("adapters/sdk.py", "pulumi_aws"),
        ("infra/up.py", "cli.main"),
        ("policy/pack.py", "handlers.app"),
    }
    relative = {name for _, name in imports(tmp_path / "infra/sub/rel.py", "infra.sub.rel")}
    assert relative == {"infra", "infra.up", "infra.sub", "infra.sub.rel"}


@pytest.mark.parametrize("path", sorted((ROOT / "handlers").rglob("*.py")),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_handler_module_imports_nothing_cloud_specific(path: Path) -> None:
    bad = sorted(name for _, name in imports(path, _module_name(ROOT, path))
                 if name.split(".")[0] in FORBIDDEN)
    assert bad == [], f"{path.relative_to(ROOT)} imports {bad}"


@pytest.mark.parametrize("modules, forbidden", [
    (("handlers.app", "handlers.core.http_binding", "handlers.core.eventbridge_binding",
      "handlers.core.saga_runner"), FORBIDDEN),
    # The runtime entry points: what Lambda, Cloud Functions and `switchyard serve` load.
    (("adapters.aws.lambda_entry", "adapters.gcp.entry", "adapters.local.runtime",
      "adapters.local.http_server"), tuple(sorted(PULUMI | {"infra", "cli"}))),
], ids=["handlers", "adapters"])
def test_importing_runtime_code_loads_nothing_above_it(modules: tuple[str, ...],
                                                       forbidden: tuple[str, ...]) -> None:
    # Some packages preload namespace modules (e.g. `google`) from .pth files at start-up:
    # compare against what the interpreter had before our imports.
    code = ("import sys, json, importlib; before = set(sys.modules); "
            f"[importlib.import_module(m) for m in {list(modules)!r}]; "
            "print(json.dumps(sorted(set(sys.modules) - before)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    loaded = {name.split(".")[0] for name in json.loads(out)}
    assert loaded.isdisjoint(forbidden), sorted(loaded & set(forbidden))
