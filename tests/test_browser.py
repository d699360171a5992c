"""The planner page at ``/`` in headless Debian Chromium (Playwright's Python package drives
``/usr/bin/chromium``; CI installs it with ``.ci/install-browser``). Skips only when chromium is absent."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium (.ci/install-browser)"
    ),
]


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    """A real uvicorn server (in a thread) on a free loopback port, serving base_stock+tie on hub_spoke."""
    import uvicorn
    from invnet.serving.app import create_app
    from invnet.serving.settings import ServingSettings

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    app = create_app(ServingSettings(scenario="hub_spoke", policy="base_stock+tie", gc_freeze=False))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)


def test_planner_page(server_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    example = httpx.get(server_url + "/v1/example-state").json()
    # unbalance two stores so the transfer policy (TIE) recommends transfers
    for e in example["nodes"]:
        e["on_hand"] = {"store_north": 150.0, "store_south": 1.0}.get(e["node"], e["on_hand"])
    want = httpx.post(server_url + "/v1/recommendations", json=example).json()
    assert want["transfers"], "the unbalanced state should produce a transfer"

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            errors: list[str] = []
            outside: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(server_url) else None)
            page.goto(server_url + "/")
            page.wait_for_function("document.getElementById('policy-info').textContent.includes('base_stock+tie')")
            assert "hub_spoke" in page.text_content("#policy-info")

            # 1. example state -> recommendation: table rows and chart bars
            page.click("#btn-example")
            page.wait_for_function("document.getElementById('state').value.includes('store_north')")
            page.click("#btn-recommend")
            page.wait_for_selector("#results:not([hidden])")
            assert page.locator("#orders-table tbody tr").count() == 5
            assert page.locator("#chart svg rect.bar").count() == 15  # on-hand, in transit, position after per node

            # 2. the same state as pasted JSON with unbalanced stores: the table shows the API's numbers
            import json

            page.fill("#state", json.dumps(example))
            t0 = want["transfers"][0]
            # wait for this request's answer and its rows: the table of step 1 may have as many rows
            with page.expect_response(lambda r: r.url.endswith("/v1/recommendations")):
                page.click("#btn-recommend")
            page.wait_for_function(
                "([n, src, dst]) => { const rows = document.querySelectorAll('#transfers-table tbody tr');"
                " return rows.length === n && rows[0].cells[0].textContent === src"
                " && rows[0].cells[1].textContent === dst; }",
                arg=[len(want["transfers"]), t0["from"], t0["to"]],
            )
            first = page.locator("#transfers-table tbody tr").first.locator("td")
            assert [first.nth(i).text_content() for i in range(3)] == [t0["from"], t0["to"], t0["sku"]]
            assert float(first.nth(3).text_content().replace(",", "")) == pytest.approx(t0["quantity"], abs=0.051)
            rows = page.locator("#orders-table tbody tr")
            for i, n in enumerate(want["nodes"]):
                cells = rows.nth(i).locator("td")
                assert cells.nth(0).text_content() == n["node"]
                assert float(cells.nth(2).text_content().replace(",", "")) == pytest.approx(n["order"], abs=0.051)
            page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
            assert (tmp_path / "page.png").stat().st_size > 10_000

            # 3. CSV: convert, recommend again, same transfers
            page.click("#btn-csv")
            csv_text = page.input_value("#state")
            assert csv_text.startswith("node,sku,on_hand,backlog,in_transit_0")
            page.click("#btn-recommend")
            page.wait_for_function(
                f"document.querySelectorAll('#transfers-table tbody tr').length === {len(want['transfers'])}"
            )
            assert page.is_hidden("#error")

            # 4. upload a CSV file with a bad value: the error names the field, results are hidden
            lines = csv_text.splitlines()
            cols = lines[1].split(",")
            cols[2] = "-5"
            bad = tmp_path / "state.csv"
            bad.write_text("\n".join([lines[0], ",".join(cols), *lines[2:]]))
            page.set_input_files("#file", str(bad))
            page.wait_for_function("document.getElementById('state').value.includes('-5')")
            page.click("#btn-recommend")
            page.wait_for_selector("#error:not([hidden])")
            assert "422" in page.text_content("#error") and "nodes.0.on_hand" in page.text_content("#error")
            assert page.is_hidden("#results")

            # 5. garbage input: a clear message, no request
            page.fill("#state", "node,sku\ndc,sku_a\n")
            page.click("#btn-recommend")
            page.wait_for_function("document.getElementById('error').textContent.includes('on_hand')")

            assert outside == [], outside
            assert [e for e in errors if "422" not in e] == [], errors  # the 422 fetch is logged by chromium
        finally:
            browser.close()
