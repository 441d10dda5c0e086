"""Job ids: typed prefixes, time order, uniqueness, strict parsing."""

from __future__ import annotations

import multiprocessing

import pytest

from kalam_actors import InvalidJobId, JobId, JobType, UnknownJobType

PREFIXES = {
    JobType.FLUSH: "FL",
    JobType.CLEANUP: "CL",
    JobType.RETENTION: "RT",
    JobType.STREAM_EVICTION: "SE",
    JobType.USER_CLEANUP: "UC",
    JobType.COMPACT: "CO",
    JobType.BACKUP: "BK",
    JobType.RESTORE: "RS",
}


@pytest.mark.parametrize(("job_type", "prefix"), PREFIXES.items())
def test_each_type_has_the_seed_prefix(job_type: JobType, prefix: str) -> None:
    job_id = JobId.new(job_type)
    assert job_id.startswith(prefix + "-")
    assert job_id.job_type is job_type
    assert JobId.parse(str(job_id)) == job_id


def test_ids_are_time_ordered_and_unique_within_a_process() -> None:
    ids = [JobId.new(JobType.FLUSH) for _ in range(20_000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def _make_ids(n: int) -> list[str]:
    return [JobId.new(JobType.FLUSH) for _ in range(n)]


def test_ids_are_unique_across_processes() -> None:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        batches = pool.map(_make_ids, [5_000, 5_000])
    every = batches[0] + batches[1]
    assert len(set(every)) == 10_000


@pytest.mark.parametrize(
    "text",
    [
        "",
        "FL",
        "FL-",
        "fl-06H28KVAMRGNQBYT184MGHXRNM",
        "ZZ-06H28KVAMRGNQBYT184MGHXRNM",
        "FL-06H28KVAMRGNQBYT184MGHXRN",
        "FL-06H28KVAMRGNQBYT184MGHXRNMM",
        "FL-06H28KVAMRGNQBYT184MGHXRNU",  # U is not in Crockford's alphabet
        "FL_06H28KVAMRGNQBYT184MGHXRNM",
        "../../etc/passwd",
        "FL-06H28KVAMRGNQBYT184MGHXRNM\n",
    ],
)
def test_parse_rejects_malformed_ids(text: str) -> None:
    with pytest.raises(InvalidJobId, match="malformed job id"):
        JobId.parse(text)


def test_parse_rejects_non_strings() -> None:
    with pytest.raises(InvalidJobId, match="must be a string"):
        JobId.parse(42)


@pytest.mark.parametrize("text", ["Flush", "flush", "FL", "fl", "FLUSH"])
def test_job_type_parse_accepts_names_and_prefixes(text: str) -> None:
    assert JobType.parse(text) is JobType.FLUSH


def test_job_type_parse_accepts_stream_eviction_spellings() -> None:
    for text in ("StreamEviction", "stream_eviction", "STREAM-EVICTION", "SE"):
        assert JobType.parse(text) is JobType.STREAM_EVICTION


def test_job_type_parse_names_the_known_types() -> None:
    with pytest.raises(UnknownJobType, match=r"unknown job type 'Vacuum'.*Flush \(FL\)"):
        JobType.parse("Vacuum")
