"""Saga semantics as a pure state machine, for orchestrators that keep state themselves.

`tick` runs one attempt of the saga's current step and returns the new state and when to
run again. The local executor persists the state between ticks; Step Functions (AWS) and
Cloud Workflows (GCP) run the compiled form of the same rules:

- forward steps in order; `on_success` after the last one;
- a step that fails for a business reason (StepFailed) -> compensations of the completed
  steps, in reverse;
- a step that keeps failing (its Retry exhausted, or a permanent error) -> the same, but
  starting with its own compensation, since it may have half-happened downstream;
- a compensation that keeps failing -> status `failed`: needs attention, no forward step
  runs after that;
- all compensations done -> `on_failure` (records the outcome) -> `cancelled`;
  `on_success` done -> `completed`.
"""

from __future__ import annotations

from typing import Any, Final

from handlers.core.app import App, Retry
from handlers.core.engine import StepOutcome, run_step
from handlers.core.errors import PermanentError
from handlers.core.ports import Ports

ACTIVE: Final = ("running", "compensating")
TERMINAL: Final = ("completed", "cancelled", "failed")


def new_state(saga_id: str, input: dict[str, Any], traceparent: str | None) -> dict[str, Any]:
    return {
        "saga_id": saga_id, "input": dict(input), "traceparent": traceparent,
        "status": "running", "index": 0, "comp_index": -1, "attempt": 0,
        "results": {}, "reason": None, "reason_detail": None, "history": [],
    }


def tick(app: App, ports: Ports, state: dict[str, Any]) -> tuple[dict[str, Any], float | None]:
    """One attempt of the current step; returns (state, seconds until next tick or None)."""
    st = dict(state, results=dict(state["results"]), history=list(state["history"]))
    if st["status"] == "running":
        return _forward(app, ports, st)
    if st["status"] == "compensating":
        return _compensate(app, ports, st)
    return st, None


def _attempt(app: App, ports: Ports, st: dict[str, Any], name: str, phase: str
             ) -> tuple[StepOutcome | None, Exception | None, bool]:
    """(the step's outcome, or the error it raised and whether that error is permanent)."""
    try:
        return run_step(app, ports, st["saga_id"], name, phase, st), None, False
    except PermanentError as error:
        return None, error, True
    except Exception as error:  # noqa: BLE001 - any other failure is retried per policy
        return None, error, False


def _note(st: dict[str, Any], step: str, phase: str, outcome: str, detail: str = "") -> None:
    st["history"].append({"step": step, "phase": phase, "attempt": st["attempt"] + 1,
                          "outcome": outcome, "detail": detail})


def _retry_or_none(retry: Retry, st: dict[str, Any], permanent: bool) -> float | None:
    st["attempt"] += 1
    if permanent or st["attempt"] >= retry.max_attempts:
        return None
    return retry.delay(st["attempt"])


def _forward(app: App, ports: Ports, st: dict[str, Any]) -> tuple[dict[str, Any], float | None]:
    saga = app.saga
    steps = saga.all_steps()
    index = st["index"]
    step = steps[index]
    outcome, error, permanent = _attempt(app, ports, st, step.name, "action")
    if outcome is not None and outcome.ok:
        _note(st, step.name, "action", "ok")
        st["results"][step.name] = dict(outcome.result)
        st["index"], st["attempt"] = index + 1, 0
        if st["index"] == len(steps):
            st["status"] = "completed"
            return st, None
        return st, 0.0
    if outcome is not None:  # business failure: this step did nothing to undo
        _note(st, step.name, "action", "failed", outcome.reason)
        st["reason_detail"] = outcome.detail
        return _begin_compensation(st, outcome.reason, index - 1)
    _note(st, step.name, "action", "error", str(error))
    delay = _retry_or_none(step.retry, st, permanent)
    if delay is not None:
        return st, delay
    reason = f"{step.name}_failed"
    st["reason_detail"] = f"{type(error).__name__}: {error}"
    if saga.on_success is not None and step.name == saga.on_success.name:
        # Shipped: not ours to undo. Resuming it means finishing it.
        st["status"], st["reason"], st["failed_in"] = "failed", reason, "running"
        return st, None
    return _begin_compensation(st, reason, index)


def _begin_compensation(st: dict[str, Any], reason: str,
                        start: int) -> tuple[dict[str, Any], float]:
    st["status"], st["reason"], st["comp_index"], st["attempt"] = "compensating", reason, start, 0
    return st, 0.0


def _compensate(app: App, ports: Ports,
                st: dict[str, Any]) -> tuple[dict[str, Any], float | None]:
    index = st["comp_index"]
    if index < 0:
        return _finish_failure(app, ports, st)
    step = app.saga.steps[index]
    if step.compensate is None:
        st["comp_index"] = index - 1
        return st, 0.0
    done = _must_succeed(app, ports, st, step.name, "compensate", step.compensate_retry,
                         f"compensation {step.name}")
    if not isinstance(done, StepOutcome):
        return st, done
    st["results"][f"{step.name}:compensate"] = dict(done.result)
    st["comp_index"], st["attempt"] = index - 1, 0
    return st, 0.0


def _finish_failure(app: App, ports: Ports,
                    st: dict[str, Any]) -> tuple[dict[str, Any], float | None]:
    final = app.saga.on_failure
    if final is not None:
        done = _must_succeed(app, ports, st, final.name, "action", final.retry, final.name)
        if not isinstance(done, StepOutcome):
            return st, done
        st["results"][final.name] = dict(done.result)
    st["status"] = "cancelled"
    return st, None


def _must_succeed(app: App, ports: Ports, st: dict[str, Any], name: str, phase: str,
                  retry: Retry, what: str) -> StepOutcome | float | None:
    """Run a step that has no failure path of its own (a compensation, `on_failure`).

    Returns its outcome once it succeeds, else the delay before the next attempt, else
    None after marking the saga `failed` (needs attention) when its retries are spent.
    """
    outcome, error, permanent = _attempt(app, ports, st, name, phase)
    if outcome is not None and outcome.ok:
        _note(st, name, phase, "ok")
        return outcome
    if outcome is not None:  # a refusal cannot be retried away
        error, permanent = RuntimeError(f"refused: {outcome.reason}"), True
    _note(st, name, phase, "error", str(error))
    delay = _retry_or_none(retry, st, permanent)
    if delay is not None:
        return delay
    st["status"], st["failed_in"] = "failed", "compensating"
    st["reason"] = f"{st['reason']}; {what} failed: {error}"
    return None


def resume(state: dict[str, Any]) -> dict[str, Any]:
    """A `failed` saga, set to retry the step that stopped it (after an operator's fix).

    It resumes where it stopped: in the forward steps for a saga that failed to finish,
    in its compensations for one that failed to undo; never anywhere else.
    """
    if state["status"] != "failed":
        raise ValueError(f"saga {state['saga_id']} is {state['status']}, not failed")
    return dict(state, status=state.get("failed_in", "compensating"), attempt=0)


def run_to_end(app: App, ports: Ports, state: dict[str, Any],
               max_ticks: int = 1000) -> dict[str, Any]:
    """Drive a saga to a terminal state, ignoring delays (tests and in-process use)."""
    for _ in range(max_ticks):
        state, delay = tick(app, ports, state)
        if delay is None and state["status"] in TERMINAL:
            return state
    raise RuntimeError(f"saga {state['saga_id']} did not finish in {max_ticks} ticks")
