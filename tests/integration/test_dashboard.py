"""The dashboard end to end in a real headless Chromium (Debian's, driven by Playwright) against the served
local stack: the runs_api function over HTTP, the local Batch service running the real orchestrator with
Snakemake (its jobs inside the orchestrator: ARC_SNAKEMAKE_EXECUTOR=local), the storage emulator, embedded
PostgreSQL. Nothing is mocked.

One story, so the stack and the browser start once: the list updates without a reload as runs arrive; the
demo run's progress bars move as its SSE stream reports and it ends completed; its log, results and the
engine's trace open through the page; a failing run shows its diagnosis and is recovered from the page;
a run is cancelled from the page; filters and keyset paging work, a bad filter shows the API's message;
axe-core finds no accessibility violation; nothing the page does breaks its Content-Security-Policy.

Screenshots of each step go to test-artifacts/dashboard/ (ARC_TEST_ARTIFACTS overrides the folder; not
committed) so a person can look at them. Skipped, with the reason, only where Chromium or Playwright is
not installed (.ci/run installs Debian's chromium)."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest
import requests

pytestmark = pytest.mark.integration

CHROMIUM = os.environ.get("ARC_CHROMIUM", "/usr/bin/chromium")
# What headless Chromium needs here (as root, on a machine with no network beyond loopback).
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-quic",
]  # fmt: skip
ARTIFACTS = (
    Path(os.environ.get("ARC_TEST_ARTIFACTS") or Path(__file__).parents[2] / "test-artifacts") / "dashboard"
)


def _playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # pragma: no cover - requirements.txt installs it
        pytest.skip(f"playwright is not installed: {exc}")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (Debian's chromium package; .ci/run installs it as root)")
    return sync_playwright


@pytest.fixture
def browser():
    sync_playwright = _playwright()
    profile = tempfile.mkdtemp(prefix="arc-chromium-")
    try:
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
                viewport={"width": 1366, "height": 900},
            )  # fmt: skip
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


class Story:
    """The page, the API beside it, and the screenshots and console errors collected along the way."""

    def __init__(self, page, base: str) -> None:
        self.page, self.base = page, base
        self.api = requests.Session()
        self.api.trust_env = False
        self.errors: list[str] = []
        self.failed: list[tuple[int, str]] = []
        self.step = 0
        self.watch(page)
        shutil.rmtree(ARTIFACTS, ignore_errors=True)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def watch(self, page) -> None:
        """Collect the page's console errors (a CSP violation is one) and uncaught exceptions."""
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        page.on("response", lambda r: r.status >= 400 and self.failed.append((r.status, r.url)))

    def shot(self, name: str) -> None:
        self.step += 1
        self.page.screenshot(path=str(ARTIFACTS / f"{self.step:02d}-{name}.png"), full_page=True)

    def submit(self, labels: dict[str, str] | None = None, **params) -> str:
        from arc_reactor.local.demo import DEMO_BUNDLE

        body = {
            "pipeline": "arc/fastq-stats",
            "samplesheet": (DEMO_BUNDLE / "samplesheet.csv").read_text(),
            "params": {"min_quality": 20, **params},
            "labels": labels or {},
        }
        resp = self.api.post(f"{self.base}/runs", json=body, timeout=30)
        assert resp.status_code == 201, resp.text
        return resp.json()["id"]

    def status(self) -> str:
        return self.page.locator("#run-state").get_attribute("data-status")

    def wait_status(self, wanted: str, timeout_s: float = 90) -> None:
        self.page.wait_for_selector(f"#run-state[data-status='{wanted}']", timeout=timeout_s * 1000)

    def axe(self, what: str) -> None:
        from axe_playwright_python.sync_playwright import Axe

        results = Axe().run(self.page)
        violations = results.response["violations"]
        assert not violations, f"{what}: " + "; ".join(
            f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
            for v in violations
        )


def filtered(page, base: str, control: str, value: str) -> list[str]:
    """The runs the list shows once its filter form is applied with `control` set to `value`."""
    page.goto(f"{base}/ui/")
    if control.startswith("#f-status"):
        page.select_option(control, value)
    else:
        page.fill(control, value)
    with page.expect_navigation():
        page.click(".filters button[type=submit]")
    return [r.get_attribute("data-run-id") for r in page.locator("#runs tbody tr[data-run-id]").all()]


def test_dashboard_end_to_end(stack, browser, monkeypatch):
    from arc_reactor.api import ui_views
    from arc_reactor.settings import get_settings
    from arc_reactor.wiring import reset_deps

    # The pages are what is tested here, not where Snakemake runs its jobs: this story's runs keep every
    # job inside the orchestrator (a deployment setting), which halves its time. Snakemake's Batch task
    # jobs have their own story (test_snakemake_on_batch.py) and the API's recovery test.
    monkeypatch.setenv("ARC_SNAKEMAKE_EXECUTOR", "local")
    get_settings.cache_clear()
    reset_deps()
    base = stack.url("runs_api").rstrip("/")
    page = browser.new_page()
    story = Story(page, base)

    # -- the runs list, empty, then live: runs submitted meanwhile appear without a reload -------------
    response = page.goto(f"{base}/")
    assert response.ok and page.url == f"{base}/ui/"
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "No runs yet" in page.locator("#runs").inner_text()
    story.axe("the empty runs list")
    story.shot("runs-empty")
    page.evaluate("window.arcNoReload = true")
    demo = story.submit(labels={"suite": "dashboard"}, pace_seconds=0.6)
    failing = story.submit(fail_samples=["sample3"])

    # -- the demo run, opened at once in a second tab: progress bars fed by the SSE stream -------------
    watch = browser.new_page()
    story.watch(watch)
    watch.goto(f"{base}/ui/runs/{demo}")
    watch.wait_for_selector("#run-state")
    watch.evaluate(
        """() => {
            window.arcNoReload = true;
            window.arcSummaries = [];
            const note = () => {
                const el = document.querySelector('[data-progress-summary]');
                const text = el ? el.textContent.trim() : '';
                if (text && window.arcSummaries.at(-1) !== text) window.arcSummaries.push(text);
            };
            note();
            const all = {subtree: true, childList: true, characterData: true};
            new MutationObserver(note).observe(document.body, all);
        }"""
    )
    # Meanwhile the list, untouched, shows both runs without a reload.
    page.wait_for_selector(f"tr[data-run-id='{failing}']", timeout=15_000)
    assert page.evaluate("window.arcNoReload") is True, "the list reloaded instead of updating in place"
    story.shot("runs-live")
    page.close()
    page = story.page = watch
    story.shot("demo-running")
    story.wait_status("completed")
    page.wait_for_function(
        "document.querySelector('[data-progress-summary]').textContent.includes('5 of 5 done')"
    )
    page.wait_for_function("document.getElementById('announce').textContent.includes('completed')")
    summaries = page.evaluate("window.arcSummaries")
    assert page.evaluate("window.arcNoReload") is True
    assert summaries[-1].startswith("5 of 5 done"), summaries
    moving = [s for s in summaries if re.match(r"[0-4] of 5 done", s)]
    assert moving, f"the bars never showed the run part-way: {summaries}"
    for name in ("stats", "summary", "all"):
        bar = page.locator(f"#progress tr[data-process='{name}'] rect.seg")
        assert bar.count() == 1 and bar.get_attribute("data-kind") == "succeeded"
        assert float(bar.get_attribute("width")) == 100.0
    # The log tail follows to the end; the timeline tells the story.
    page.wait_for_function(
        "document.getElementById('log-lines').textContent.includes('engine exited with code 0')"
    )
    timeline = page.locator("#timeline").inner_text()
    assert "Running → Completed" in timeline and "Submitted → Running" in timeline
    assert page.locator("button[data-action='cancel']").is_disabled()
    assert page.locator("button[data-action='recover']").is_disabled()
    assert page.locator("#tasks tbody tr").count() == 5
    story.axe("a completed run")
    story.shot("demo-completed")

    # The bars the script draws from SSE data are the ones the server renders (one geometry, two places).
    samples = [
        {"total": 5, "succeeded": 2, "cached": 1, "running": 1, "submitted": 0, "failed": 1, "done": 3},
        {"total": 3, "succeeded": 0, "cached": 0, "running": 0, "submitted": 2, "failed": 0, "done": 0},
        {"total": 0},
        {"total": 7, "succeeded": 7, "done": 7},
    ]
    script = page.locator("script[type=module]").get_attribute("src")
    drawn = page.evaluate(
        "async ([src, samples]) => { const m = await import(src); "
        "return samples.map(c => [m.segments(c), m.label(c)]); }",
        [script, samples],
    )
    for counts, (segments, label) in zip(samples, drawn, strict=True):
        expected = [vars(s) for s in ui_views.bar(counts)]
        assert segments == expected and label == ui_views.bar_label(counts), (counts, segments, label)

    # Sorting the task table by a column, both ways.
    page.click("#tasks th[data-key='task'] button")
    first = page.locator("#tasks tbody tr").first.inner_text()
    assert (
        first.startswith("all")
        and page.locator("#tasks th[data-key='task']").get_attribute("aria-sort") == "ascending"
    )
    page.click("#tasks th[data-key='task'] button")
    assert page.locator("#tasks tbody tr").first.inner_text().startswith("summary")

    # Results and the engine's trace open through the page (a fresh download URL each time).
    page.wait_for_selector("#files-results a[data-file='summary.tsv']")  # listed again once it ended
    page.click("#files-logs a[data-file='trace.txt']")
    page.wait_for_load_state()
    assert page.locator("body").inner_text().startswith("output\trule\tstatus"), page.url
    story.shot("trace-opened")
    page.go_back()
    page.wait_for_selector("#run-state")

    # -- the failing run: its diagnosis, then Recover from the page ------------------------------------
    page.goto(f"{base}/ui/runs/{failing}")
    story.wait_status("failed")
    page.wait_for_selector("#diagnosis:not([hidden])")
    diagnosis = page.locator("#diagnosis").inner_text()
    assert "stats (sample=sample3)" in diagnosis and "failing on purpose" in diagnosis, diagnosis
    assert page.locator("button[data-action='cancel']").is_disabled()
    story.axe("a failed run")
    story.shot("failing-diagnosis")
    page.click("button[data-action='recover']")
    assert page.locator("#confirm-recover").is_visible()
    page.fill("#recover-params", "[1, 2]")  # not an object: the page says so and sends nothing
    page.click("#confirm-recover button[value='confirm']")
    page.locator("#action-error").wait_for(state="visible")
    assert "must be a JSON object" in page.locator("#action-error").inner_text()
    assert page.url.endswith(failing)
    page.click("button[data-action='recover']")
    page.fill("#recover-params", '{"fail_samples": null}')  # without the failing sample this time
    story.shot("recover-confirm")
    page.click("#confirm-recover button[value='confirm']")
    page.wait_for_url(lambda url: "/ui/runs/" in url and failing not in url, timeout=30_000)
    recovery = page.url.rsplit("/", 1)[1]
    assert recovery != failing
    page.wait_for_selector(f"#related a[href='/ui/runs/{failing}']")
    # The recovery resumes: what the failed run finished is not run again (its two stats jobs are cached).
    story.wait_status("completed")
    page.wait_for_function(
        "document.querySelector('[data-progress-summary]').textContent.includes('5 of 5 done')"
    )
    assert "2 cached" in page.locator("[data-progress-summary]").inner_text()
    story.shot("recovery-completed")

    # -- Cancel from the page (the local Batch service holds the job queued meanwhile) -----------------
    stack.batch.queue_delay = 2.0
    try:
        doomed = story.submit()
        page.goto(f"{base}/ui/runs/{doomed}")
        page.click("button[data-action='cancel']")
        assert page.locator("#confirm-cancel").is_visible()
        story.shot("cancel-confirm")
        page.click("#confirm-cancel button[value='confirm']")
        story.wait_status("cancelled", 60)
    finally:
        stack.batch.queue_delay = 0.25
    assert "Cancel requested" in page.locator("#action-status").inner_text()
    assert (
        "Pending → Submitted" in page.locator("#timeline").inner_text()
        or "Cancelling" in page.locator("#timeline").inner_text()
    )
    story.shot("cancelled")

    # -- filters and keyset pages on the list -----------------------------------------------------------
    page.goto(f"{base}/ui/?page_size=2")
    rows = page.locator("#runs tbody tr[data-run-id]")
    assert rows.count() == 2
    seen = {rows.nth(i).get_attribute("data-run-id") for i in range(2)}
    page.click("#runs a[rel=next]")
    page.wait_for_url("**page_token=**")
    rows = page.locator("#runs tbody tr[data-run-id]")
    seen |= {rows.nth(i).get_attribute("data-run-id") for i in range(rows.count())}
    assert seen == {demo, failing, recovery, doomed}, seen
    story.shot("runs-page-2")
    assert filtered(page, base, "#f-status", "failed") == [failing]
    assert filtered(page, base, "#f-label", "suite=dashboard") == [demo]
    story.axe("a filtered runs list")
    story.shot("runs-filtered")
    response = page.goto(f"{base}/ui/?label=nonsense")
    assert response.status == 400
    assert "is not key=value" in page.locator("[role=alert]").inner_text()
    story.shot("runs-bad-filter")

    # -- an unknown run is a page with the API's message, never a blank page ---------------------------
    response = page.goto(f"{base}/ui/runs/r{'0' * 18}")
    assert response.status == 404 and "does not exist" in page.locator("[role=alert]").inner_text()

    # Nothing broke the CSP or threw; the only failed loads are the two error pages asked for above (and
    # the favicon Chromium asks the storage emulator for, when the trace opened there).
    assert not [e for e in story.errors if not e.startswith("Failed to load resource")], story.errors
    failed = [(status, url) for status, url in story.failed if not url.endswith("/favicon.ico")]
    assert failed == [(400, f"{base}/ui/?label=nonsense"), (404, f"{base}/ui/runs/r{'0' * 18}")], failed
    assert len(list(ARTIFACTS.glob("*.png"))) >= 10
