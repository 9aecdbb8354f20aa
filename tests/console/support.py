"""Shared by the console tests and `make screenshot`: demo data, a server, a browser.

The browser is Debian's Chromium at /usr/bin/chromium driven by Python playwright, which
is never allowed to download a browser of its own (it cannot here, and the suite must
test the browser the Makefile installs). A missing browser or library is a failure that
says what to install, never a quiet skip.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from tests.serve_process import ServeProcess

CHROMIUM: Final = Path("/usr/bin/chromium")
#: Flags that work on a headless CI box without a GPU, sandbox or network.
CHROMIUM_ARGS: Final = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update",
                        "--disable-sync"]
VIEWPORT: Final = {"width": 1280, "height": 800}


def browser_problem() -> str | None:
    """What is missing to drive the browser, or None."""
    if not CHROMIUM.exists():
        return (f"no Chromium at {CHROMIUM}: run `make chromium` (as root it runs "
                "`apt-get install -y chromium`)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Python playwright is missing: `pip install -e '.[dev]'` (or `make test`)"
    return None


def launch(playwright: Any) -> Any:
    """Chromium from the system package; playwright gives it a fresh temporary profile."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                      args=CHROMIUM_ARGS)


def wait_for(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll `check` until it returns something truthy (the one "eventually" helper)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached after {timeout}s (last: {last!r})")


def post(url: str, body: Any, path: str = "/events") -> Any:
    request = urllib.request.Request(url + path, json.dumps(body).encode(),
                                     {"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def put_events(*entries: tuple[str, str, dict[str, Any]]) -> dict[str, Any]:
    return {"Entries": [{"Source": s, "DetailType": d, "Detail": json.dumps(x)}
                        for s, d, x in entries]}


def order(order_id: str, item: str, quantity: int, price: float) -> tuple[str, str, dict]:
    return ("orders", "Order Created", {
        "order_id": order_id, "customer_id": f"cust-{order_id}",
        "items": [{"item_id": item, "quantity": quantity, "price": price}],
        "total": round(quantity * price, 2)})


def stock(item: str, quantity: int, action: str = "restock") -> tuple[str, str, dict]:
    return ("inventory", "Inventory Updated",
            {"item_id": item, "quantity": quantity, "action": action})


def seed_demo(server: ServeProcess) -> None:
    """A small story: a completed order, a declined one, one out of stock (refunded), a
    dead letter (removing stock that is not there)."""
    post(server.url, put_events(stock("widget", 10), stock("gadget", 1)))
    server.wait_quiet(30)
    post(server.url, put_events(order("A-1001", "widget", 2, 19.99),
                                order("A-1002", "widget", 1, 2500.00),
                                order("A-1003", "gadget", 3, 5.00),
                                stock("gizmo", 4, "remove")))
    server.wait_quiet(60)


def start_server(tmp: Path, name: str = "console", token: str | None = None) -> ServeProcess:
    server = ServeProcess(tmp / f"{name}.db", tmp / f"{name}.log", workers=2, token=token)
    server.start()
    return server
