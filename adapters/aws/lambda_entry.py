"""Lambda entry points, one per kind of invocation; all run `handlers/` through the engine.

- `sqs_handler`: a consumer's SQS batch (EventBridge events as message bodies). Partial
  batch response: transient failures are reported in `batchItemFailures` and SQS
  redelivers them; a permanent error is sent to the consumer's DLQ at once with the
  reason as message attributes and reported done. On the last allowed delivery
  (`ApproximateReceiveCount` = maxDeliveries) a failure is dead-lettered the same way, so
  the DLQ says why; the queue's own redrive (maxReceiveCount) is the backstop for a
  function that crashed or timed out on that delivery. Data not known yet (`NotYetKnown`,
  a trigger that overtook its order) is retried once in the same invocation after
  `adapters.soon.SOON_S`, then made visible again after
  `SOON_VISIBILITY_S[receive count - 1]` seconds
  (ChangeMessageVisibility on the consumer's own queue) instead of the queue's whole
  visibility timeout; later receives back off like any transient failure.
- `eventbridge_handler`: an EventBridge event delivered to the function directly.
- `step_handler`: a Step Functions task of the compiled saga (see `asl`).
- `api_handler`: API Gateway HTTP API `POST /events` -> PutEvents, answering 202; what it
  takes and refuses is the ingress policy of every front door (`ingress_binding`).

Only the standard library and boto3 are imported (the Lambda runtime provides boto3).
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import logging
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final, TypeVar

from adapters.aws import buckets
from adapters.aws.asl import FAILED, OUTCOME_FIELD
from adapters.aws.eventbridge_publisher import EntryTooLarge
from adapters.aws.runtime import AwsRuntime, runtime
from adapters.soon import handle_soon
from handlers.core import ingress_binding, tracing
from handlers.core.engine import StepOutcome, handle, run_step
from handlers.core.errors import NotYetKnown, PermanentError, TransientError
from handlers.core.eventbridge_binding import from_eventbridge_event
from handlers.core.events import Event
from handlers.core.wire import jsontext

log = logging.getLogger("switchyard.aws")
log.setLevel(logging.INFO)

#: SQS message attribute values share the 256 KiB message limit with the body.
_MAX_REASON: Final = 4096
METRICS_NAMESPACE: Final = "Switchyard"
#: Visibility of a message whose data is still not known, by receive count (1-based);
#: past the last one the queue's visibility timeout applies.
SOON_VISIBILITY_S: Final = (1, 2, 5)


_Result = TypeVar("_Result")


def _flushed(entry: Callable[..., _Result]) -> Callable[..., _Result]:
    """Export the invocation's spans before it returns: Lambda freezes the container
    between invocations, and a span buffered then may never leave it."""

    @functools.wraps(entry)
    def run(event: Any, context: Any = None) -> _Result:
        try:
            return entry(event, context)
        finally:
            tracing.flush()

    return run


class PermanentStepError(Exception):
    """Raised by `step_handler` for a permanent error; the ASL never retries it (its
    errorType is what `asl.retriers` matches)."""


# --- SQS ---------------------------------------------------------------------------------


def decode_sqs_record(record: Mapping[str, Any], rt: AwsRuntime) -> Event:
    """The Event in one SQS record: its body is the event as EventBridge delivered it."""
    raw = record.get("body")
    if not isinstance(raw, str):
        raise PermanentError("SQS message body is not an EventBridge event",
                             ["body is missing or not a string"])
    body, problem = jsontext.parse(raw)  # the strict reader every edge shares
    if problem:
        raise PermanentError("SQS message body is not an EventBridge event", [problem])
    if isinstance(body, dict) and buckets.is_s3_event(body):
        # S3's own notification: normalised to the catalog's storage.object.finalized.
        return buckets.normalise(body, rt.settings.buckets)
    return from_eventbridge_event(body, rt.app.catalog)


@_flushed
def sqs_handler(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    rt = runtime()
    consumer = rt.settings.require("consumer")
    limit = rt.settings.max_deliveries
    info = log.isEnabledFor(logging.INFO)  # asked once a batch: no fields built for none
    failures: list[str] = []
    for record in event.get("Records", []):
        message_id = record["messageId"]
        try:
            outcome = handle_soon(rt.app, consumer, decode_sqs_record(record, rt), rt.ports,
                                  attempt=_receive_count(record), max_attempts=limit)
        except PermanentError as error:
            if not _dead_letter(rt, consumer, record, error):
                failures.append(message_id)
            continue
        except Exception as error:  # noqa: BLE001 - transient or unexpected: SQS retries it
            receives = _receive_count(record)
            reason = f"{type(error).__name__}: {error}"
            if limit and receives >= limit:
                exhausted = PermanentError(f"failed {receives} deliveries (maxDeliveries="
                                           f"{limit}); last error: {reason}")
                if not _dead_letter(rt, consumer, record, exhausted):
                    failures.append(message_id)
                continue
            log.warning("delivery failed, will be retried", extra={
                "consumer": consumer, "message_id": message_id, "receive_count": receives,
                "error": reason})
            if isinstance(error, NotYetKnown):
                _retry_soon(rt, record, receives)
            failures.append(message_id)
            continue
        if outcome.status == "ignored":
            _count("IgnoredEvents", consumer)
        if info:  # one line per delivery
            log.info("delivered", extra={"consumer": consumer, "event_id": outcome.event_id,
                                         "status": outcome.status})
    return {"batchItemFailures": [{"itemIdentifier": m} for m in failures] if failures else []}


def _retry_soon(rt: AwsRuntime, record: Mapping[str, Any], receives: int) -> None:
    """Make a not-yet-known message visible again after a short delay; if that fails the
    queue's visibility timeout applies (later, never lost)."""
    if receives > len(SOON_VISIBILITY_S) or not record.get("receiptHandle") \
            or not rt.settings.queue_url:
        return
    try:
        rt.client("sqs").change_message_visibility(
            QueueUrl=rt.settings.queue_url, ReceiptHandle=record["receiptHandle"],
            VisibilityTimeout=SOON_VISIBILITY_S[receives - 1])
    except Exception:  # noqa: BLE001 - only the delay is lost, not the message
        log.warning("could not shorten the retry delay", extra={
            "message_id": record.get("messageId")}, exc_info=True)


def _receive_count(record: Mapping[str, Any]) -> int:
    return int(record.get("attributes", _NO_ATTRIBUTES).get("ApproximateReceiveCount", "1"))


_NO_ATTRIBUTES: Final[Mapping[str, str]] = MappingProxyType({})


def _dead_letter(rt: AwsRuntime, consumer: str, record: Mapping[str, Any],
                 error: PermanentError) -> bool:
    """Send the record to the consumer's DLQ with why; False if that failed (then it is
    retried like a transient failure, so it is never dropped)."""
    reason = str(error) if type(error) is PermanentError else f"{type(error).__name__}: {error}"
    attributes = {
        "reason": reason[:_MAX_REASON],
        "error_type": type(error).__name__,
        "consumer": consumer,
        "source_message_id": str(record.get("messageId", "")),
        "receive_count": str(_receive_count(record)),
    }
    try:
        rt.client("sqs").send_message(
            QueueUrl=rt.settings.require("dlq_url"),
            MessageBody=record.get("body") or "(empty body)",
            MessageAttributes={k: {"DataType": "String", "StringValue": v or "-"}
                               for k, v in attributes.items()},
        )
    except Exception:  # noqa: BLE001 - keep the message: SQS redelivers, then redrives
        log.exception("could not dead-letter a permanent failure",
                      extra={"consumer": consumer, "reason": reason})
        return False
    log.error("dead-lettered", extra={"consumer": consumer, "reason": reason})
    _count("DeadLettered", consumer)
    return True


def _count(metric: str, consumer: str) -> None:
    """One CloudWatch metric data point via the embedded metric format (a log line)."""
    print(json.dumps({
        "_aws": {"Timestamp": int(time.time() * 1000), "CloudWatchMetrics": [{
            "Namespace": METRICS_NAMESPACE, "Dimensions": [["Consumer"]],
            "Metrics": [{"Name": metric, "Unit": "Count"}]}]},
        "Consumer": consumer, metric: 1,
    }))


# --- EventBridge, directly ----------------------------------------------------------------


@_flushed
def eventbridge_handler(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    """A rule targeting the function: raise to have Lambda retry (transient); a permanent
    error goes to the DLQ like an SQS delivery's would."""
    rt = runtime()
    consumer = rt.settings.require("consumer")
    try:
        outcome = handle(rt.app, consumer, from_eventbridge_event(event, rt.app.catalog),
                         rt.ports)
    except PermanentError as error:
        record = {"messageId": str(event.get("id", "")), "body": json.dumps(event)}
        if not _dead_letter(rt, consumer, record, error):
            raise TransientError("a permanent failure could not be dead-lettered") from error
        return {"status": "dead-lettered", "reason": str(error)}
    return {"status": outcome.status, "event_id": outcome.event_id}


# --- Step Functions --------------------------------------------------------------------------


def saga_state(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The saga state a step reads, from the execution's JSON state.

    After a Catch the state carries `error` ({Error, Cause}); it becomes `reason_detail`
    the way `saga_runner` words it ("ErrorType: message").
    """
    state = {k: v for k, v in raw.items() if k not in (OUTCOME_FIELD, "error")}
    state.setdefault("results", {})
    error = raw.get("error")
    if isinstance(error, Mapping) and not state.get("reason_detail"):
        state["reason_detail"] = _describe_error(error)
    return state


def _describe_error(error: Mapping[str, Any]) -> str:
    name, cause = str(error.get("Error", "")), error.get("Cause", "")
    try:
        details = json.loads(cause) if isinstance(cause, str) else {}
    except ValueError:
        details = {}
    if isinstance(details, Mapping) and "errorMessage" in details:
        return f"{details.get('errorType', name)}: {details['errorMessage']}"
    return f"{name}: {cause}" if cause else name


def next_state(on_failure_step: str | None, state: Mapping[str, Any], step: str, phase: str,
               outcome: StepOutcome) -> dict[str, Any]:
    """The state after one step: its result recorded, or the reason it failed."""
    if outcome.ok:
        key = step if phase == "action" else f"{step}:compensate"
        return {**state, "results": {**state["results"], key: dict(outcome.result)},
                OUTCOME_FIELD: "ok"}
    if phase == "compensate":
        reason = f"{state.get('reason')}; compensation {step} refused: {outcome.reason}"
        detail = state.get("reason_detail")
    elif step == on_failure_step:
        reason = f"{state.get('reason')}; {step} failed: {outcome.reason}"
        detail = state.get("reason_detail")
    else:
        reason, detail = outcome.reason, outcome.detail
    return {**state, "reason": reason, "reason_detail": detail, OUTCOME_FIELD: FAILED}


def _step_input_problems(event: Any) -> list[str]:
    """Every problem with a task's input: a malformed one is permanent, never retried."""
    if not isinstance(event, Mapping):
        return ["the task input must be a JSON object"]
    problems = [f"'{name}' must be a string" for name in ("step", "phase")
                if not isinstance(event.get(name), str)]
    if isinstance(event.get("phase"), str) and event["phase"] not in ("action", "compensate"):
        problems.append(f"'phase' must be 'action' or 'compensate', not {event['phase']!r}")
    state = event.get("state")
    if not isinstance(state, Mapping):
        problems.append("'state' must be an object")
    elif not isinstance(state.get("saga_id"), str):
        problems.append("'state' must carry a string 'saga_id'")
    return problems


@_flushed
def step_handler(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    problems = _step_input_problems(event)
    if problems:
        raise PermanentStepError("invalid step task input: " + "; ".join(problems))
    rt = runtime()
    step, phase = str(event["step"]), str(event["phase"])
    state = saga_state(event["state"])
    expected = f"{state['saga_id']}:{step}:{phase}"
    if event.get("idempotency_key", expected) != expected:
        raise PermanentStepError(f"idempotency key {event['idempotency_key']!r} does not "
                                 f"match the step ({expected!r})")
    try:
        outcome = run_step(rt.app, rt.ports, state["saga_id"], step, phase, state)
    except PermanentError as error:
        raise PermanentStepError(f"{type(error).__name__}: {error}") from error
    final = rt.app.saga.on_failure.name if rt.app.saga.on_failure else None
    log.info("saga step", extra={"saga_id": state["saga_id"], "step": step, "phase": phase,
                                 "ok": outcome.ok, "replayed": outcome.replayed})
    return next_state(final, state, step, phase, outcome)


# --- API Gateway (HTTP API, payload format 2.0) -------------------------------------------


def _response(status: int, body: Mapping[str, Any]) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"content-type": "application/json"},
            "body": json.dumps(body)}


@_flushed
def api_handler(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    rt = runtime()
    raw = event.get("body") or ""
    try:
        body = base64.b64decode(raw, validate=True) if event.get("isBase64Encoded") \
            else raw.encode("utf-8")
    except (binascii.Error, ValueError) as error:
        return _response(400, ingress_binding.refused([f"body is not valid base64: {error}"]))
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    try:
        events = ingress_binding.decode_request(headers, body, rt.app.catalog)
        with tracing.ingress(events, "api") as events:
            rt.ports.publisher.publish(events)
    except EntryTooLarge as error:
        return _response(413, {"error": str(error), "problems": list(error.problems)})
    except PermanentError as error:
        problems = list(getattr(error, "problems", ())) or [str(error)]
        return _response(400, ingress_binding.refused(problems))
    except TransientError as error:
        log.warning("ingest failed", extra={"error": str(error)})
        return _response(503, {"error": "the bus is unavailable, retry later"})
    return _response(202, ingress_binding.accepted(events))
