"""`make screenshot`: the README's console screenshot, from a real headless Chromium
against a real `switchyard serve` with the demo story, so it cannot go stale unnoticed
(tests/console/test_screenshot.py runs this into a temporary file).

    python -m tests.console.screenshot --out docs/console.png
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from tests.console.support import VIEWPORT, browser_problem, launch, seed_demo, start_server

SHOWN_ORDER = "A-1003"  # out of stock after payment: the waterfall shows the refund


def capture(out: Path) -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="switchyard-shot-") as tmp:
        server = start_server(Path(tmp), "screenshot")
        try:
            seed_demo(server)
            with sync_playwright() as playwright:
                browser = launch(playwright)
                try:
                    page = browser.new_page(viewport=VIEWPORT)
                    errors: list[str] = []
                    page.on("pageerror", lambda e: errors.append(str(e)))
                    page.goto(server.url + "/")
                    page.wait_for_selector("#live.on")
                    page.click("button[data-tab=orders]")
                    page.click(f"#orders-table tr[data-order='{SHOWN_ORDER}']")
                    page.wait_for_selector("#waterfall")
                    out.parent.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(out))
                    if errors:
                        raise SystemExit(f"the console raised errors: {errors}")
                finally:
                    browser.close()
        finally:
            server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/console.png"))
    args = parser.parse_args(argv)
    problem = browser_problem()
    if problem:
        print(f"screenshot: {problem}", file=sys.stderr)
        return 1
    capture(args.out)
    print(f"screenshot: wrote {args.out} ({args.out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
