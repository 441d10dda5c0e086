"""Take the screenshots of the web pages under docs/: the demo's jobs, seen in Chromium.

    python docs/screenshots.py            # needs the web and test extras, and chromium

It runs ``kalam-actors demo`` into a fresh folder, serves ``kalam_actors.web`` on it on
127.0.0.1, and has Debian's chromium (through Playwright) take the overview, the jobs list and
the page of the flush job that needed a retry.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
from functools import partial
from pathlib import Path
from typing import Any

import trio
from playwright.sync_api import sync_playwright

from kalam_actors import JobFilter, JobStore, JobType
from kalam_actors.web import web_task

HERE = Path(__file__).resolve().parent


def serve_in_thread(data: Path) -> tuple[str, Any, threading.Thread]:
    started = threading.Event()
    state: dict[str, Any] = {}

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            state["url"] = await nursery.start(partial(
                web_task, data, host="127.0.0.1", port=0, log_file=data / "demo.log"))
            state["stop"] = nursery.cancel_scope.cancel
            state["token"] = trio.lowlevel.current_trio_token()
            started.set()

    thread = threading.Thread(target=trio.run, args=(main,), daemon=True)
    thread.start()
    started.wait(30)

    def stop() -> None:
        trio.from_thread.run_sync(state["stop"], trio_token=state["token"])

    return state["url"], stop, thread


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="where to write the PNGs")
    parser.add_argument("--width", type=int, default=1280)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kalam-screens-"))
    try:
        data = work / "demo"
        subprocess.run([sys.executable, "-m", "kalam_actors", "demo", "--data", str(data),
                        "--view", "plain"], check=True, stdout=subprocess.DEVNULL)
        with JobStore(data / "jobs") as store:
            flushes = store.list_jobs(JobFilter(job_type=JobType.FLUSH))
        retried = next((j for j in flushes if j.retry_count), flushes[0])
        url, stop, thread = serve_in_thread(data)
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=shutil.which("chromium"))
                page = browser.new_page(viewport={"width": args.width, "height": 800})
                for name, path in [("web-overview.png", "/"), ("web-jobs.png", "/jobs"),
                                   ("web-job.png", f"/jobs/{retried.job_id}")]:
                    page.goto(url + path)
                    page.screenshot(path=str(args.out / name), full_page=True)
                    print(args.out / name)
                browser.close()
        finally:
            stop()
            thread.join(30)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
