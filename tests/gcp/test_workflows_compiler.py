"""The Workflows compiler's output, structurally (behaviour: test_workflow_emulator)."""

from __future__ import annotations

import pytest
import yaml

from adapters.gcp.workflows import compile_saga, saga_yaml
from handlers.app import APP
from handlers.core.app import Saga, Step

#: The step function's Cloud Run URL (serviceConfig.uri), where Workflows may call it.
URL = "https://p-saga-order-a1b2c3d4e5-uc.a.run.app"


def _steps(workflow: dict) -> dict[str, dict]:
    return {name: body for step in workflow["main"]["steps"] for name, body in step.items()}


def test_yaml_is_the_compiled_definition_in_execution_order() -> None:
    source = saga_yaml(APP.saga, URL)
    assert yaml.safe_load(source) == compile_saga(APP.saga, URL)
    names = [next(iter(s)) for s in compile_saga(APP.saga, URL)["main"]["steps"]]
    forward = [n for n in names if n.startswith("do_")]
    assert forward == [f"do_{s.name}" for s in APP.saga.all_steps()]
    undo = [n for n in names if n.startswith("undo_")]
    assert undo == [f"undo_{s.name}" for s in reversed(APP.saga.steps) if s.compensate]


def test_the_source_does_not_depend_on_which_yaml_emitter_wrote_it() -> None:
    # libyaml's emitter is used when pyyaml has it; the pure-Python one must give the same
    # text, or a machine without libyaml would redeploy an unchanged workflow.
    pure = yaml.dump(compile_saga(APP.saga, URL), Dumper=yaml.SafeDumper, sort_keys=False,
                     width=100, allow_unicode=True)
    assert saga_yaml(APP.saga, URL) == pure


def test_each_step_retries_as_declared_and_only_transient_errors() -> None:
    steps = _steps(compile_saga(APP.saga, URL))
    for step in APP.saga.all_steps():
        call = steps[f"do_{step.name}"]
        assert call["try"]["args"] == {"url": URL, "step": step.name, "phase": "action",
                                       "state": "${state}"}
        assert call["retry"]["max_retries"] == step.retry.max_attempts - 1
        assert call["retry"]["predicate"] == "${transient_error}"
        assert call["retry"]["backoff"]["multiplier"] == step.retry.backoff
    for step in (s for s in APP.saga.steps if s.compensate):
        assert steps[f"undo_{step.name}"]["retry"]["max_retries"] == \
            step.compensate_retry.max_attempts - 1


def test_failure_targets_follow_the_saga_rules() -> None:
    steps = _steps(compile_saga(APP.saga, URL))
    # business failure at k -> compensations k-1..1; exhausted at k -> k..1
    assert steps["failed_reserve_inventory"]["next"] == "undo_payment"
    assert steps["do_reserve_inventory"]["except"]["steps"][0][
        "gave_up_reserve_inventory"]["next"] == "undo_reserve_inventory"
    assert steps["failed_payment"]["next"] == "finish"
    assert steps["do_payment"]["except"]["steps"][0]["gave_up_payment"]["next"] == \
        "undo_payment"
    assert steps["do_ship"]["except"]["steps"][0]["gave_up_ship"]["next"] == \
        "undo_reserve_inventory"
    # the success hook that keeps failing is not undone: needs attention
    assert steps["do_complete_order"]["except"]["steps"][0][
        "gave_up_complete_order"]["next"] == "needs_attention"
    assert "raise" in steps["needs_attention"]


def test_calls_are_authenticated_and_carry_the_idempotency_key() -> None:
    run_step = compile_saga(APP.saga, URL)["run_step"]["steps"][0]["call_function"]
    assert run_step["call"] == "http.post"
    # The token's audience is the called run.app URL: what Cloud Run accepts.
    assert run_step["args"]["auth"] == {"type": "OIDC", "audience": "${url}"}
    assert run_step["args"]["headers"]["Idempotency-Key"] == \
        '${state.saga_id + ":" + step + ":" + phase}'


def test_step_names_that_cannot_be_workflow_identifiers_are_refused() -> None:
    bad = Saga("s", (Step("Bad-Name", lambda ctx: {}),))
    with pytest.raises(ValueError, match="Bad-Name"):
        compile_saga(bad, URL)


def test_a_cloudfunctions_net_step_url_is_refused() -> None:
    """An internal-ingress function rejects Workflows calls at its cloudfunctions.net URL."""
    with pytest.raises(ValueError, match=r"cloudfunctions\.net URL.*run\.app URL"):
        compile_saga(APP.saga, "https://us-central1-p.cloudfunctions.net/p-saga-order")
