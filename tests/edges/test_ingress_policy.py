"""One ingress policy, three front doors: the same request gets the same verdict from the
local server's `POST /events` (a real socket), the AWS API function (API Gateway's
payload, moto account) and the GCP ingest function (in-memory ports).

The table is `tests.edges.cases.INGRESS`; a 202 must have published exactly the events
the request carried, a 400 must name every listed problem and have published nothing.
"""

from __future__ import annotations

import base64
import http.client
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from adapters.aws import lambda_entry
from adapters.aws.runtime import AwsRuntime, reset_runtime, runtime
from adapters.aws.settings import Settings as AwsSettings
from adapters.aws.topology import TableSpec
from adapters.gcp.entry import Runtime as GcpRuntime
from adapters.gcp.entry import process_ingest
from adapters.gcp.settings import Settings as GcpSettings
from adapters.local.http_server import make_server
from adapters.local.runtime import Runtime as LocalRuntime
from adapters.memory import MemoryPublisher, memory_ports
from handlers.app import APP
from tests.edges.cases import INGRESS, Ingress

#: (status, body text, events published) for one request at one front door.
Answer = tuple[int, str, int]
Door = Callable[[dict[str, str], bytes], Answer]


@pytest.fixture(scope="module")
def local_door(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Door]:
    rt = LocalRuntime(tmp_path_factory.mktemp("ingress") / "ingress.db")
    server = make_server(rt, port=0, threads=2)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()

    def door(headers: dict[str, str], body: bytes) -> Answer:
        before = rt.counts()["events"]
        conn = http.client.HTTPConnection("127.0.0.1", server.effective_port, timeout=30)
        try:
            conn.request("POST", "/events", body=body, headers=headers)
            response = conn.getresponse()
            status, text = response.status, response.read().decode()
        finally:
            conn.close()
        return status, text, rt.counts()["events"] - before

    yield door
    server.close()
    thread.join(10)
    rt.close()


@pytest.fixture(scope="module")
def aws_door(aws_module: None) -> Iterator[Door]:
    tables = {t: f"t-{t}" for t in APP.tables}
    for logical, physical in tables.items():
        boto3.client("dynamodb").create_table(**TableSpec(logical).create_table_kwargs(physical))
    reset_runtime(AwsRuntime(AwsSettings(consumer="api", tables=tables, bus_name="bus"), APP))
    published = MemoryPublisher()
    runtime().ports.publisher = published

    def door(headers: dict[str, str], body: bytes) -> Answer:
        before = len(published.published)
        # API Gateway (HTTP API, payload 2.0) lower-cases header names and base64-encodes
        # a body it does not know to be text.
        answer = lambda_entry.api_handler({
            "headers": {k.lower(): v for k, v in headers.items()}, "isBase64Encoded": True,
            "body": base64.b64encode(body).decode()})
        return answer["statusCode"], answer["body"], len(published.published) - before

    yield door
    reset_runtime(None)


@pytest.fixture(scope="module")
def gcp_door() -> Door:
    bus = MemoryPublisher()
    rt = GcpRuntime(APP, GcpSettings(project="p"), memory_ports(), None, bus=bus)

    def door(headers: dict[str, str], body: bytes) -> Answer:
        before = len(bus.published)
        text, status, _ = process_ingest(rt, "POST", "/events", headers, body)
        return status, text, len(bus.published) - before

    return door


@pytest.fixture(params=["local", "aws", "gcp"])
def door(request: pytest.FixtureRequest) -> Door:
    return request.getfixturevalue(f"{request.param}_door")  # type: ignore[no-any-return]


@pytest.mark.parametrize("case", INGRESS, ids=[c.name for c in INGRESS])
def test_every_front_door_gives_the_same_verdict(door: Door, case: Ingress) -> None:
    status, text, published = door(case.headers, case.body)
    assert status == case.status, text
    body: dict[str, Any] = json.loads(text)
    if status == 202:
        assert body["accepted"] == case.published == published == len(body["ids"]), body
        return
    assert body["error"] == "invalid request", body
    for word in case.words:
        assert word in " ".join(body["problems"]), (word, body)
    assert published == 0, "a refused request published something"


def test_the_table_covers_each_rule_of_the_policy() -> None:
    names = " ".join(c.name for c in INGRESS)
    for rule in ("schema-invalid", "unknown type", "curl -d", "without Content-Type",
                 "PutEvents", "batch", "binary", "structured"):
        assert rule in names, rule
    assert {c.status for c in INGRESS} == {202, 400}
