"""Run workflows-emulator (in its own venv) with the two gaps that matter here filled.

Executed as `.venv-workflows/bin/python tests/gcp/workflows_shim.py --source X serve ...`.

- OIDC: the emulator raises NotImplementedError for `auth: {type: OIDC}`. On GCP the
  platform mints the token and Cloud Run checks it before our code runs; here the call is
  made with a marker bearer token instead, so the compiled YAML runs unchanged and the
  step endpoint can still see that the call was authenticated.
- Arguments: Cloud Workflows binds an execution's `argument` to main's one parameter;
  the emulator's server passes it as the map of parameters instead. The shim binds it as
  the platform does.
- Time: retry backoffs are real sleeps in the emulator; `WORKFLOWS_TIME_SCALE` shrinks
  them so exhausting a step's retries takes milliseconds, not seconds.
"""

from __future__ import annotations

import os
import time
from typing import Any

from workflows_emulator import main as emulator_main
from workflows_emulator import server as emulator_server
from workflows_emulator.lib import http_utils

OIDC_MARKER = "Bearer emulated-oidc-token"
_original_request = http_utils.request
_scale = float(os.environ.get("WORKFLOWS_TIME_SCALE", "1"))


def _request(method: str, url: str, **kwargs: Any) -> Any:
    auth = kwargs.get("auth")
    if isinstance(auth, dict) and auth.get("type") == "OIDC":
        kwargs["auth"] = None
        kwargs["headers"] = {**(kwargs.get("headers") or {}), "Authorization": OIDC_MARKER}
    return _original_request(method, url, **kwargs)


def _execute(config: dict[str, Any], argument: Any) -> Any:
    params = config.get("main", {}).get("params", [])
    return emulator_main.execute_workflow(config, {params[0]: argument} if params else {})


http_utils.request = _request
emulator_server.execute_workflow = _execute
emulator_main.sleep = lambda seconds: time.sleep(seconds * _scale)

if __name__ == "__main__":
    from workflows_emulator.cli import cli

    cli()
