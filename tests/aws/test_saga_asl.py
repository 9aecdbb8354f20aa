"""The compiled ASL means what `saga_runner` means: same steps, same order, same end.

A synthetic saga whose steps follow a plan in the execution input (fail for a business
reason, fail transiently every time, refuse to compensate) runs twice: in-process through
`saga_runner.run_to_end` over memory ports, and as compiled ASL in moto's Step Functions
interpreter through the Lambda entry. The sequence of step invocations and the final
status must be the same, for a failure at every position k.

Retry delays are compressed (moto's interpreter really sleeps); the number of attempts is
not, and is part of what is compared.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from adapters.aws import asl
from adapters.aws.stepfunctions_starter import StepFunctionsStarter
from adapters.memory import memory_ports
from handlers.catalog import CATALOG
from handlers.core import saga_runner
from handlers.core.app import App, Retry, Saga, Step
from handlers.core.context import StepContext
from handlers.core.engine import PROCESSED
from handlers.core.errors import StepFailed, TransientError
from handlers.core.ports import SAGAS
from handlers.saga import ORDER_SAGA
from tests.aws.moto_stack import MotoStack, fast_saga_retries

CALLS: list[tuple[str, str]] = []


def _act(name: str, phase: str):  # type: ignore[no-untyped-def]
    def run(ctx: StepContext) -> Mapping[str, Any]:
        CALLS.append((name, phase))
        plan = ctx.state["input"]
        if plan.get("fail") == name and phase == "action":
            if plan["how"] == "business":
                raise StepFailed("nope", f"{name} said no")
            raise TransientError(f"{name} is down")
        if plan.get("refuse") == name and phase == "compensate":
            raise TransientError(f"cannot undo {name}")
        if phase == "action" and name == "cancel":
            assert ctx.state["reason"], "on_failure sees the reason"
        return {"did": f"{name}:{phase}"}
    return run


FAST = Retry(2, 1.0, 1.0)
SYNTHETIC = Saga(
    name="demo",
    steps=(
        Step("a", _act("a", "action"), compensate=_act("a", "compensate"), retry=FAST,
             compensate_retry=FAST),
        Step("b", _act("b", "action"), retry=FAST),  # nothing to undo
        Step("c", _act("c", "action"), compensate=_act("c", "compensate"), retry=FAST,
             compensate_retry=FAST),
        Step("d", _act("d", "action"), retry=FAST),
    ),
    on_success=Step("done", _act("done", "action"), retry=FAST),
    on_failure=Step("cancel", _act("cancel", "action"), retry=FAST),
    stores=(),
)
APP = App(name="demo", catalog=CATALOG, consumers=(), saga=SYNTHETIC,
          tables=(PROCESSED, SAGAS))
STATUS = {"completed": "SUCCEEDED", "cancelled": "SUCCEEDED", "failed": "FAILED"}


@pytest.fixture(scope="module")
def stack(aws_module: None) -> Iterator[MotoStack]:
    with fast_saga_retries():
        stack = MotoStack.create(APP)
        with stack.lambda_service():
            yield stack


def _local(plan: dict[str, Any]) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    CALLS.clear()
    state = saga_runner.run_to_end(APP, memory_ports(),
                                   saga_runner.new_state("s-1", plan, None))
    return list(CALLS), state


def _moto(stack: MotoStack, plan: dict[str, Any], saga_id: str) -> tuple[
        list[tuple[str, str]], dict[str, Any]]:
    CALLS.clear()
    starter = StepFunctionsStarter(stack.client("stepfunctions"), stack.state_machine_arn,
                                   stack.store())
    assert starter.start(saga_id, plan, None) is True
    # A duplicate start while it runs: STANDARD answers with the same execution.
    starter.start(saga_id, plan, None)
    stack.run_until_quiet()
    assert starter.start(saga_id, plan, None) is False  # closed: ExecutionAlreadyExists
    executions = stack.client("stepfunctions").list_executions(
        stateMachineArn=stack.state_machine_arn)["executions"]
    assert [e["name"] for e in executions].count(saga_id) == 1
    return list(CALLS), stack.execution(saga_id)


PLANS: list[dict[str, Any]] = [{}] + [
    {"fail": step, "how": how} for step in ("a", "b", "c", "d", "done")
    for how in ("business", "transient")
] + [{"fail": "d", "how": "business", "refuse": "c"},
     {"fail": "d", "how": "transient", "refuse": "a"}]


@pytest.mark.parametrize("plan", PLANS, ids=lambda p: "-".join(map(str, p.values())) or "ok")
def test_moto_runs_the_saga_like_the_local_executor(stack: MotoStack,
                                                    plan: dict[str, Any]) -> None:
    expected_calls, local = _local(plan)
    calls, execution = _moto(stack, plan, f"plan-{PLANS.index(plan)}")
    assert calls == expected_calls
    assert execution["status"] == STATUS[local["status"]]
    if execution["status"] == "SUCCEEDED":
        assert json.loads(execution["output"])["status"] == local["status"]
    else:
        # Same reason, up to the error's wording (ASL has the error's name, not its text).
        assert execution["error"] == asl.NEEDS_ATTENTION_ERROR
        assert execution["cause"].rsplit(": ", 1)[0] == local["reason"].rsplit(": ", 1)[0]


def test_business_failure_reason_reaches_on_failure(stack: MotoStack) -> None:
    _, execution = _moto(stack, {"fail": "c", "how": "business"}, "s-2")
    output = json.loads(execution["output"])
    assert (output["reason"], output["reason_detail"]) == ("nope", "c said no")


def test_exhausted_step_reason_names_the_step_and_error(stack: MotoStack) -> None:
    calls, execution = _moto(stack, {"fail": "b", "how": "transient"}, "s-3")
    output = json.loads(execution["output"])
    assert output["reason"] == "b_failed"
    assert output["reason_detail"] == "TransientError: b is down"
    assert calls.count(("b", "action")) == FAST.max_attempts


# --- the compiled definition itself --------------------------------------------------------


def test_order_saga_definition_shape() -> None:
    definition = asl.compile_saga(ORDER_SAGA, "arn:fn")
    states = definition["States"]
    assert definition["StartAt"] == "create_order"
    tasks = {n: s for n, s in states.items() if s["Type"] == "Task"}
    assert sorted(tasks) == sorted([
        "create_order", "payment", "reserve_inventory", "ship", "complete_order",
        "undo-payment", "undo-reserve_inventory", "cancel_order"])
    for task in tasks.values():
        payload = task["Parameters"]["Payload"]
        assert task["Resource"] == asl.LAMBDA_INVOKE
        assert payload["idempotency_key.$"].startswith("States.Format('{}:")
        assert payload["state.$"] == "$"
        assert task["Retry"][0] == {"ErrorEquals": [asl.PERMANENT_ERROR], "MaxAttempts": 0}
        assert task["Catch"][0]["ErrorEquals"] == ["States.ALL"]
    payment = tasks["payment"]["Retry"][1]
    assert payment == {"ErrorEquals": ["States.ALL"], "IntervalSeconds": 1, "MaxAttempts": 2,
                       "BackoffRate": 2.0}
    # 0.5 s is not expressible in ASL: rounded up, never retried sooner than declared.
    assert tasks["reserve_inventory"]["Retry"][1]["IntervalSeconds"] == 1
    assert tasks["undo-payment"]["Retry"][1]["MaxAttempts"] == 4  # compensate_retry: 5 in all
    # Compensations run in reverse and end in the cancel step.
    assert states["reserve_inventory-outcome"]["Choices"][0]["Next"] == "undo-payment"
    assert states["reserve_inventory-exhausted"]["Next"] == "undo-reserve_inventory"
    assert states["undo-reserve_inventory-outcome"]["Default"] == "undo-payment"
    assert states["undo-payment-outcome"]["Default"] == "cancel_order"
    assert states["payment-outcome"]["Choices"][0]["Next"] == "cancel_order"
    assert states["complete_order"]["Catch"][0]["Next"] == "complete_order-exhausted"
    assert states["complete_order-exhausted"]["Next"] == asl.NEEDS_ATTENTION
    assert states["undo-payment"]["Catch"][0]["Next"] == "undo-payment-failed"
    assert states["undo-payment-failed"]["Parameters"] == {"reason.$": (
        "States.Format('{}; compensation payment failed: {}', $.reason, $.error.Error)")}
    assert states["undo-payment-outcome"]["Choices"][0]["Next"] == asl.RECORD_ATTENTION
    assert states[asl.NEEDS_ATTENTION] == {
        "Type": "Fail", "Error": asl.NEEDS_ATTENTION_ERROR, "CausePath": "$.attention.reason",
        "Comment": states[asl.NEEDS_ATTENTION]["Comment"]}
    assert asl.task_functions(definition) == {"arn:fn"}
    assert all(set(n) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
               for n in states)


def test_definition_is_deterministic() -> None:
    first = json.dumps(asl.compile_saga(ORDER_SAGA, "arn:fn"))
    assert first == json.dumps(asl.compile_saga(ORDER_SAGA, "arn:fn"))
