"""The web page in headless Chromium (Debian's ``chromium`` through Playwright): it shows
the network's agents, starts a run, draws it as a graph that reaches "done", lists it in the
history with its decisions, and keeps a screenshot (``REDE_SCREENSHOT`` names where; the
README's is made this way)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from rede import Network
from rede.server import ServerSettings, create_app
from rede.server.live import LiveServer, free_port
from serve_support import DEMO_YAML

CHROMIUM = os.environ.get("REDE_CHROMIUM", "/usr/bin/chromium")
WATCH = """
window.__seen = {states: [], runningSteps: new Set()};
document.addEventListener("DOMContentLoaded", () => {
  const status = document.querySelector("#run-status");
  new MutationObserver(() => window.__seen.states.push(status.dataset.state))
    .observe(status, {attributes: true, attributeFilter: ["data-state"]});
  new MutationObserver((records) => {
    for (const r of records) for (const n of r.addedNodes)
      if (n.dataset && n.dataset.state === "running")
        window.__seen.runningSteps.add(n.dataset.step);
  }).observe(document.querySelector("#graph"), {childList: true});
});
"""
"""Records every state the run badge takes and every step drawn as running, so the test
sees the graph update while the run goes on, however fast the run is."""


def chromium() -> str:
    if Path(CHROMIUM).exists() or shutil.which(CHROMIUM):
        return CHROMIUM
    message = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI must run the browser test", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    port = free_port()
    # simulated latency scaled down: the run lasts long enough to be seen updating
    net = Network.from_yaml(DEMO_YAML, time_scale=0.05)
    with LiveServer(create_app([net], ServerSettings(port=port)), port=port) as live:
        yield live


def test_the_page_runs_a_request_and_draws_it_live(server: LiveServer, tmp_path: Path) -> None:
    executable = chromium()
    from playwright.sync_api import expect, sync_playwright

    shot = Path(os.environ.get("REDE_SCREENSHOT") or tmp_path / "serve-page.png")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.add_init_script(WATCH)
            page.goto(server.url + "/")
            expect(page.locator("#agents tr[data-agent=planner]")).to_be_visible()
            expect(page.locator("#agents tr[data-agent=critic] .dot.up")).to_be_visible()
            page.fill("#request", "Compare Redis Streams and Kafka for a small team")
            page.click("#run")
            expect(page.locator("#run-status")).to_have_attribute(
                "data-state", "done", timeout=60_000
            )
            seen = page.evaluate(
                "({states: window.__seen.states, running: [...window.__seen.runningSteps]})"
            )
            assert seen["states"][0] == "running" and seen["states"][-1] == "done", seen
            assert {"plan", "synthesis"} <= set(seen["running"]), seen  # drawn live
            nodes = page.locator("#graph .node")
            assert nodes.count() >= 5  # plan, research steps, write, synthesis
            assert page.locator("#graph .node[data-state=ok]").count() == nodes.count()
            assert page.locator("#graph .edge").count() >= nodes.count() - 1
            expect(page.locator("#graph .node[data-step=synthesis]")).to_contain_text("tok")
            expect(page.locator("#answer")).to_contain_text("simulated")
            expect(page.locator("#run-usage")).to_contain_text("SIMULATED models")
            run_id = page.locator("#run-id").inner_text()
            row = page.locator(f"#history tr[data-run='{run_id}']")
            expect(row).to_contain_text("ok")
            row.click()
            expect(page.locator("#decisions li").first).to_be_visible()
            expect(page.locator("#decisions")).to_contain_text("route")
            page.screenshot(path=str(shot), full_page=True)
            assert not errors, errors
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000


def test_the_page_shows_a_run_waiting_for_approval_and_approves_it(tmp_path: Path) -> None:
    executable = chromium()
    from playwright.sync_api import expect, sync_playwright

    from rede.config import HumanConfig, NetworkConfig

    conf = NetworkConfig.from_yaml(DEMO_YAML)
    conf = conf.model_copy(update={"human": HumanConfig(approve_plan=True, poll_s=0.05)})
    port = free_port()
    net = Network(conf, time_scale=0)
    with (
        LiveServer(create_app([net], ServerSettings(port=port)), port=port) as live,
        sync_playwright() as p,
    ):
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(live.url + "/")
            expect(page.locator("#agents tr[data-agent=planner]")).to_be_visible()
            page.fill("#request", "Compare Redis Streams and Kafka for a small team")
            page.click("#run")
            expect(page.locator("#human")).to_be_visible(timeout=30_000)
            expect(page.locator("#human-prompt")).to_have_text("Approve the plan?")
            expect(page.locator("#run-status")).to_have_attribute("data-state", "waiting")
            expect(page.locator("#graph g[data-step=plan]")).to_have_attribute(
                "data-state", "paused"
            )
            page.click("#approve")
            expect(page.locator("#run-status")).to_have_attribute(
                "data-state", "done", timeout=60_000
            )
            expect(page.locator("#human")).to_be_hidden()
            assert not errors, errors
        finally:
            browser.close()
    run_id = net.ledger.runs()[-1]
    (answered,) = net.ledger.decisions(run_id, "human_answer")
    assert answered.data["by"] == "web page" and answered.data["approved"] is True
