"""Cloud SDK errors as one line an operator can act on, translated at the boundary.

botocore and google-auth raise their own types when credentials, a region or a resource
are missing; `describe` turns the ones an operator causes into a `PlatformError` saying
what to do, without importing either SDK (an error of a type whose module was never
imported cannot be one of them).
"""

from __future__ import annotations

import sys

from cli.ops.model import PlatformError

_AWS_CREDENTIALS = ("no AWS credentials found: configure them (`aws configure`, "
                    "AWS_PROFILE, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)")
_GCP_CREDENTIALS = ("no Google Cloud credentials found: run `gcloud auth application-default "
                    "login` or set GOOGLE_APPLICATION_CREDENTIALS to a key file")


def describe(error: BaseException) -> PlatformError | None:
    """The one-line form of a cloud SDK error, or None if it is not one."""
    return _aws(error) or _gcp(error)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _aws(error: BaseException) -> PlatformError | None:
    exceptions = sys.modules.get("botocore.exceptions")
    if exceptions is None:
        return None
    if isinstance(error, exceptions.NoCredentialsError | exceptions.PartialCredentialsError):
        return PlatformError(_AWS_CREDENTIALS)
    if isinstance(error, exceptions.NoRegionError):
        return PlatformError("no AWS region: the stack outputs name none; set AWS_REGION")
    if isinstance(error, exceptions.ProfileNotFound):
        return PlatformError(f"AWS: {_first_line(error)} (check AWS_PROFILE)")
    if isinstance(error, exceptions.ClientError):
        info = error.response.get("Error", {})
        return PlatformError(f"AWS refused {error.operation_name}: {info.get('Code', '?')}: "
                             f"{info.get('Message', _first_line(error))}")
    if isinstance(error, exceptions.BotoCoreError):
        return PlatformError(f"AWS: {_first_line(error)}")
    return None


def _gcp(error: BaseException) -> PlatformError | None:
    auth = sys.modules.get("google.auth.exceptions")
    if auth is not None:
        if isinstance(error, auth.DefaultCredentialsError):
            return PlatformError(_GCP_CREDENTIALS)
        if isinstance(error, auth.GoogleAuthError):
            return PlatformError(f"Google Cloud credentials do not work: {_first_line(error)}"
                                 " (run `gcloud auth application-default login`)")
    api = sys.modules.get("google.api_core.exceptions")
    if api is not None and isinstance(error, api.GoogleAPIError):
        return PlatformError(f"Google Cloud refused the call: {_first_line(error)}")
    return None
