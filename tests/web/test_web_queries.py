"""The reads behind the pages: keyset paging on job ids, filters, the scan bound, the chart's
minutes, a job's log lines."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from web_support import Filled

from kalam_actors import JobFilter, JobId, JobStatus, JobStore, JobType
from kalam_actors.store import NewJob, StoreTxn, now_us, prepare_job, verbs
from kalam_actors.web import queries
from kalam_actors.web.queries import JobsQuery, jobs_page, prefixes_beyond

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

# ---------------------------------------------------------------- prefixes_beyond

suffixes = st.text(alphabet=ALPHABET, min_size=4, max_size=4)


@settings(max_examples=150, deadline=None)
@given(ids=st.sets(suffixes, min_size=1, max_size=40), cursor=suffixes,
       prefix=st.text(alphabet=ALPHABET[:4], max_size=2), older=st.booleans(),
       deepest=st.one_of(st.none(), st.integers(min_value=3, max_value=7)))
def test_prefixes_beyond_cover_exactly_the_ids_past_the_cursor(
    ids: set[str], cursor: str, prefix: str, older: bool, deepest: int | None
) -> None:
    head = "FL-"
    all_ids = sorted(head + s for s in ids)
    full_prefix, full_cursor = head + prefix, head + cursor
    # Reading each range in order, nearest the cursor first, as the pages do.
    got: list[str] = []
    for p in prefixes_beyond(full_prefix, full_cursor, older=older, deepest=deepest):
        in_range = [i for i in all_ids if i.startswith(p)]
        got += reversed(in_range) if older else in_range
    beyond = [i for i in all_ids if i.startswith(full_prefix)
              and (i < full_cursor if older else i > full_cursor)]
    if deepest is not None and len(full_prefix) < deepest:
        # The cursor's own bucket is the caller's to read.
        beyond = [i for i in beyond if not i.startswith(full_cursor[:deepest])]
    assert got == (beyond[::-1] if older else beyond)


# ---------------------------------------------------------------- paging a big store


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1,500 New jobs of three types, interleaved; a third of them Cancelled, and those hold
    keys ``key-0`` to ``key-49``; one New job holds ``held-key``."""
    path = tmp_path_factory.mktemp("big") / "jobs"
    rng = random.Random(7)
    types = [JobType.FLUSH, JobType.COMPACT, JobType.RETENTION]
    with JobStore(path, durable=False) as store:
        for start in range(0, 1500, 150):
            # Batches of 150 in one transaction: many ids share a millisecond, as a bulk
            # create makes them.
            batch = [prepare_job(rng.choice(types), {"i": i},
                                 idempotency_key=f"key-{i % 50}" if i % 3 == 0 else
                                 "held-key" if i == 700 else None)
                     for i in range(start, start + 150)]
            # Cancelled at once: a key is held by one active job at a time.
            _create(store, [job for i, job in enumerate(batch) if (start + i) % 3 == 0],
                    cancel=True)
            _create(store, [job for i, job in enumerate(batch) if (start + i) % 3 != 0])
    return path


def _create(store: JobStore, jobs: list[NewJob], *, cancel: bool = False) -> list[JobId]:
    """New jobs in one write transaction, cancelled in it too when ``cancel``."""

    def write(txn: StoreTxn) -> list[JobId]:
        ids = verbs.create_jobs(txn, jobs, now_us(), status=JobStatus.NEW)
        for job_id in ids if cancel else ():
            verbs.cancel(txn, job_id, now_us(), cancellable=True)
        return ids

    return store.write(write, sync=False)


def _walk(store: JobStore, query: JobsQuery) -> list[str]:
    """Every page, following ``older`` until the end; asserts each page's size."""
    seen: list[str] = []
    while True:
        page = jobs_page(store, query)
        assert len(page.jobs) <= query.limit
        seen += [j.job_id for j in page.jobs]
        if page.older is None:
            return seen
        assert len(page.jobs) == query.limit
        query = dataclasses.replace(query, before=JobId.parse(page.older))


def _newest_first(store: JobStore, f: JobFilter) -> list[str]:
    f = JobFilter(status=f.status, job_type=f.job_type, job_id_prefix=f.job_id_prefix,
                  newest_first=True)
    return [j.job_id for j in store.list_jobs(f)]


@pytest.mark.parametrize("query", [
    JobsQuery(limit=97),
    JobsQuery(status=JobStatus.CANCELLED, limit=60),
    JobsQuery(job_type=JobType.COMPACT, limit=50),
    JobsQuery(status=JobStatus.NEW, job_type=JobType.RETENTION, limit=33),
    JobsQuery(id_prefix="CO-", status=JobStatus.NEW, limit=40),
], ids=["all", "status", "type", "status+type", "id-prefix"])
def test_keyset_pages_walk_every_match_once_newest_first(big: Path, query: JobsQuery) -> None:
    with JobStore(big) as store:
        walked = _walk(store, query)
        assert walked == _newest_first(store, query.store_filter())
    assert len(set(walked)) == len(walked)


def test_a_millisecond_too_full_to_read_whole_is_walked_by_ranges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "jobs"
    with JobStore(path, durable=False) as store:
        ids = _create(store, [prepare_job(JobType.FLUSH, {"i": i}) for i in range(300)])
        assert len({i[:13] for i in ids}) < 10  # a few milliseconds hold them all
        for bucket_read in (1_000, 5):
            monkeypatch.setattr(queries, "BUCKET_READ", bucket_read)
            assert _walk(store, JobsQuery(limit=7)) == sorted(ids, reverse=True)
            mid = JobId.parse(sorted(ids)[150])
            newer = jobs_page(store, JobsQuery(limit=20, after=mid))
            assert [j.job_id for j in newer.jobs] == sorted(ids)[151:171][::-1]


def test_paging_back_with_after_returns_the_previous_page(big: Path) -> None:
    with JobStore(big) as store:
        first = jobs_page(store, JobsQuery(limit=40))
        assert first.newer is None and first.older is not None
        second = jobs_page(store, JobsQuery(limit=40, before=JobId.parse(first.older)))
        assert second.newer == second.jobs[0].job_id
        back = jobs_page(store, JobsQuery(limit=40, after=JobId.parse(second.newer)))
        assert [j.job_id for j in back.jobs] == [j.job_id for j in first.jobs]
        assert back.newer is None  # nothing newer than the first page
        assert back.older == first.jobs[-1].job_id


def test_key_and_text_filters_match_by_reading(big: Path) -> None:
    with JobStore(big) as store:
        wanted = [j.job_id for j in store.list_jobs(JobFilter(newest_first=True))
                  if j.idempotency_key == "key-7"]
        assert _walk(store, JobsQuery(key="key-7", limit=7)) == wanted
        # A key on an active status is answered by the keys index: at most one job.
        held = jobs_page(store, JobsQuery(key="held-key", status=JobStatus.NEW))
        assert [j.idempotency_key for j in held.jobs] == ["held-key"]
        assert held.scanned == 0
        cancelled = jobs_page(store, JobsQuery(text="cancelled by", limit=500))
        assert {j.status for j in cancelled.jobs} == {JobStatus.CANCELLED}
        assert len(cancelled.jobs) == 500


def test_a_search_stops_at_the_scan_budget_and_resumes_from_there(
    big: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queries, "SCAN_BUDGET", 200)
    with JobStore(big) as store:
        oldest = store.list_jobs(JobFilter(limit=1))[0]
        query = JobsQuery(key=oldest.idempotency_key, id_prefix=oldest.job_id[:3], limit=1000)
        pages = 0
        found: list[str] = []
        while True:
            page = jobs_page(store, query)
            pages += 1
            assert page.scanned <= 200
            found += [j.job_id for j in page.jobs]
            if page.older is None:
                break
            assert page.budget_spent
            query = dataclasses.replace(query, before=JobId.parse(page.older))
        assert oldest.job_id in found
        assert pages > 1


def test_an_empty_store_and_unknown_prefixes_give_empty_pages(tmp_path: Path) -> None:
    with JobStore(tmp_path / "jobs") as store:
        assert jobs_page(store, JobsQuery()).jobs == []
        store.create_job(JobType.FLUSH, {})
        assert jobs_page(store, JobsQuery(id_prefix="ZZ-")).jobs == []
        assert jobs_page(store, JobsQuery(id_prefix="FL-ZZZZ")).jobs == []
        assert len(jobs_page(store, JobsQuery(id_prefix="F")).jobs) == 1


# ---------------------------------------------------------------- overview, logs


def test_the_chart_counts_finished_jobs_in_their_minute(filled: Filled) -> None:
    with JobStore(filled.jobs) as store:
        jobs = {k: store.get_job(v) for k, v in filled.ids.items()}
        finished = [j for j in jobs.values() if j is not None and j.finished_at is not None]
        now = max(j.finished_at for j in finished if j.finished_at) + timedelta(seconds=1)
        chart = queries.finished_chart(store, now)
        # Completed and Skipped are "done"; Failed apart; Cancelled in neither.
        assert sum(chart.done) == 5 and sum(chart.failed) == 1
        assert chart.complete
        failed = jobs["failed"]
        assert failed is not None and failed.finished_at is not None
        minute = int((failed.finished_at - chart.start).total_seconds() // 60)
        assert chart.failed[minute] == 1
        # An hour later, none of them is in the last hour.
        later = queries.finished_chart(store, now + timedelta(hours=2))
        assert sum(later.done) == sum(later.failed) == 0


def test_overview_reads_counts_running_and_lag(filled: Filled) -> None:
    with JobStore(filled.jobs) as store:
        view = queries.overview(store, datetime.now(UTC))
    assert view.running == []
    assert view.oldest_waiting is not None
    assert view.oldest_waiting.job_id == filled.ids["new0"]
    assert view.counts[(JobStatus.COMPLETED, JobType.FLUSH)] == 3


def test_job_log_lines_are_the_lines_tagged_with_the_job(filled: Filled, tmp_path: Path) -> None:
    lines = queries.job_log_lines(filled.log, filled.ids["failed"])
    assert lines and all(f"[{filled.ids['failed']}]" in line for line in lines)
    assert any("disk on fire" in line for line in lines)
    assert queries.job_log_lines(None, filled.ids["failed"]) is None
    assert queries.job_log_lines(tmp_path / "missing.log", filled.ids["failed"]) == []


def test_job_log_lines_read_only_the_tail_of_a_big_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queries, "LOG_TAIL_BYTES", 1000)
    log = tmp_path / "big.log"
    job_id = JobId.new(JobType.FLUSH)
    log.write_text("".join(f"12:00 INFO [{job_id}] line {i}\n" for i in range(200)))
    lines = queries.job_log_lines(log, job_id)
    assert lines is not None and 0 < len(lines) < 200
    assert lines[-1].endswith("line 199")
    assert all(line.startswith("12:00 INFO [") for line in lines)  # no half line
