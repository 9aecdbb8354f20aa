"""The proof: a fresh clone deploys with nothing but what the Pulumi CLI itself installs.

Clones the committed state of this checkout, creates an empty virtualenv at the path
Pulumi.yaml names, installs into it exactly what Pulumi's Python language host installs
for `toolchain: pip` (`python -m pip install --upgrade pip setuptools wheel`, then
`python -m pip install -r requirements.txt`, both run in the program folder, `main:`),
and runs the program as the language host does (working directory the program folder,
`runpy.run_path(".", run_name="__main__")`) under Pulumi mocks, with the config Pulumi
would pass: the project's declared defaults under the stack file's values. Then `make`'s
install of the base package into the same venv must leave it working. No Pulumi CLI and
no cloud are involved; the registry (or pip's cache) is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]

# What the language host does once `pulumi_harness` is loaded: the driver runs with the
# clone's venv, from the program folder, exactly like `pulumi-language-python-exec`.
_DRIVER = """
import importlib.util, json, runpy, sys
import yaml

root, stack = sys.argv[1], sys.argv[2]
project = yaml.safe_load(open(f"{root}/Pulumi.yaml"))
config = {k: e["default"] for k, e in project["config"].items() if "default" in e}
config.update(yaml.safe_load(open(f"{root}/Pulumi.{stack}.yaml"))["config"])
spec = importlib.util.spec_from_file_location(
    "pulumi_harness", f"{root}/tests/infra/pulumi_harness.py")
harness = sys.modules["pulumi_harness"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(harness)
rec = harness.run_program(
    config, stack, program=lambda: runpy.run_path(".", run_name="__main__"))
import infra
print(json.dumps({
    "types": sorted(r.type for r in rec.resources),
    "outputs": {k: v for k, v in rec.outputs.items() if k in ("cloud", "switchyard")},
    "none_leaks": rec.none_leaks(),
    "infra": infra.__file__,
}))
"""


def _run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float
         ) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"{' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_fresh_clone_installs_and_runs_the_program(tmp_path: Path) -> None:
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout.strip()
    clone = tmp_path / "switchyard"
    base_env = {k: v for k, v in os.environ.items()
                if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    _run(["git", "clone", "--quiet", "--no-checkout", str(ROOT), str(clone)], tmp_path,
         base_env, 120)
    _run(["git", "checkout", "--quiet", head], clone, base_env, 120)

    project = yaml.safe_load((clone / "Pulumi.yaml").read_text())
    options = project["runtime"]["options"]
    assert options["toolchain"] == "pip"
    venv = clone / options["virtualenv"]  # relative to the project root, as Pulumi does
    program = clone / project["main"]
    assert not venv.exists()

    # `python -m venv <abs path>`, then pip with the venv activated, in the program folder.
    _run([sys.executable, "-m", "venv", str(venv)], clone, base_env, 120)
    python = venv / "bin" / "python"
    env = {**base_env, "VIRTUAL_ENV": str(venv),
           "PATH": f"{venv / 'bin'}{os.pathsep}{base_env.get('PATH', '')}",
           # Skipping byte-compilation changes what is installed in no way that matters
           # here, and saves most of the install's CPU on this shared machine.
           "PIP_NO_COMPILE": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    empty = subprocess.run([str(python), "-c", "import pulumi"], cwd=program, env=env,
                           capture_output=True, text=True, timeout=60)
    assert empty.returncode != 0, "the new virtualenv is not empty"

    _run([str(python), "-m", "pip", "install", "--upgrade", "pip", "setuptools", "wheel"],
         program, env, 300)
    _run([str(python), "-m", "pip", "install", "-r", "requirements.txt"], program, env, 600)

    for stack, cloud in (("dev-aws", "aws"), ("dev-gcp", "gcp")):
        done = _run([str(python), "-W", "ignore", "-c", _DRIVER, str(clone), stack],
                    program, env, 300)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert result["outputs"]["cloud"] == cloud
        assert f"switchyard:{cloud}:Stack" in result["types"]
        cloud_resources = [t for t in result["types"] if t.startswith(f"{cloud}:")]
        assert len(cloud_resources) > 100, (stack, len(cloud_resources))
        assert result["outputs"]["switchyard"]["prefix"] == f"switchyard-{stack}"
        assert result["none_leaks"] == []
        # The program ran from the clone (editable install), not from this checkout.
        assert Path(result["infra"]).is_relative_to(clone), result["infra"]

    # `make demo` on that venv installs the base package (editable) again: it must leave
    # the SDKs in place, and Pulumi's install must still be a no-op after it.
    _run(["make", ".venv/.base"], clone, env, 300)
    _run([str(python), "-m", "pip", "install", "-r", "requirements.txt"], program, env, 300)
    done = _run([str(python), "-W", "ignore", "-c", _DRIVER, str(clone), "dev-aws"],
                program, env, 300)
    assert json.loads(done.stdout.strip().splitlines()[-1])["outputs"]["cloud"] == "aws"
