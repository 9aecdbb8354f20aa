"""`switchyard catalog export|check`: publish the event contracts, gate changes to them.

`export` writes the app's contracts (AsyncAPI 3.0, one JSON Schema per type, Markdown).
`check --against REF` compares the current app with an exported AsyncAPI file, or with the
app description at a git ref: that checkout is unpacked with `git archive` into a temporary
folder and exported there by this version of the exporter, so refs from before this command
existed compare too. Exit 0: nothing breaking; 1: breaking changes (listed); 2: bad input.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from pathlib import Path
from typing import Any, Final

from adapters.contracts import compat, export

FORMATS: Final = ("asyncapi", "jsonschema", "markdown")
_BEGIN: Final = ("<!-- catalog:markdown (generated: switchyard catalog export --format markdown "
                 "--readme README.md) -->")
_END: Final = "<!-- /catalog:markdown -->"
REGENERATE: Final = "switchyard catalog export --format markdown --readme README.md"

# Runs in the unpacked checkout: its `handlers` first on the path, the exporter loaded by
# file path under a private name (that checkout may have no `adapters.contracts`, or have
# it elsewhere).
_EXPORT_AT_REF: Final = """
import importlib, importlib.util, os, sys
path, spec, version = sys.argv[1:4]
loader = importlib.util.spec_from_file_location("_switchyard_contracts_export", path)
export = importlib.util.module_from_spec(loader)
sys.modules[loader.name] = export
loader.loader.exec_module(export)
module_name, _, attribute = spec.partition(":")
module = importlib.import_module(module_name)
here = os.path.realpath(os.getcwd())
if not os.path.realpath(module.__file__).startswith(here + os.sep):
    sys.exit(f"{spec} was imported from {module.__file__}, not from the checkout at the ref")
app = getattr(module, attribute)
sys.stdout.write(export.dumps(export.asyncapi(app, version)))
"""


def _fail(message: str) -> int:
    print(f"switchyard catalog: {message}", file=sys.stderr)
    return 2


def project_version(root: Path) -> str:
    """`[project] version` of the pyproject.toml at `root` (the AsyncAPI info.version)."""
    try:
        data = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return "0.0.0"
    return str(data.get("project", {}).get("version", "0.0.0"))


def _root() -> Path:
    """The checkout the app comes from: the parent of `handlers/`."""
    import handlers

    return Path(handlers.__file__).resolve().parents[1]


def _app(spec: str | None) -> Any:
    from handlers.core.app import load_app

    return load_app(spec)


# --- README block --------------------------------------------------------------------------


def readme_block(readme: str) -> str | None:
    """The generated catalog between the markers, or None without markers."""
    start = readme.find(_BEGIN)
    stop = readme.find(_END, start + 1)
    if start < 0 or stop < 0:
        return None
    return readme[start + len(_BEGIN) : stop].strip("\n") + "\n"


def with_readme_block(readme: str, text: str) -> str:
    start = readme.find(_BEGIN)
    stop = readme.find(_END, start + 1)
    if start < 0 or stop < 0:
        raise ValueError(f"the README has no catalog markers: add the lines\n{_BEGIN}\n{_END}")
    return readme[:start] + f"{_BEGIN}\n{text.rstrip(chr(10))}\n" + readme[stop:]


# --- export ---------------------------------------------------------------------------------


def render(app: Any, fmt: str, version: str, prefix: str = export.DEFAULT_PREFIX) -> str:
    if fmt == "asyncapi":
        return export.dumps(export.asyncapi(app, version, prefix))
    return export.markdown(app)


def cmd_export(args: argparse.Namespace) -> int:
    try:
        app = _app(args.app)
    except (ValueError, ImportError) as exc:
        return _fail(str(exc))
    version = project_version(_root())
    if args.readme and args.format != "markdown":
        return _fail("--readme takes --format markdown")
    if args.format == "jsonschema":
        if not args.out:
            return _fail("--format jsonschema writes one file per type: give --out DIR")
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            return _fail(f"--out {out} is a file; --format jsonschema needs a directory")
        schemas = export.json_schemas(app)
        try:
            out.mkdir(parents=True, exist_ok=True)
            for name, schema in schemas.items():
                (out / name).write_text(export.dumps(schema), encoding="utf-8")
        except OSError as exc:
            return _fail(f"cannot write {out}: {exc.strerror or exc}")
        print(f"wrote {len(schemas)} schemas to {out}")
        return 0
    text = render(app, args.format, version, args.prefix)
    try:
        if args.readme:
            path = Path(args.readme)
            path.write_text(with_readme_block(path.read_text(encoding="utf-8"), text),
                            encoding="utf-8")
        elif args.out:
            Path(args.out).write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
    except (OSError, ValueError) as exc:
        return _fail(str(exc).splitlines()[0] if isinstance(exc, OSError) else str(exc))
    return 0


# --- check ----------------------------------------------------------------------------------


def _git(args: list[str], cwd: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=False)


def load_reference(ref: str, app_spec: str, cwd: Path) -> dict[str, Any]:
    """The exported catalog `ref` names: an AsyncAPI JSON file, or the app at a git ref."""
    path = Path(ref)
    if path.is_file():
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise compat.ContractError(f"{ref} is not a JSON AsyncAPI document ({exc})") from exc
        if not isinstance(document, dict):
            raise compat.ContractError(f"{ref} is not a JSON AsyncAPI document")
        return document
    resolved = _git(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], cwd)
    if resolved.returncode != 0:
        raise compat.ContractError(f"'{ref}' is neither a file nor a commit of the git "
                                   f"repository at {cwd}")
    commit = resolved.stdout.decode().strip()
    archive = _git(["archive", "--format=tar", commit], cwd)
    if archive.returncode != 0:
        raise compat.ContractError(f"git archive {ref} failed: "
                                   f"{archive.stderr.decode(errors='replace').strip()}")
    with tempfile.TemporaryDirectory(prefix="switchyard-catalog-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(tmp, filter="data")
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SWITCHYARD_APP")}
        done = subprocess.run(
            [sys.executable, "-c", _EXPORT_AT_REF, export.__file__, app_spec,
             project_version(Path(tmp))],
            cwd=tmp, env=env, capture_output=True, text=True, check=False, timeout=120)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise compat.ContractError(f"cannot export {app_spec} at {ref}: {last}")
        try:
            exported: dict[str, Any] = json.loads(done.stdout)
        except json.JSONDecodeError as exc:
            raise compat.ContractError(f"the export of {app_spec} at {ref} printed something "
                                       f"other than JSON ({exc})") from exc
        return exported


def cmd_check(args: argparse.Namespace) -> int:
    from handlers.core.app import DEFAULT_APP

    spec = args.app or os.environ.get("SWITCHYARD_APP") or DEFAULT_APP
    try:
        app = _app(spec)
        old = load_reference(args.against, spec, Path.cwd())
        new = export.asyncapi(app, project_version(_root()))
        changes = compat.compare(old, new, old_origin=args.against, new_origin=spec)
    except (ValueError, ImportError, subprocess.TimeoutExpired) as exc:
        return _fail(str(exc))
    except OSError as exc:  # no git on PATH, an unreadable file
        return _fail(f"cannot read {args.against}: {exc.strerror or exc}")
    ok = compat.verdict(changes, full=args.full)
    if args.json:
        print(json.dumps({"ok": ok, "against": args.against, "full": args.full,
                          "changes": [{"severity": c.severity, "type": c.type,
                                       "where": c.where, "what": c.what} for c in changes]},
                         indent=2))
        return 0 if ok else 1
    for change in changes:
        print(change.line())
    counts = {s: sum(c.severity == s for c in changes) for s in ("breaking", "widening",
                                                                   "additive")}
    summary = (f"{counts['breaking']} breaking, {counts['widening']} widened, "
               f"{counts['additive']} added")
    if not changes:
        print(f"catalog check against {args.against}: no change to the event contracts")
    elif ok:
        print(f"catalog check against {args.against}: compatible ({summary})")
    else:
        mode = "; FULL mode: widenings fail too" if args.full else ""
        print(f"catalog check against {args.against}: INCOMPATIBLE ({summary}{mode}). "
              "Keep the old contract and publish the change as a new event type.",
              file=sys.stderr)
    return 0 if ok else 1


def register(sub: Any) -> None:
    """Add `catalog export|check` to the `switchyard` parser's subcommands."""
    catalog = sub.add_parser("catalog", help="export the event contracts (AsyncAPI, JSON "
                                             "Schema, Markdown) or check a change to them")
    verbs = catalog.add_subparsers(dest="catalog_command", required=True)
    app_help = "the app description, 'module:ATTRIBUTE' (default: $SWITCHYARD_APP or the " \
               "order system)"

    out = verbs.add_parser("export", help="write the contracts")
    out.add_argument("--format", choices=FORMATS, default="asyncapi")
    out.add_argument("--out", metavar="PATH",
                     help="file to write (jsonschema: directory, one file per type); "
                          "default stdout")
    out.add_argument("--app", help=app_help)
    out.add_argument("--prefix", default=export.DEFAULT_PREFIX,
                     help="asyncapi: the stack prefix the AWS queue/topic names in the "
                          "bindings carry (switchyard:prefix; default %(default)s)")
    out.add_argument("--readme", metavar="FILE",
                     help="markdown: replace the generated block of FILE")
    out.set_defaults(func=cmd_export)

    check = verbs.add_parser("check", help="fail on changes that break producers or "
                                           "consumers of the old contracts")
    check.add_argument("--against", required=True, metavar="REF",
                       help="a git ref (the app exported at that commit) or an exported "
                            "AsyncAPI JSON file")
    check.add_argument("--app", help=app_help)
    check.add_argument("--full", action="store_true",
                       help="FULL compatibility: widened enums/ranges fail too")
    check.add_argument("--json", action="store_true", help="the changes as JSON")
    check.set_defaults(func=cmd_check)
