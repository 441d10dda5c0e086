"""The pages in a real headless Chromium (Debian's ``chromium``, driven by Playwright for
Python; no browser download): list, filter, open a job, watch a running job's progress move
without a reload, cancel it with the token and see it Cancelled, be refused without it, and see
a job message holding ``<script>`` shown as text.

Skipped, saying why, where Playwright or Chromium is missing; CI installs both (.ci/run).
"""

from __future__ import annotations

import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from runtime_support import ScriptedExecutor
from web_support import TOKEN, XSS, Filled, running_web

from kalam_actors import (
    Job,
    JobContext,
    JobDecision,
    JobStatus,
    JobStore,
    JobType,
    start_job_manager,
)

try:
    from playwright.sync_api import Browser, Dialog, Page, expect, sync_playwright
except ImportError:
    pytest.skip("Playwright for Python is not installed (pip install playwright): "
                "browser tests skipped", allow_module_level=True)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("no chromium on PATH (Debian: apt-get install chromium): browser tests skipped",
                allow_module_level=True)

WAIT_MS = 10_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM is not None
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    try:
        yield page
    finally:
        context.close()
    assert dialogs == [], f"a page opened a dialog (script ran?): {dialogs}"


class Stepper:
    """A job body that reports progress ``n/total`` and waits for the test before each next
    step (or until the job is cancelled)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.advance = threading.Semaphore(0)
        self.started = threading.Event()

    def __call__(self, ctx: JobContext, job: Job) -> JobDecision:
        for done in range(1, self.total + 1):
            ctx.report_progress(done, self.total, f"step {done} of {self.total}")
            self.started.set()
            while not self.advance.acquire(timeout=0.01):
                if ctx.cancelled:
                    return JobDecision.completed("stopped early")
        return JobDecision.completed("all steps done")


def test_list_filter_open_a_job_and_markup_stays_text(page: Page, filled: Filled) -> None:
    with running_web(filled.root, log_file=filled.log) as url:
        page.goto(f"{url}/jobs")
        rows = page.locator("tbody tr[data-job-id]")
        expect(rows).to_have_count(len(filled.ids))

        # Filter with the form: Failed jobs only.
        page.select_option("#f-status", "Failed")
        page.click("button:text('Filter')")
        expect(page).to_have_url(re.compile(r"status=Failed"))
        expect(rows).to_have_count(1)
        expect(rows.first).to_have_attribute("data-job-id", filled.ids["failed"])

        # Text in the message, then open the job from the list.
        page.goto(f"{url}/jobs")
        page.fill("#f-q", "<script>")
        page.press("#f-q", "Enter")
        expect(rows).to_have_count(1)
        xss_id = filled.ids["xss"]
        page.click(f"a.id:text('{xss_id}')")
        expect(page).to_have_url(f"{url}/jobs/{xss_id}")
        expect(page.locator("h1")).to_have_text(xss_id)
        # The message is shown as the text it is: no script ran, no element was made.
        expect(page.locator("#job-message")).to_have_text(XSS)
        assert page.evaluate("window.__xss") is None
        expect(page.locator("#job-state b, #job-params b")).to_have_count(0)
        expect(page.locator("#job-params")).to_contain_text('"note": "<b>bold</b>"')

        # Read-only: no buttons, and a forged POST is refused.
        expect(page.locator("#cancel, #retry, #delete")).to_have_count(0)
        refused = page.request.post(f"{url}/jobs/{filled.ids['new0']}/cancel",
                                    form={"csrf": "x"})
        assert refused.status == 403
    with JobStore(filled.jobs) as store:
        job = store.get_job(filled.ids["new0"])
    assert job is not None and job.status is JobStatus.NEW


def test_watch_progress_then_cancel_with_the_token(page: Page, tmp_path: Path) -> None:
    stepper = Stepper(total=5)
    executor = ScriptedExecutor(JobType.FLUSH, script=[stepper])
    path = tmp_path / "jobs"
    with start_job_manager(path, executors=[executor], durable=False,
                           poll_interval_s=0.05) as runtime:
        job_id = runtime.create_job(JobType.FLUSH, {"table": "t"})
        assert stepper.started.wait(WAIT_MS / 1000)
        with running_web(path, token=TOKEN) as url:
            page.goto(f"{url}/jobs/{job_id}")
            status = page.locator("#job-state .state-status")
            progress = page.locator("#progress-text")
            expect(status).to_have_text("Running")
            expect(progress).to_have_text("1/5 (20 %)")

            # The page follows the job without a reload.
            page.evaluate("window.__same_page = true")
            stepper.advance.release()
            expect(progress).to_have_text("2/5 (40 %)")
            stepper.advance.release()
            expect(progress).to_have_text("3/5 (60 %)")
            expect(page.locator("#job-progress progress")).to_have_attribute("value", "3")
            assert page.evaluate("window.__same_page") is True

            # A new job shows up in the list by itself.
            page.goto(f"{url}/jobs")
            waiting = runtime.create_job(JobType.FLUSH, {"table": "u"})
            expect(page.locator(f"tr[data-job-id='{waiting}']")).to_have_count(1)
            runtime.cancel_job(waiting)

            # Without the token: refused, and the job runs on.
            page.goto(f"{url}/jobs/{job_id}")
            page.click("#cancel")
            expect(page.locator("h1")).to_have_text("Not allowed")
            expect(page.locator(".error")).to_contain_text("log in")
            still = runtime.get_job(job_id)
            assert still is not None and still.status is JobStatus.RUNNING

            # Log in with the token, back to the job, cancel it.
            page.goto(f"{url}/login?next=/jobs/{job_id}")
            page.fill("#token", TOKEN)
            page.click("form.login button")
            expect(page).to_have_url(f"{url}/jobs/{job_id}?notice=logged-in")
            page.click("#cancel")
            expect(page.locator("#job-state .state-status")).to_have_text("Cancelled")
            expect(page.locator(".notice")).to_have_text("The job was cancelled.")
            expect(page.locator("#cancel")).to_have_count(0)
        job = runtime.get_job(job_id)
    assert job is not None and job.status is JobStatus.CANCELLED
