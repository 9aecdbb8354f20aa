"""`switchyard cost`: hand-computed cases against the price table and the synthesized graph.

Each expected figure is worked out in the comment next to it from the published price
(infra/prices.json), so a wrong formula, unit or price lookup fails here. What the graph
contributes (memory, number of event source mappings, saga path) is derived from the
live program or the app description, never typed in.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.main import main as cli_main
from handlers.app import APP
from infra.cost import (
    CostError,
    asl_success_path,
    deployed,
    estimate,
    load_prices,
    measured_per_event,
    render_compare,
    workflow_success_path,
)
from tests.infra.pulumi_harness import run_program

# 400 us of CPU, 1 read and 2 single-item writes per event, no multi-item transactions.
PER_EVENT = {"cpu_us": 400.0, "reads": 1.0, "writes": 2.0, "transactional_writes": 0.0}
PRICES = load_prices()


@pytest.fixture(scope="module")
def aws_rec():  # type: ignore[no-untyped-def]
    return run_program({"cloud": "aws"}, "dev-aws")


@pytest.fixture(scope="module")
def gcp_rec():  # type: ignore[no-untyped-def]
    return run_program({"cloud": "gcp"}, "dev-gcp")


def lines(est) -> dict[str, float]:  # type: ignore[no-untyped-def]
    return {line.service: line.usd for line in est.lines}


def test_aws_hand_computed(aws_rec) -> None:  # type: ignore[no-untyped-def]
    est = estimate(aws_rec, 1000, sagas_per_day=0, per_event=PER_EVENT)
    got = lines(est)
    # 1,000 events/day x 30 days = 30,000 events.
    # EventBridge: 30,000 x 1.00 / 1e6 = 0.03
    assert got["EventBridge"] == pytest.approx(0.03)
    # Lambda: wall = 0.4 ms CPU + 3 store calls x 5 ms = 15.4 ms, billed 16 ms;
    # 30,000 x 0.016 s x 256/1024 GB = 120 GB-s x 0.0000133334 = 0.00160001
    assert got["Lambda duration"] == pytest.approx(120 * 0.0000133334)
    # requests: 30,000 x 0.20 / 1e6 = 0.006
    assert got["Lambda requests"] == pytest.approx(0.006)
    # DynamoDB: 30,000 x 2 WRU = 60,000 x 0.625 / 1e6 = 0.0375; 30,000 RRU x 0.125/1e6
    assert got["DynamoDB writes"] == pytest.approx(0.0375)
    assert got["DynamoDB reads"] == pytest.approx(0.00375)
    # SQS: 30,000 x 3 = 90,000 requests, plus idle polling: per mapping 5 pollers x
    # 86,400/20 = 21,600 polls/day x 30 = 648,000; x 0.40 / 1e6
    mappings = len(aws_rec.of_type("aws:lambda/eventSourceMapping:EventSourceMapping"))
    assert got["SQS"] == pytest.approx((90_000 + mappings * 648_000) * 0.40 / 1e6)
    # No sagas: no transitions, no notification publishes.
    assert got["Step Functions"] == 0 and got["SNS"] == 0
    # Fixed: 0.10 per alarm, 1.00 per KMS key, as many as the graph has.
    assert got["CloudWatch alarms"] == pytest.approx(
        0.10 * len(aws_rec.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")))
    assert est.total == pytest.approx(sum(got.values()))


def test_aws_sagas_and_transactions(aws_rec) -> None:  # type: ignore[no-untyped-def]
    per_event = {**PER_EVENT, "transactional_writes": 2.0}
    est = estimate(aws_rec, 0, sagas_per_day=100, per_event=per_event)
    got = lines(est)
    # Each step is a Task then its outcome Choice, then the final Pass: 2n + 1 states
    # for n = saga steps + on_success.
    n = len(APP.saga.steps) + (APP.saga.on_success is not None)
    # 100 x 30 = 3,000 executions x (2n + 1) transitions x 0.025 / 1,000
    assert got["Step Functions"] == pytest.approx(3_000 * (2 * n + 1) * 0.025 / 1000)
    # 3,000 x n step invocations, each 2 writes, both in transactions: 4 WRU each
    assert got["DynamoDB writes"] == pytest.approx(3_000 * n * 4 * 0.625 / 1e6)
    # one notification per saga: 3,000 x 0.50 / 1e6
    assert got["SNS"] == pytest.approx(0.0015)


def test_gcp_hand_computed(gcp_rec) -> None:  # type: ignore[no-untyped-def]
    est = estimate(gcp_rec, 1000, sagas_per_day=0, per_event=PER_EVENT)
    got = lines(est)
    # wall = 0.4 ms + 3 x 8 ms = 24.4 ms, billed in 100 ms steps: 0.1 s per event.
    # 256 MB gets 0.167 vCPU: 30,000 x 0.1 x 0.167 = 501 vCPU-s x 0.000024
    assert got["Functions CPU"] == pytest.approx(501 * 0.000024)
    # 30,000 x 0.1 s x 0.25 GiB = 750 GiB-s x 0.0000025
    assert got["Functions memory"] == pytest.approx(750 * 0.0000025)
    assert got["Functions invocations"] == pytest.approx(30_000 * 0.40 / 1e6)
    # Firestore: 60,000 writes x 0.09 / 100,000; 30,000 reads x 0.03 / 100,000
    assert got["Firestore writes"] == pytest.approx(0.054)
    assert got["Firestore reads"] == pytest.approx(0.009)
    # Pub/Sub: each event published once and delivered to each push subscription,
    # 1,000 bytes each: 30,000 x (1 + s) x 1,000 B / 2^40 x 40 USD/TiB
    subs = sum(1 for r in gcp_rec.of_type("gcp:pubsub/subscription:Subscription")
               if r.inputs.get("pushConfig"))
    assert got["Pub/Sub"] == pytest.approx(30_000 * (1 + subs) * 1000 / 2**40 * 40)
    assert got["Workflows"] == 0


def test_memory_comes_from_the_graph() -> None:
    small = run_program({"cloud": "aws"}, "dev-aws")
    large = run_program({"cloud": "aws", "memory": 1024}, "dev-aws")
    a = lines(estimate(small, 1000, sagas_per_day=0, per_event=PER_EVENT))
    b = lines(estimate(large, 1000, sagas_per_day=0, per_event=PER_EVENT))
    assert b["Lambda duration"] == pytest.approx(4 * a["Lambda duration"])  # 1024 / 256
    assert deployed(large).consumer_memory_mb == (1024,) * len(APP.consumers)


def test_saga_paths_are_read_from_the_compiled_definitions(aws_rec, gcp_rec) -> None:  # type: ignore[no-untyped-def]
    n = len(APP.saga.steps) + (APP.saga.on_success is not None)
    machine = aws_rec.one("aws:sfn/stateMachine:StateMachine")
    assert asl_success_path(machine.inputs["definition"]) == (2 * n + 1, n)
    workflow = gcp_rec.one("gcp:workflows/workflow:Workflow")
    steps, calls = workflow_success_path(workflow.inputs["sourceContents"])
    assert calls == n  # one HTTP call of the step function per step
    assert steps > 3 * n  # each step is at least try, check and record
    assert deployed(gcp_rec).saga_task_calls == n


def test_a_hand_written_path_is_walked_as_stated() -> None:
    asl = json.dumps({"StartAt": "a", "States": {
        "a": {"Type": "Task", "Next": "c"},
        "c": {"Type": "Choice", "Choices": [{"Next": "bad"}], "Default": "b"},
        "bad": {"Type": "Fail"},
        "b": {"Type": "Pass", "End": True}}})
    assert asl_success_path(asl) == (3, 1)  # a, c, b: one Task
    yaml_source = (
        "main:\n  steps:\n  - one:\n      call: sub\n  - two:\n      switch:\n"
        "      - condition: true\n        next: four\n  - three:\n      assign: []\n"
        "  - four:\n      return: 1\n"
        "sub:\n  steps:\n  - post:\n      call: http.post\n  - done:\n      return: 2\n")
    # main: one (+ sub: post, done = 2 steps, 1 call), two, four -> 5 steps, 1 call
    assert workflow_success_path(yaml_source) == (5, 1)


def test_compare_shows_both_clouds_and_the_seed_baseline() -> None:
    text = render_compare(10_000)
    assert "AWS (dev-aws)" in text and "GCP (dev-gcp)" in text
    assert "2,500.00" in text and "three always-on servers" in text
    assert text.count("total") >= 2


def test_price_table_entries_need_source_and_date(tmp_path: Path) -> None:
    broken = json.loads(json.dumps(PRICES))
    del broken["aws"]["prices"]["sqs_requests"]["source"]
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(broken))
    with pytest.raises(CostError, match="aws.sqs_requests lacks source"):
        load_prices(path)
    for cloud in ("aws", "gcp"):
        for price in PRICES[cloud]["prices"].values():
            assert price["source"].startswith(("AWS", "Amazon", "Cloud", "Pub/Sub",
                                               "Firestore", "Workflows"))
            assert len(price["date"]) == 10


def test_measured_per_event_is_read_from_the_bench_results(tmp_path: Path) -> None:
    path = tmp_path / "latest.json"
    path.write_text(json.dumps({"date": "2026-01-02", "per_event": {"gcp": {
        "cpu_us": 123, "reads": 1, "writes": 2, "transactional_writes": 0.5}}}))
    values, source = measured_per_event("gcp", PRICES, path)
    assert values["cpu_us"] == 123 and "2026-01-02" in source
    values, source = measured_per_event("gcp", PRICES, tmp_path / "missing.json")
    assert values["cpu_us"] == PRICES["assumptions"]["default_per_event"]["cpu_us"]
    assert "default" in source


def test_cli_refuses_bad_input(capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit):
        cli_main(["cost", "--stack", "dev-aws", "--events-per-day", "-5"])
    assert "must be 0 or more" in capsys.readouterr().err
    assert cli_main(["cost", "--stack", "nope", "--events-per-day", "10"]) == 2
    assert "Pulumi.nope.yaml" in capsys.readouterr().err


def test_cli_prints_a_total(capsys) -> None:  # type: ignore[no-untyped-def]
    assert cli_main(["cost", "--stack", "dev-gcp", "--events-per-day", "1,000"]) == 0
    out = capsys.readouterr().out
    assert "dev-gcp (gcp): 1,000 events/day" in out and "total" in out
