"""Compile a `Saga` into Step Functions ASL with the semantics of `saga_runner`.

The execution's JSON state is the saga state (`saga_id`, `input`, `traceparent`,
`results`, `reason`, `reason_detail`). Every Task invokes the saga-steps Lambda with
`{step, phase, idempotency_key, state}`; the Lambda (`lambda_entry.step_handler`) runs
`engine.run_step` and returns the next state with `outcome` "ok" or "failed" (a business
failure). The rules compiled here, per forward step k:

- ok -> next step (after the last: `on_success`, then `Completed`);
- business failure -> compensations k-1..1 in reverse, then `on_failure`, `Cancelled`;
- retries exhausted (or a permanent error, never retried) -> `reason` = "<step>_failed",
  compensations k..1 (the step may have half-happened), then `on_failure`, `Cancelled`;
- `on_success` exhausted, any compensation refusing or exhausting, or `on_failure`
  failing -> `NeedsAttention` (a Fail state: the execution fails and raises an alarm),
  whose cause (`CausePath`) says which step failed and how.

State names use only letters, digits, `-` and `_`, which every tool that shows them
accepts. ASL retry intervals are whole seconds: a declared fraction is rounded up (never retried
sooner than declared). `Retry.max_attempts` counts every attempt; ASL counts retries.
"""

from __future__ import annotations

import math
from typing import Any, Final

from handlers.core.app import Retry, Saga, Step

LAMBDA_INVOKE: Final = "arn:aws:states:::lambda:invoke"
#: errorType the step Lambda raises for a PermanentError: matched first, never retried.
PERMANENT_ERROR: Final = "PermanentStepError"
COMPLETED: Final = "Completed"
CANCELLED: Final = "Cancelled"
NEEDS_ATTENTION: Final = "NeedsAttention"
NEEDS_ATTENTION_ERROR: Final = "SagaNeedsAttention"
#: Pass state copying the Lambda-set `reason` into `$.attention` before NeedsAttention.
RECORD_ATTENTION: Final = "record-attention"
#: Where every path into NeedsAttention leaves its cause (the Fail state's CausePath).
ATTENTION_PATH: Final = "$.attention.reason"
OUTCOME_FIELD: Final = "outcome"
FAILED: Final = "failed"


def action_state(step: Step) -> str:
    return step.name


def compensation_state(step: Step) -> str:
    return f"undo-{step.name}"


def idempotency_key_expression(step: str, phase: str) -> str:
    """ASL intrinsic giving the key `engine.StepContext` uses: `<saga_id>:<step>:<phase>`."""
    return f"States.Format('{{}}:{_escape(step)}:{_escape(phase)}', $.saga_id)"


def _escape(text: str) -> str:
    # Intrinsic string literals escape quotes, braces and backslashes.
    return "".join("\\" + c if c in "'{}\\" else c for c in text)


def _attention(template: str, *paths: str) -> dict[str, Any]:
    """A Pass state recording why the saga needs attention, then failing it. `template`
    is an intrinsic format string: literals in it must already be `_escape`d.

    The caught error's name (`$.error.Error`, e.g. TransientError) is used rather than its
    Cause, which for Lambda is a JSON document with a stack trace, for other errors text.
    """
    args = "".join(f", {p}" for p in paths)
    return {
        "Type": "Pass",
        "Parameters": {"reason.$": f"States.Format('{template}'{args})"},
        "ResultPath": "$.attention",
        "Next": NEEDS_ATTENTION,
    }


def retriers(retry: Retry) -> list[dict[str, Any]]:
    return [
        # Permanent errors first: States.ALL would otherwise retry them.
        {"ErrorEquals": [PERMANENT_ERROR], "MaxAttempts": 0},
        {"ErrorEquals": ["States.ALL"],
         "IntervalSeconds": max(1, math.ceil(retry.interval_seconds)),
         "MaxAttempts": max(0, retry.max_attempts - 1),
         "BackoffRate": float(retry.backoff)},
    ]


def _task(function_arn: str, step: Step, phase: str, retry: Retry, on_error: str,
          next_state: str, comment: str) -> dict[str, Any]:
    return {
        "Type": "Task",
        "Comment": comment,
        "Resource": LAMBDA_INVOKE,
        "Parameters": {
            "FunctionName": function_arn,
            "Payload": {
                "step": step.name,
                "phase": phase,
                "idempotency_key.$": idempotency_key_expression(step.name, phase),
                "state.$": "$",
            },
        },
        "OutputPath": "$.Payload",
        "Retry": retriers(retry),
        "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": on_error}],
        "Next": next_state,
    }


def _branch(on_failed: str, otherwise: str) -> dict[str, Any]:
    return {
        "Type": "Choice",
        "Choices": [{"Variable": f"$.{OUTCOME_FIELD}", "StringEquals": FAILED,
                     "Next": on_failed}],
        "Default": otherwise,
    }


def compile_saga(saga: Saga, function_arn: str) -> dict[str, Any]:
    """The state machine definition (a dict; `json.dumps` it) for `saga`."""
    steps = saga.steps
    forward = saga.all_steps()
    states: dict[str, Any] = {}
    final_failure = action_state(saga.on_failure) if saga.on_failure else CANCELLED

    def compensations_from(index: int) -> str:
        """First state of the compensation chain covering steps index..0."""
        for i in range(min(index, len(steps) - 1), -1, -1):
            if steps[i].compensate is not None:
                return compensation_state(steps[i])
        return final_failure

    for index, step in enumerate(forward):
        name = action_state(step)
        is_final = saga.on_success is not None and index == len(forward) - 1
        after = action_state(forward[index + 1]) if index + 1 < len(forward) else COMPLETED
        exhausted = f"{name}-exhausted"
        states[name] = _task(function_arn, step, "action", step.retry, exhausted,
                             f"{name}-outcome", f"saga step {index + 1}: {step.name}")
        states[f"{name}-outcome"] = _branch(compensations_from(index - 1), after)
        if is_final:  # shipped: not ours to undo
            states[exhausted] = _attention(f"{_escape(step.name)}_failed: {{}}", "$.error.Error")
        else:
            states[exhausted] = {
                "Type": "Pass",
                "Comment": "retries exhausted: the step may have half-happened, so its own "
                           "compensation runs too",
                "Result": f"{step.name}_failed",
                "ResultPath": "$.reason",
                "Next": compensations_from(index),
            }

    for index, step in enumerate(steps):
        if step.compensate is None:
            continue
        name = compensation_state(step)
        states[name] = _task(function_arn, step, "compensate", step.compensate_retry,
                             f"{name}-failed", f"{name}-outcome", f"compensation of {step.name}")
        states[f"{name}-outcome"] = _branch(RECORD_ATTENTION, compensations_from(index - 1))
        states[f"{name}-failed"] = _attention(
            f"{{}}; compensation {_escape(step.name)} failed: {{}}", "$.reason", "$.error.Error")

    if saga.on_failure is not None:
        final = saga.on_failure
        states[action_state(final)] = _task(function_arn, final, "action", final.retry,
                                            f"{final.name}-failed", f"{final.name}-outcome",
                                            "record the failure (after every compensation)")
        states[f"{final.name}-outcome"] = _branch(RECORD_ATTENTION, CANCELLED)
        states[f"{final.name}-failed"] = _attention(f"{{}}; {_escape(final.name)} failed: {{}}",
                                                    "$.reason", "$.error.Error")

    states[COMPLETED] = {"Type": "Pass", "Result": "completed", "ResultPath": "$.status",
                         "End": True}
    states[CANCELLED] = {"Type": "Pass", "Result": "cancelled", "ResultPath": "$.status",
                         "Comment": "compensated: every completed step was undone",
                         "End": True}
    states[RECORD_ATTENTION] = {
        "Type": "Pass", "Parameters": {"reason.$": "$.reason"}, "ResultPath": "$.attention",
        "Next": NEEDS_ATTENTION,
    }
    states[NEEDS_ATTENTION] = {
        "Type": "Fail", "Error": NEEDS_ATTENTION_ERROR, "CausePath": ATTENTION_PATH,
        "Comment": "a compensation or a final step kept failing; no forward step runs after "
                   "this. The cause says why: fix it, then redrive the execution.",
    }
    return {
        "Comment": f"Saga '{saga.name}', compiled from handlers/ (do not edit by hand)",
        "StartAt": action_state(forward[0]),
        "States": states,
    }


def execution_input(saga_id: str, input: dict[str, Any], traceparent: str | None) -> dict[str, Any]:
    """The execution's initial state: the shape `run_step` and the steps read."""
    return {"saga_id": saga_id, "input": dict(input), "traceparent": traceparent,
            "results": {}, "reason": None, "reason_detail": None}


def task_functions(definition: dict[str, Any]) -> set[str]:
    """Every function a definition invokes (what its role must be allowed to call)."""
    return {s["Parameters"]["FunctionName"] for s in definition["States"].values()
            if s["Type"] == "Task"}
