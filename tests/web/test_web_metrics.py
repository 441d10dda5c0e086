"""``/metrics`` read by prometheus_client's own parser, ``/healthz``, and the web served inside
a runtime's trio run (``run --web``)."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

import httpx2
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from runtime_support import Gate, ScriptedExecutor
from starlette.testclient import TestClient
from web_support import EXPECTED_COUNTS, TOKEN, Filled

from kalam_actors import JobDecision, JobStatus, JobType, open_job_manager
from kalam_actors.web import WebConfigError, create_app, web_task


def samples(text: str) -> dict[str, list[Sample]]:
    out: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


@pytest.fixture
def client(filled: Filled) -> Iterator[TestClient]:
    with TestClient(create_app(filled.jobs)) as c:  # the store's own folder works too
        yield c


def test_metrics_match_the_store(client: TestClient) -> None:
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    got = samples(r.text)
    jobs = {(s.labels["status"], s.labels["type"]): s.value for s in got["kalam_actors_jobs"]}
    # Every status and type, zeros included.
    assert len(jobs) == len(JobStatus) * len(JobType)
    assert {k: v for k, v in jobs.items() if v} == EXPECTED_COUNTS
    assert got["kalam_actors_runtime_up"][0].value == 0
    # Two New jobs wait: the lag is the older one's age.
    assert got["kalam_actors_queue_lag_seconds"][0].value > 0
    assert got["kalam_actors_store_last_write_timestamp_seconds"][0].value > 0
    assert "process_resident_memory_bytes" in got
    # Without a runtime in this process, no runtime figures.
    assert "kalam_actors_commits_total" not in got


def test_healthz_says_no_runtime_holds_the_store(client: TestClient, filled: Filled) -> None:
    body = client.get("/healthz").json()
    assert body["status"] == "ok"
    assert body["runtime"] == {"running": False, "pid": None, "in_process": False}
    assert body["jobs"]["New"] == 2 and body["jobs"]["Completed"] == 4
    assert body["store"] == str(filled.jobs.resolve())
    assert body["last_write_age_s"] >= 0
    assert body["read_only"] is True


async def test_served_inside_the_runtime(tmp_path: Path) -> None:
    """``run --web``: the web task in the runtime's nursery, its manager's figures in
    ``/metrics``, a cancel through the manager, ``/healthz`` saying a runtime holds it."""
    gate = Gate()
    executor = ScriptedExecutor(JobType.FLUSH, script=[gate])
    async with open_job_manager(tmp_path / "jobs", executors=[executor], durable=False
                                ) as manager, trio.open_nursery() as nursery:
        url = await nursery.start(partial(web_task, None, host="127.0.0.1", port=0,
                                          token=TOKEN, manager=manager))
        assert url.startswith("http://127.0.0.1:")
        job_id = await manager.create_job(JobType.FLUSH, {})
        await gate.wait_entered()
        async with httpx2.AsyncClient(base_url=url, follow_redirects=False) as http:
            got = samples((await http.get("/metrics")).text)
            assert got["kalam_actors_in_flight"][0].value == 1
            assert got["kalam_actors_commits_total"][0].value >= 2
            assert got["kalam_actors_state_changes_total"][0].value >= 2
            assert got["kalam_actors_actor_restarts_total"][0].value == 0
            assert got["kalam_actors_runtime_up"][0].value == 1
            running = [s for s in got["kalam_actors_jobs"]
                       if s.labels == {"status": "Running", "type": "Flush"}]
            assert running[0].value == 1
            health = (await http.get("/healthz")).json()
            assert health["runtime"]["running"] and health["runtime"]["in_process"]
            r = await http.post(f"/jobs/{job_id}/cancel",
                                headers={"Authorization": f"Bearer {TOKEN}"})
            assert r.status_code == 303
        job = await manager.wait_job(job_id)
        assert job.status is JobStatus.CANCELLED and gate.saw_cancel
        nursery.cancel_scope.cancel()


async def test_the_manager_and_the_path_must_agree(tmp_path: Path, filled: Filled) -> None:
    async with open_job_manager(tmp_path / "jobs", executors=[ScriptedExecutor()],
                                durable=False) as manager:
        with pytest.raises(WebConfigError, match="not the store of the manager"):
            create_app(filled.root, manager=manager)
        assert create_app(tmp_path, manager=manager).state.store is manager.store


async def test_attempts_and_latencies_are_in_metrics(tmp_path: Path) -> None:
    # Given a runtime that ran three jobs: one completed, one retried then failed, one skipped
    executor = ScriptedExecutor(JobType.FLUSH, script=[JobDecision.completed("ok")])
    retrying = ScriptedExecutor(JobType.COMPACT,
                                script=[JobDecision.retry("again", backoff_ms=0),
                                        JobDecision.failed("no")])
    skipping = ScriptedExecutor(JobType.RETENTION, script=[JobDecision.skipped("nothing")])
    async with open_job_manager(tmp_path / "jobs", executors=[executor, retrying, skipping],
                                durable=False) as manager, trio.open_nursery() as nursery:
        for job_type in (JobType.FLUSH, JobType.COMPACT, JobType.RETENTION):
            await manager.wait_job(await manager.create_job(job_type, {}))
        url = await nursery.start(partial(web_task, None, host="127.0.0.1", port=0,
                                          manager=manager))
        async with httpx2.AsyncClient(base_url=url) as http:
            got = samples((await http.get("/metrics")).text)
        nursery.cancel_scope.cancel()
    # Then /metrics counts each attempt by type and outcome
    attempts = {(s.labels["type"], s.labels["outcome"]): s.value
                for s in got["kalam_actors_attempts_total"]}
    assert attempts == {("Flush", "completed"): 1, ("Compact", "retry"): 1,
                        ("Compact", "failed"): 1, ("Retention", "skipped"): 1}
    # And its histograms saw every attempt, every first start and every commit
    assert got["kalam_actors_attempt_duration_seconds_count"][0].value == 4
    assert got["kalam_actors_start_latency_seconds_count"][0].value == 3
    commits = got["kalam_actors_commits_total"][0].value
    assert got["kalam_actors_commit_duration_seconds_count"][0].value == commits
    writes = got["kalam_actors_commit_batch_writes_sum"][0].value
    assert writes == got["kalam_actors_state_changes_total"][0].value
    buckets = got["kalam_actors_commit_batch_writes_bucket"]
    assert buckets[-1].labels["le"] == "+Inf" and buckets[-1].value == commits
