"""Compile the app's saga into a Cloud Workflows definition (YAML).

The workflow is the same state machine as `handlers.core.saga_runner`, unrolled:

- forward steps in order, then `on_success`; each is an authenticated (OIDC) HTTP call to
  the saga step function at its Cloud Run `run.app` URL (an internal-ingress function
  accepts a Workflows call only there, not at its cloudfunctions.net URL), carrying the
  saga state and the step's idempotency key (saga id : step : phase), retried as the
  step's `Retry` declares, only for transient answers (429, 5xx, no answer at all);
- a business failure (`ok: false`) at step k -> compensations k-1..1, in reverse;
- a step whose retries are exhausted (or that answered 4xx: permanent) -> compensations
  k..1, since it may have half-happened downstream; when that step is `on_success`,
  nothing is undone and the saga needs attention;
- after the compensations, `on_failure` (e.g. cancel the order) -> `cancelled`;
- a compensation or `on_failure` that keeps failing (or refuses) -> the execution fails
  with a `SagaNeedsAttention` error (alerted on); no forward step runs after that.

Expressions stay within what both Cloud Workflows and the workflows-emulator (which
evaluates them as Python) understand: attribute access, `+` on strings, `==`, `>=`, `or`,
and `"key" in map`.
"""

from __future__ import annotations

import math
import re
from typing import Any, Final
from urllib.parse import urlsplit

from handlers.core.app import Retry, Saga, Step

STATE: Final = "state"
RUN_STEP: Final = "run_step"
TRANSIENT: Final = "transient_error"
NEEDS_ATTENTION: Final = "needs_attention"
CANCELLED: Final = "cancelled"
COMPLETED: Final = "completed"
#: Cloud Workflows caps a backoff delay at this many seconds.
MAX_DELAY_S: Final = 60
#: Host suffix of gen2 functions' legacy URLs (never a valid target here, see compile_saga).
CLOUDFUNCTIONS_HOST: Final = ".cloudfunctions.net"
_IDENT: Final = re.compile(r"^[a-z][a-z0-9_]*$")


def _x(expression: str) -> str:
    return "${" + expression + "}"


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _retry(retry: Retry) -> dict[str, Any]:
    # Workflows' schema types backoff delays as whole seconds: a sub-second first delay
    # is rounded up to 1 s (waiting a little longer never breaks a retry policy).
    return {
        "predicate": _x(TRANSIENT),
        "max_retries": retry.max_attempts - 1,
        "backoff": {"initial_delay": max(1, math.ceil(retry.interval_seconds)),
                    "max_delay": MAX_DELAY_S, "multiplier": _number(retry.backoff)},
    }


def _literal(text: str) -> str:
    if "}" in text or '"' in text or "\\" in text:
        raise ValueError(f"cannot embed {text!r} in a workflow expression")
    return '"' + text + '"'


class _Compiler:
    def __init__(self, saga: Saga, url: str, timeout_s: int) -> None:
        self.saga = saga
        self.url = url
        self.timeout_s = timeout_s
        self.forward = saga.all_steps()
        names = [s.name for s in self.forward] + (
            [saga.on_failure.name] if saga.on_failure else [])
        bad = [n for n in names if not _IDENT.match(n)]
        if bad:
            raise ValueError(f"saga step names must match {_IDENT.pattern}: {bad}")

    # labels ----------------------------------------------------------------------------
    def undo_label(self, index: int) -> str:
        """Where compensation starts when steps 0..index may need undoing."""
        for i in range(min(index, len(self.saga.steps) - 1), -1, -1):
            if self.saga.steps[i].compensate is not None:
                return f"undo_{self.saga.steps[i].name}"
        return "finish" if self.saga.on_failure else CANCELLED

    # pieces ----------------------------------------------------------------------------
    def call(self, step: Step, phase: str, retry: Retry, on_error: list[dict[str, Any]]
             ) -> dict[str, Any]:
        return {
            "try": {"call": RUN_STEP,
                    "args": {"url": self.url, "step": step.name, "phase": phase,
                             "state": _x(STATE)},
                    "result": "resp"},
            "retry": _retry(retry),
            "except": {"as": "e", "steps": on_error},
        }

    def forward_steps(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        last = len(self.saga.steps)
        for k, step in enumerate(self.forward):
            is_success_hook = k == last
            exhausted_next = NEEDS_ATTENTION if is_success_hook else self.undo_label(k)
            out.append({f"do_{step.name}": self.call(step, "action", step.retry, [
                {f"gave_up_{step.name}": {
                    "assign": [{f"{STATE}.reason": f"{step.name}_failed"},
                               {f"{STATE}.reason_detail": _x("e.message")}],
                    "next": exhausted_next}}])})
            out.append({f"check_{step.name}": {
                "switch": [{"condition": _x("resp.ok"), "next": f"record_{step.name}"}],
                "next": f"failed_{step.name}"}})
            out.append({f"failed_{step.name}": {
                "assign": [{f"{STATE}.reason": _x("resp.reason")},
                           {f"{STATE}.reason_detail": _x("resp.detail")}],
                "next": self.undo_label(k - 1)}})
            out.append({f"record_{step.name}": {
                "assign": [{f"{STATE}.results.{step.name}": _x("resp.result")}]}})
        out.append({COMPLETED: {"return": {
            "status": COMPLETED, "saga_id": _x(f"{STATE}.saga_id"),
            "results": _x(f"{STATE}.results")}}})
        return out

    def compensation_steps(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for step in reversed(self.saga.steps):
            if step.compensate is not None:
                out += self.must_succeed(f"undo_{step.name}", step, "compensate",
                                         step.compensate_retry, f"compensation {step.name}",
                                         f"undo_{step.name}")
        return out

    def must_succeed(self, label: str, step: Step, phase: str, retry: Retry, what: str,
                     result_key: str) -> list[dict[str, Any]]:
        """A call with no failure path of its own (a compensation, `on_failure`): a refusal
        or spent retries -> needs attention, worded as `saga_runner._must_succeed` does."""
        failed = _literal(f"; {what} failed: ")
        refused = _literal(f"; {what} failed: refused: ")
        return [
            {label: self.call(step, phase, retry, [{f"gave_up_{label}": {
                "assign": [{f"{STATE}.reason": _x(f"{STATE}.reason + {failed} + e.message")}],
                "next": NEEDS_ATTENTION}}])},
            {f"check_{label}": {
                "switch": [{"condition": _x("resp.ok"), "next": f"done_{label}"}],
                "next": f"refused_{label}"}},
            {f"refused_{label}": {
                "assign": [{f"{STATE}.reason": _x(f"{STATE}.reason + {refused} + resp.reason")}],
                "next": NEEDS_ATTENTION}},
            {f"done_{label}": {
                "assign": [{f"{STATE}.results.{result_key}": _x("resp.result")}]}},
        ]

    def finish_steps(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        final = self.saga.on_failure
        if final is not None:
            out += self.must_succeed("finish", final, "action", final.retry, final.name,
                                     final.name)
        out.append({CANCELLED: {"return": {
            "status": CANCELLED, "saga_id": _x(f"{STATE}.saga_id"),
            "reason": _x(f"{STATE}.reason"), "reason_detail": _x(f"{STATE}.reason_detail"),
            "results": _x(f"{STATE}.results")}}})
        out.append({NEEDS_ATTENTION: {"raise": {
            "message": _x(_literal("saga needs attention: ") + f" + {STATE}.reason"),
            "tags": ["SagaNeedsAttention"],
            "saga_id": _x(f"{STATE}.saga_id"),
            "results": _x(f"{STATE}.results")}}})
        return out

    def workflow(self) -> dict[str, Any]:
        init: dict[str, Any] = {"init": {"assign": [{STATE: {
            "saga_id": _x("args.saga_id"), "input": _x("args.input"),
            "traceparent": _x("args.traceparent"), "results": {}, "reason": None,
            "reason_detail": None}}]}}
        return {
            "main": {"params": ["args"],
                     "steps": [init, *self.forward_steps(), *self.compensation_steps(),
                               *self.finish_steps()]},
            RUN_STEP: {
                "params": ["url", "step", "phase", "state"],
                "steps": [
                    {"call_function": {
                        "call": "http.post",
                        "args": {
                            "url": _x("url"),
                            # The ID token's audience is the service's own run.app
                            # URL, the one thing Cloud Run accepts as the audience of
                            # a call to that URL (Workflows' default audience is the
                            # called URL, said here so nothing depends on a default).
                            "auth": {"type": "OIDC", "audience": _x("url")},
                            "timeout": self.timeout_s,
                            "headers": {"Idempotency-Key":
                                        _x('state.saga_id + ":" + step + ":" + phase')},
                            "body": {"saga_id": _x("state.saga_id"), "step": _x("step"),
                                     "phase": _x("phase"), "state": _x("state")},
                        },
                        "result": "response"}},
                    {"answer": {"return": _x("response.body")}},
                ],
            },
            # Retry only what can get better: throttling, server errors, no answer at all.
            # A 4xx is the step function saying "permanent": go to the compensations.
            TRANSIENT: {
                "params": ["e"],
                "steps": [
                    {"has_code": {"switch": [{"condition": _x('"code" in e'),
                                              "next": "by_code"}]}},
                    {"no_answer": {"return": True}},
                    {"by_code": {"return": _x("e.code == 429 or e.code >= 500")}},
                ],
            },
        }


def compile_saga(saga: Saga, step_url: str, *, timeout_s: int = 60) -> dict[str, Any]:
    """The workflow definition (as data) for `saga`, whose steps are served at `step_url`.

    Refuses a cloudfunctions.net URL: the step function has internal-only ingress, and
    Cloud Run counts a Workflows call as internal only at the service's run.app URL.
    """
    host = urlsplit(step_url).hostname or ""
    if host.endswith(CLOUDFUNCTIONS_HOST):
        raise ValueError(f"saga step URL {step_url!r} is a cloudfunctions.net URL: an "
                         "internal-ingress function takes Workflows calls only at its "
                         "run.app URL (the function's serviceConfig.uri)")
    return _Compiler(saga, step_url, timeout_s).workflow()


def to_yaml(workflow: dict[str, Any]) -> str:
    """YAML source for Cloud Workflows, keys in definition order (execution order)."""
    import yaml  # pyyaml: available where the stack is built (a pulumi dependency)

    # libyaml's emitter when pyyaml was built with it: the same text, several times faster.
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(workflow, Dumper=dumper, sort_keys=False, width=100, allow_unicode=True)


def saga_yaml(saga: Saga, step_url: str, *, timeout_s: int = 60) -> str:
    return to_yaml(compile_saga(saga, step_url, timeout_s=timeout_s))
