"""Runtime settings of a Cloud Function, read once from its environment.

The stack sets these variables on every function (`infra/gcp`); the emulator tests set
the same ones on their functions-framework servers. One typed place, so a missing
variable is reported at cold start with every other missing one, not at first use.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from handlers.payments import DEFAULT_DECLINE_ABOVE_CENTS

# Variable names, shared with infra/gcp so the two cannot drift apart.
PROJECT: Final = "SWITCHYARD_PROJECT"
REGION: Final = "SWITCHYARD_REGION"
CONSUMER: Final = "SWITCHYARD_CONSUMER"
BUS_TOPIC: Final = "SWITCHYARD_BUS_TOPIC"
NOTIFICATIONS_TOPIC: Final = "SWITCHYARD_NOTIFICATIONS_TOPIC"
DEAD_LETTER_TOPIC: Final = "SWITCHYARD_DEAD_LETTER_TOPIC"
DATABASE: Final = "SWITCHYARD_DATABASE"
#: JSON: table -> Firestore database holding it (the stack splits tables into databases
#: so that each function's grants name only its own data); unset tables live in DATABASE.
TABLE_DATABASES: Final = "SWITCHYARD_TABLE_DATABASES"
#: JSON: saga step -> the database its tables (and so its idempotency records) live in.
STEP_DATABASES: Final = "SWITCHYARD_STEP_DATABASES"
WORKFLOW: Final = "SWITCHYARD_WORKFLOW"
DECLINE_ABOVE_CENTS: Final = "SWITCHYARD_DECLINE_ABOVE_CENTS"
#: A workflows-emulator base URL to start executions on (tests), as PUBSUB_EMULATOR_HOST
#: does for Pub/Sub; never set by the stack.
WORKFLOWS_EMULATOR: Final = "SWITCHYARD_WORKFLOWS_EMULATOR"
#: The subscription's max_delivery_attempts. When set, a consumer that fails the last
#: attempt dead-letters the message itself with the last error as its reason; unset, the
#: subscription's dead_letter_policy moves it with only the attempt count.
MAX_DELIVERIES: Final = "SWITCHYARD_MAX_DELIVERIES"
#: JSON: logical bucket name -> Cloud Storage bucket name (what this function may touch).
BUCKETS: Final = "SWITCHYARD_BUCKETS"
#: A Cloud Storage JSON API base URL for tests (GCS has no emulator in the gcloud SDK).
STORAGE_API: Final = "SWITCHYARD_STORAGE_API"


@dataclass(frozen=True, slots=True)
class Settings:
    project: str
    region: str = "us-central1"
    consumer: str | None = None  # set on consumer functions only
    bus_topic: str | None = None
    notifications_topic: str | None = None
    dead_letter_topic: str | None = None
    database: str = "(default)"  # where this function's idempotency records live
    table_databases: Mapping[str, str] = field(default_factory=dict)
    step_databases: Mapping[str, str] = field(default_factory=dict)
    workflow: str | None = None  # short workflow name; set where sagas are started
    decline_above_cents: int = DEFAULT_DECLINE_ABOVE_CENTS
    workflows_emulator: str | None = None
    max_deliveries: int | None = None
    buckets: Mapping[str, str] = field(default_factory=dict)
    storage_api: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        project = env.get(PROJECT) or env.get("GOOGLE_CLOUD_PROJECT") or env.get("GCP_PROJECT")
        problems: list[str] = []
        if not project:
            problems.append(f"{PROJECT} (or GOOGLE_CLOUD_PROJECT) is not set")
        decline = env.get(DECLINE_ABOVE_CENTS, str(DEFAULT_DECLINE_ABOVE_CENTS))
        if not decline.isdigit():
            problems.append(f"{DECLINE_ABOVE_CENTS} must be whole cents, got {decline!r}")
        deliveries = env.get(MAX_DELIVERIES) or ""
        if deliveries and not deliveries.isdigit():
            problems.append(f"{MAX_DELIVERIES} must be a whole number, got {deliveries!r}")
        maps = {name: _json_map(env, name, problems)
                for name in (BUCKETS, TABLE_DATABASES, STEP_DATABASES)}
        if problems:
            raise RuntimeError("invalid function settings: " + "; ".join(problems))
        return cls(
            project=str(project),
            region=env.get(REGION, "us-central1"),
            consumer=env.get(CONSUMER) or None,
            bus_topic=env.get(BUS_TOPIC) or None,
            notifications_topic=env.get(NOTIFICATIONS_TOPIC) or None,
            dead_letter_topic=env.get(DEAD_LETTER_TOPIC) or None,
            database=env.get(DATABASE) or "(default)",
            workflow=env.get(WORKFLOW) or None,
            decline_above_cents=int(decline),
            workflows_emulator=env.get(WORKFLOWS_EMULATOR) or None,
            max_deliveries=int(deliveries) if deliveries else None,
            buckets=maps[BUCKETS],
            table_databases=maps[TABLE_DATABASES],
            step_databases=maps[STEP_DATABASES],
            storage_api=env.get(STORAGE_API) or None,
        )


def _json_map(env: Mapping[str, str], name: str, problems: list[str]) -> dict[str, str]:
    """A JSON object of strings from `name` ({} when unset); a problem when malformed."""
    raw = env.get(name) or "{}"
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as error:
        problems.append(f"{name} is not JSON: {error.msg}")
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        problems.append(f"{name} must be a JSON object of strings, got {raw!r}")
        return {}
    return {str(k): v for k, v in value.items()}
