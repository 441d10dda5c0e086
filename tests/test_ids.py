"""Job ids: typed prefixes, time order, uniqueness, strict parsing."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import random
import sys
import threading
from collections.abc import Iterator

import pytest

from kalam_actors import InvalidJobId, JobId, JobType, UnknownJobType, ids

PREFIXES = {
    JobType.FLUSH: "FL",
    JobType.CLEANUP: "CL",
    JobType.RETENTION: "RT",
    JobType.STREAM_EVICTION: "SE",
    JobType.USER_CLEANUP: "UC",
    JobType.COMPACT: "CO",
    JobType.BACKUP: "BK",
    JobType.RESTORE: "RS",
    JobType.JOB_CLEANUP: "JC",
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


# --- The suffix encoding -------------------------------------------------------------------

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
MS_MAX = 2**48 - 1
RANDOM_MAX = 2**80 - 1


def reference_suffix(ms: int, rand: int) -> str:
    """The layout ids are stored in, five bits at a time: ``ms << 80 | rand``, shifted left by
    two to fill 130 bits, most significant character first."""
    bits = (ms << 80 | rand) << 2
    return "".join(CROCKFORD[bits >> (125 - 5 * i) & 31] for i in range(26))


def test_reference_suffix_is_the_stored_layout() -> None:
    # Pinned from the encoder that wrote the existing stores.
    assert reference_suffix(0, 0) == "0" * 26
    assert reference_suffix(MS_MAX, RANDOM_MAX) == "Z" * 25 + "W"
    assert reference_suffix(1_795_913_938_240, 0x123456789ABCDEF0123) == (
        "06H29KZN800J6HB7H6NWVVR14C"
    )


def edge_values() -> Iterator[tuple[int, int]]:
    tail = 2**18  # the encoder caches the text above the low 18 bits
    rands = [0, 1, 255, 256, tail - 1, tail, tail + 1, 2**79 - 1, 2**79, RANDOM_MAX - 1,
             RANDOM_MAX]
    for ms in (0, 1, MS_MAX - 1, MS_MAX):
        for rand in rands:
            yield ms, rand


def test_fast_encoder_matches_the_reference() -> None:
    rng = random.Random(20240917)
    cases = [*edge_values()]
    cases += [(rng.getrandbits(48), rng.getrandbits(80)) for _ in range(20_000)]
    for ms, rand in cases:
        assert ids._encode(ms << 80 | rand) == reference_suffix(ms, rand), (ms, rand)


# --- The clock, with time and randomness injected ------------------------------------------


class FakeClock(random.Random):
    """Wall-clock milliseconds set by the test, and random starts queued by the test."""

    def __init__(self, ms: int) -> None:
        super().__init__()
        self.ms = ms
        self.starts: list[int] = []

    def time_ns(self) -> int:
        return self.ms * 1_000_000 + 999_999

    def getrandbits(self, k: int) -> int:
        assert k == 79
        return self.starts.pop(0)


def suffix_clock(fake: FakeClock) -> ids._SuffixClock:
    return ids._SuffixClock(time_ns=fake.time_ns, make_random=lambda: fake)


def test_clock_counts_up_within_a_millisecond_and_reseeds_in_the_next() -> None:
    fake = FakeClock(ms=1_000)
    fake.starts = [2**18 - 2, 12_345]
    clock = suffix_clock(fake)
    # Crosses the 18-bit boundary below which the clock re-encodes only the last characters.
    assert [clock.next() for _ in range(4)] == [
        reference_suffix(1_000, r) for r in range(2**18 - 2, 2**18 + 2)
    ]
    fake.ms = 1_001
    assert clock.next() == reference_suffix(1_001, 12_345)
    assert clock.next() == reference_suffix(1_001, 12_346)


def test_clock_stays_ordered_when_the_wall_clock_steps_back() -> None:
    fake = FakeClock(ms=5_000)
    fake.starts = [7]
    clock = suffix_clock(fake)
    assert clock.next() == reference_suffix(5_000, 7)
    fake.ms = 4_000
    assert clock.next() == reference_suffix(5_000, 8)
    assert clock.take(3) == 5_000 << 80 | 9
    fake.ms = 5_000
    assert clock.next() == reference_suffix(5_000, 12)


def test_clock_never_reseeds_below_a_value_it_handed_out() -> None:
    fake = FakeClock(ms=9)
    fake.starts = [2**79 - 1, 0]
    clock = suffix_clock(fake)
    # Given a reservation so large that the random part carries into the next millisecond,
    first = clock.take(2**80)
    assert first == 9 << 80 | 2**79 - 1
    # when that millisecond comes and its random start is lower,
    fake.ms = 10
    # then the clock keeps counting up from the last value instead.
    assert clock.next() == ids._encode(first + 2**80)


def test_clock_reseeds_after_fork() -> None:
    fake = FakeClock(ms=3)
    fake.starts = [5_000, 100]
    clock = suffix_clock(fake)
    assert clock.next() == reference_suffix(3, 5_000)
    clock.after_fork()
    # Same millisecond, yet the child forgets the parent's sequence and takes a fresh start.
    assert clock.next() == reference_suffix(3, 100)


# --- new_many ---------------------------------------------------------------------------------


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock(ms=77)
    monkeypatch.setattr(ids, "_suffixes", suffix_clock(fake))
    return fake


@pytest.mark.parametrize("start", [0, 250, 2**18 - 300, 2**79 - 1])
def test_new_many_encodes_consecutive_values(fake_clock: FakeClock, start: int) -> None:
    fake_clock.starts = [start]
    made = JobId.new_many(JobType.COMPACT, 600)  # runs of 256 start at multiples of 256
    assert made == [f"CO-{reference_suffix(77, r)}" for r in range(start, start + 600)]
    assert JobId.new(JobType.COMPACT) == f"CO-{reference_suffix(77, start + 600)}"


@pytest.mark.parametrize("n", [0, 1, 2, 1_000, 70_000])
def test_new_many_is_increasing_unique_and_parses(n: int) -> None:
    before = JobId.new(JobType.FLUSH)
    made = JobId.new_many(JobType.RETENTION, n)
    after = JobId.new(JobType.FLUSH)
    assert len(made) == n
    suffixes = [job_id[3:] for job_id in (before, *made, after)]  # the prefixes differ
    assert all(a < b for a, b in itertools.pairwise(suffixes))
    for job_id in made:
        assert type(job_id) is JobId
        assert JobId.parse(str(job_id)) == job_id
        assert job_id.job_type is JobType.RETENTION


def test_new_many_rejects_a_negative_count() -> None:
    with pytest.raises(ValueError, match="-1"):
        JobId.new_many(JobType.FLUSH, -1)


def test_new_many_batches_stay_contiguous_among_other_threads() -> None:
    # Given two threads making single ids and two making batches, switching often,
    sizes = {"single-1": 0, "single-2": 0, "batch-300": 300, "batch-1000": 1_000}
    made: list[tuple[str, list[JobId]]] = []  # (thread, one batch or 20 single ids)
    errors: list[BaseException] = []
    start = threading.Barrier(len(sizes))

    def run(name: str) -> None:
        try:
            start.wait(timeout=10)
            for _ in range(100):
                if sizes[name]:
                    made.append((name, JobId.new_many(JobType.FLUSH, sizes[name])))
                else:
                    made.append((name, [JobId.new(JobType.FLUSH) for _ in range(20)]))
        except BaseException as exc:
            errors.append(exc)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=run, args=(name,)) for name in sizes]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        sys.setswitchinterval(interval)
    assert not errors
    assert not any(t.is_alive() for t in threads)
    # then every id is unique, each thread's ids increase,
    every = [job_id for _, some in made for job_id in some]
    assert len(set(every)) == len(every) == 100 * (20 + 20 + 300 + 1_000)
    for name in sizes:
        mine = [job_id for who, some in made if who == name for job_id in some]
        assert mine == sorted(mine)
    # and no other thread's id falls inside a batch.
    position = {job_id: i for i, job_id in enumerate(sorted(every))}
    for name, some in made:
        if sizes[name]:
            first = position[some[0]]
            assert [position[job_id] for job_id in some] == list(range(first, first + len(some)))


def ids_from_a_forked_child(n: int) -> set[str]:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.write(write_end, " ".join(JobId.new_many(JobType.FLUSH, n)).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        made = set(pipe.read().decode().split())
    os.waitpid(pid, 0)
    assert len(made) == n
    return made


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_children_do_not_continue_the_parents_sequence(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a parent and two children forked from it, all in one frozen millisecond,
    frozen = ids._suffixes._time_ns()
    monkeypatch.setattr(ids._suffixes, "_time_ns", lambda: frozen)
    JobId.new(JobType.FLUSH)
    first, second = ids_from_a_forked_child(100), ids_from_a_forked_child(100)
    parent = set(JobId.new_many(JobType.FLUSH, 100))
    # none repeats another's ids: each child reseeds the sequence and the random generator.
    assert not first & second
    assert not (first | second) & parent
