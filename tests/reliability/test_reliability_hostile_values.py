"""Issue #11 — one door: every value that enters a job record is checked where it enters, and
no input can stop the runtime.

At submit (the runtime's ``create_job`` and ``create_jobs``, ``JobStore.create_job``, the CLI's
``submit``) a value that cannot be stored exactly is refused with ``InvalidParams`` whose
message names it (``exc.field`` too, for the options beside the parameters); nothing is
written, and the runtime serves the next job to Completed.

From an executor (the decision it returns, the progress it reports), a value that cannot be
stored fails that attempt alone, or is stored escaped; the job ends terminal with a clear
message, the runtime serves on, and it opens again on the same store.

Depth counts every container, the parameters object itself being level 1: parameters nested
32 levels deep are accepted, 33 refused. A 5,000-level tuple once corrupted orjson's heap and
killed the process (exit 134), so those cases run in a child process (``hostile_child.py``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import enum
import json
import math
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from hostile_child import nest
from reliability_support import HERE, audit_store, report
from runtime_support import ScriptedExecutor

from kalam_actors import (
    InvalidParams,
    JobContext,
    JobDecision,
    JobExecutor,
    JobManager,
    JobStatus,
    JobStore,
    JobType,
    open_job_manager,
)
from kalam_actors.cli import EXIT_USAGE, main

TESTS = "hostile_values"
S = JobStatus
GOOD: dict[str, Any] = {"n": 1}
#: The message names the parameter holding the value (every hostile value sits under it).
NAMED = ("hostile",)
#: The value is the parameters as a whole (JSON text, size): the message names them.
WHOLE = ("param",)
DEPTHS = (33, 100, 1023, 1024, 2000)


# --------------------------------------------------------------------------- values


@dataclasses.dataclass
class Point:
    x: int = 1


class Colour(enum.Enum):
    RED = 1


def _flat(value: Any) -> Any:
    """``value`` as JSON gives it back: tuples become lists."""
    if isinstance(value, dict):
        return {k: _flat(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_flat(v) for v in value]
    return value


def _case(value: Any, needles: tuple[str, ...], name: str) -> Any:
    return pytest.param(value, needles, id=name)


HOSTILE_PARAMS = [
    *(_case(nest(kind, depth), NAMED, f"{kind}-depth-{depth}")
      for kind in ("dict", "list", "tuple", "mixed") for depth in DEPTHS),
    # 5,000 levels of dicts and lists are safe to try here; tuples go to a child process.
    _case(nest("dict", 5000), NAMED, "dict-depth-5000"),
    _case(nest("list", 5000), NAMED, "list-depth-5000"),
    _case({"hostile": "\udcff"}, NAMED, "lone-surrogate-value"),
    _case({"hostile": ["ok", "bad \udcff"]}, NAMED, "lone-surrogate-in-list"),
    _case({"hostile": {"\udcff": 1}}, NAMED, "lone-surrogate-key"),
    _case({"\udcff": 1}, WHOLE, "lone-surrogate-top-level-key"),
    _case({"hostile": {1: 2}}, NAMED, "int-key"),
    _case({"hostile": {(1, 2): 3}}, NAMED, "tuple-key"),
    _case({"hostile": {None: 3}}, NAMED, "none-key"),
    _case({1: 2}, WHOLE, "int-top-level-key"),
    _case({"hostile": b"bytes"}, NAMED, "bytes"),
    _case({"hostile": {1, 2}}, NAMED, "set"),
    _case({"hostile": datetime.datetime(2024, 1, 2, 3, 4, 5)}, NAMED, "datetime"),
    _case({"hostile": object()}, NAMED, "object"),
    _case({"hostile": Point()}, NAMED, "dataclass"),
    _case({"hostile": Colour.RED}, NAMED, "enum"),
    _case({"hostile": 1 + 2j}, NAMED, "complex"),
    _case({"hostile": [1, {b"in a list"}]}, NAMED, "set-of-bytes-in-list"),
    _case({"hostile": 2**64}, NAMED, "int-2**64"),
    _case({"hostile": -(2**63) - 1}, NAMED, "int-minus-2**63-minus-1"),
    _case({"hostile": 10**400}, NAMED, "int-10**400"),
    _case({"hostile": (1, 2**64)}, NAMED, "int-2**64-in-tuple"),
    _case({"hostile": math.nan}, NAMED, "nan"),
    _case({"hostile": math.inf}, NAMED, "inf"),
    _case({"hostile": -math.inf}, NAMED, "minus-inf"),
    _case({"hostile": [1.0, math.inf]}, NAMED, "inf-in-list"),
    _case({"hostile": (math.nan,)}, NAMED, "nan-in-tuple"),
    _case({"hostile": [(-math.inf,)]}, NAMED, "minus-inf-in-tuple-in-list"),
    # 400,000 characters but 1.2 MB of UTF-8: the limit is in bytes.
    _case({"hostile": "€" * 400_000}, WHOLE, "1.2MB-utf8-under-1Mi-chars"),
    _case('{"hostile": "' + "€" * 400_000 + '"}', WHOLE, "json-text-1.2MB-utf8"),
    _case(('{"hostile": "' + "€" * 400_000 + '"}').encode(), WHOLE, "json-bytes-1.2MB"),
    _case('{"hostile": NaN}', WHOLE, "json-text-NaN"),
    _case('{"hostile": Infinity}', WHOLE, "json-text-Infinity"),
    _case('{"hostile": 1e400}', WHOLE, "json-text-1e400"),
    _case('{"hostile": "\\udcff"}', WHOLE, "json-text-surrogate-escape"),
    _case('{"\\udcff": 1}', WHOLE, "json-text-surrogate-escape-key"),
    _case('{"hostile": "\udcff"}', WHOLE, "json-text-raw-surrogate"),
    _case(b'{"hostile": "\xff"}', WHOLE, "json-bytes-invalid-utf8"),
]

ACCEPTED_PARAMS = [
    *(pytest.param(nest(kind, 32), id=f"{kind}-depth-32")
      for kind in ("dict", "list", "tuple", "mixed")),
    pytest.param({"hostile": 2**64 - 1}, id="int-2**64-1"),
    pytest.param({"hostile": -(2**63)}, id="int-minus-2**63"),
    # 1,047,014 bytes of JSON: just under 1 MiB.
    pytest.param({"hostile": "€" * 349_000}, id="just-under-1MiB-utf8"),
]

HOSTILE_KEYS = [
    # 200 characters but 600 bytes: LMDB keys hold 511 bytes.
    pytest.param("€" * 200, id="euro-x200-600-bytes"),
    pytest.param("a" * 257, id="257-chars"),
    pytest.param("", id="empty"),
    pytest.param("\udcff", id="lone-surrogate"),
    pytest.param("\x00", id="nul"),
    pytest.param(b"key", id="bytes"),
    pytest.param(5, id="int"),
]

HOSTILE_OPTIONS = [
    pytest.param("timeout_s", 10**400, id="timeout_s-10**400"),
    # Stored as null it would mean "no timeout": refused, pointing at None.
    pytest.param("timeout_s", math.inf, id="timeout_s-inf"),
    pytest.param("timeout_s", math.nan, id="timeout_s-nan"),
    pytest.param("timeout_s", 0, id="timeout_s-0"),
    pytest.param("timeout_s", -1, id="timeout_s-minus-1"),
    pytest.param("timeout_s", True, id="timeout_s-True"),
    pytest.param("timeout_s", "5", id="timeout_s-str"),
    pytest.param("max_retries", -1, id="max_retries-minus-1"),
    pytest.param("max_retries", 1001, id="max_retries-1001"),
    pytest.param("max_retries", True, id="max_retries-True"),
    pytest.param("max_retries", 2.5, id="max_retries-2.5"),
    pytest.param("max_retries", 10**400, id="max_retries-10**400"),
]

SURFACES = ["create_job", "create_job-unvalidated", "create_jobs", "JobStore"]
OPTION_SURFACES = ["create_job", "create_jobs", "JobStore"]


# --------------------------------------------------------------------------- the runtime


class Unvalidated(JobExecutor):
    """An executor that does not look at parameters: the door alone checks them."""

    job_type = JobType.CLEANUP
    name = "unvalidated"

    def execute(self, ctx: JobContext, job: Any) -> JobDecision:
        return JobDecision.completed("done")


@contextlib.asynccontextmanager
async def runtime(path: Path) -> AsyncIterator[tuple[JobManager, JobStore]]:
    """A runtime on ``path`` (FL validates its parameters, CL does not) and a JobStore on the
    same path, as another submitter would use it."""
    async with open_job_manager(path, executors=[ScriptedExecutor(), Unvalidated()],
                                durable=False, poll_interval_s=0.02) as jm:
        store = JobStore(path, executors=[ScriptedExecutor()])
        try:
            yield jm, store
        finally:
            store.close()


async def serves(jm: JobManager, store: JobStore | None = None) -> None:
    """The runtime takes the next good job to Completed (and one submitted through the
    store, when given: it still admits work from other submitters)."""
    ids = [await jm.create_job("FL", {"after": "hostile"})]
    if store is not None:
        ids.append(store.create_job("FL", {"after": "hostile", "via": "JobStore"}))
    for job_id in ids:
        job = await jm.wait_job(job_id, timeout_s=30)
        assert job.status is S.COMPLETED, job


def stored_ids(jm: JobManager) -> set[str]:
    return set(audit_store(jm.store).records)


async def submit(surface: str, jm: JobManager, store: JobStore, params: Any = GOOD,
                 **options: Any) -> Any:
    if surface == "create_job":
        return await jm.create_job("FL", params, **options)
    if surface == "create_job-unvalidated":
        return await jm.create_job("CL", params, **options)
    if surface == "create_jobs":
        key = options.pop("idempotency_key", None)
        # A good job first: the bulk call is all or nothing.
        return await jm.create_jobs([("FL", GOOD), ("FL", params)],
                                    idempotency_keys=[None, key], **options)
    assert surface == "JobStore"
    return store.create_job("FL", params, **options)


def check_refusal(exc: InvalidParams, needles: tuple[str, ...], field: str | None) -> None:
    text = str(exc)
    text.encode("utf-8")  # the message itself can be printed and stored
    assert any(n.lower() in text.lower() for n in needles), (
        f"the message names none of {needles}: {text[:300]!r}")
    if field is not None:
        assert exc.field == field, f"field {exc.field!r}, not {field!r}: {text[:300]!r}"


async def expect_refused(surface: str, jm: JobManager, store: JobStore,
                         needles: tuple[str, ...], field: str | None = None,
                         params: Any = GOOD, **options: Any) -> None:
    before = stored_ids(jm)
    with pytest.raises(InvalidParams) as info:
        await submit(surface, jm, store, params, **options)
    check_refusal(info.value, needles, field)
    assert stored_ids(jm) == before, "a refused submit wrote something"


# --------------------------------------------------------------------------- at submit


@pytest.mark.parametrize(("params", "needles"), HOSTILE_PARAMS)
@pytest.mark.parametrize("surface", SURFACES)
async def test_hostile_params_are_refused_at_submit(
    tmp_path: Path, surface: str, params: Any, needles: tuple[str, ...]
) -> None:
    async with runtime(tmp_path / "store") as (jm, store):
        await expect_refused(surface, jm, store, needles, params=params)
        await serves(jm, store)
    report(TESTS, params_refused=1)


@pytest.mark.parametrize("key", HOSTILE_KEYS)
@pytest.mark.parametrize("surface", OPTION_SURFACES)
async def test_hostile_idempotency_keys_are_refused_at_submit(
    tmp_path: Path, surface: str, key: Any
) -> None:
    async with runtime(tmp_path / "store") as (jm, store):
        await expect_refused(surface, jm, store, ("idempotency_key",), "idempotency_key",
                             idempotency_key=key)
        await serves(jm, store)
    report(TESTS, keys_refused=1)


@pytest.mark.parametrize(("option", "value"), HOSTILE_OPTIONS)
@pytest.mark.parametrize("surface", OPTION_SURFACES)
async def test_hostile_job_options_are_refused_at_submit(
    tmp_path: Path, surface: str, option: str, value: Any
) -> None:
    async with runtime(tmp_path / "store") as (jm, store):
        await expect_refused(surface, jm, store, (option,), option, **{option: value})
        if option == "timeout_s" and value == math.inf:
            with pytest.raises(InvalidParams, match="None"):
                await submit(surface, jm, store, **{option: value})
        await serves(jm, store)
    report(TESTS, options_refused=1)


@pytest.mark.parametrize("params", ACCEPTED_PARAMS)
@pytest.mark.parametrize("surface", ["create_job", "JobStore"])
async def test_values_at_the_limits_are_stored_exactly(
    tmp_path: Path, surface: str, params: Any
) -> None:
    async with runtime(tmp_path / "store") as (jm, store):
        job_id = await submit(surface, jm, store, params)
        job = await jm.wait_job(job_id, timeout_s=30)
        assert job.status is S.COMPLETED, job
        assert job.params == _flat(params)


@pytest.mark.parametrize("key", [pytest.param("€" * 170, id="euro-x170-510-bytes"),
                                 pytest.param("a" * 256, id="256-chars")])
@pytest.mark.parametrize("surface", ["create_job", "JobStore"])
async def test_keys_at_the_limits_are_accepted(tmp_path: Path, surface: str, key: str) -> None:
    async with runtime(tmp_path / "store") as (jm, store):
        job_id = await submit(surface, jm, store, idempotency_key=key)
        job = await jm.wait_job(job_id, timeout_s=30)
        assert job.status is S.COMPLETED and job.idempotency_key == key, job


@pytest.mark.parametrize("kind", ["tuple", "mixed"])
def test_a_5000_level_nesting_is_refused_without_killing_the_process(
    tmp_path: Path, kind: str
) -> None:
    result = subprocess.run(
        [sys.executable, str(HERE / "hostile_child.py"), kind, "5000", str(tmp_path / "store")],
        capture_output=True, encoding="utf-8", errors="replace", timeout=60,
    )
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert result.returncode == 0, (
        f"the child ended with {result.returncode} (134 or -6: SIGABRT, a corrupted heap) "
        f"after {lines}; stderr: {result.stderr[-1500:]}")
    outcomes = {line["surface"]: line for line in lines if "outcome" in line}
    assert set(outcomes) == {"create_job", "create_jobs", "JobStore"}, lines
    for surface, line in outcomes.items():
        assert (line["outcome"], line["error"]) == ("refused", "InvalidParams"), (surface, line)
        assert "hostile" in line["message"], (surface, line)
    assert {"stored": 0} in lines, "a refused submit wrote something"
    assert {"served": "Completed"} in lines, lines


# --------------------------------------------------------------------------- the CLI

# The CLI checks parameters with the built-in validators, which refuse a parameter they do
# not know ("hostile") -- but only after the door: a refusal naming the unknown parameter means
# the door let the hostile value through. JobCleanup's validator takes "{}".
CLI_TYPE = "JobCleanup"


def hostile_json(hostile: str) -> str:
    return '{"hostile": ' + hostile + "}"


def deep_json(kind: str, depth: int) -> str:
    """JSON text nested ``depth`` levels deep (the parameters object is level 1)."""
    opening, closing, inner = (('{"hostile": ', "}", "{}") if kind == "dict"
                               else ("[", "]", "[]"))
    return hostile_json(opening * (depth - 2) + inner + closing * (depth - 2))


def cli_executors() -> list[JobExecutor]:
    return [ScriptedExecutor(), ScriptedExecutor(JobType.JOB_CLEANUP)]


CLI_PARAMS = [
    pytest.param(hostile_json("NaN"), id="NaN"),
    pytest.param(hostile_json("Infinity"), id="Infinity"),
    pytest.param(hostile_json("1e400"), id="1e400"),
    pytest.param(hostile_json('"\\udcff"'), id="surrogate-escape"),
    pytest.param(hostile_json('{"\\udcff": 1}'), id="surrogate-escape-key"),
    # What a non-UTF-8 byte on the command line becomes (surrogateescape).
    pytest.param(hostile_json('"\udcff"'), id="raw-surrogate"),
    pytest.param(hostile_json('"\xff"').encode("latin-1"), id="file-invalid-utf8"),
    pytest.param(hostile_json('"' + "€" * 400_000 + '"').encode(), id="file-1.2MB-utf8"),
    *(pytest.param(deep_json(kind, depth), id=f"{kind}-depth-{depth}")
      for kind in ("dict", "list") for depth in DEPTHS),
]

CLI_OPTIONS = [
    *(pytest.param("--key", value, ("idempotency_key", "--key"), id=f"key-{name}")
      for name, value in (("euro-x200", "€" * 200), ("257-chars", "a" * 257), ("empty", ""),
                          ("lone-surrogate", "\udcff"))),
    *(pytest.param("--timeout", value, ("timeout",), id=f"timeout-{value}")
      for value in ("inf", "1e400", "nan", "0", "-1", "True")),
    *(pytest.param("--max-retries", value, ("max_retries", "max-retries"),
                   id=f"max-retries-{name}")
      for name, value in (("minus-1", "-1"), ("1001", "1001"), ("2.5", "2.5"),
                          ("10**400", "1" + "0" * 400), ("True", "True"))),
]


class CliRun:
    """``kalam-actors`` called in-process (as test_cli_inputs does) beside a runtime."""

    def __init__(self, capsys: pytest.CaptureFixture[str], data: Path) -> None:
        self.capsys = capsys
        self.data = data

    def __call__(self, *args: str) -> tuple[int, str, str]:
        try:
            code = main([*args, "--data", str(self.data)], configure_logging=False)
        except SystemExit as exc:  # argparse's usage errors
            code = int(exc.code or 0)
        out, err = self.capsys.readouterr()
        return code, out, err

    def submit(self, params: str | bytes, *extra: str) -> tuple[int, str, str]:
        if isinstance(params, bytes):
            path = self.data.parent / "params.json"
            path.write_bytes(params)
            params = f"@{path}"
        return self("submit", CLI_TYPE, "--params", params, *extra)


@contextlib.asynccontextmanager
async def cli_runtime(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                      ) -> AsyncIterator[tuple[JobManager, CliRun]]:
    data = tmp_path / "data"
    async with open_job_manager(data / "jobs", executors=cli_executors(), durable=False,
                                poll_interval_s=0.02) as jm:
        yield jm, CliRun(capsys, data)


async def cli_serves(jm: JobManager, cli: CliRun) -> None:
    code, out, err = cli.submit("{}")
    assert code == 0, err
    job = await jm.wait_job(out.strip(), timeout_s=30)
    assert job.status is S.COMPLETED, job


def check_cli_refusal(jm: JobManager, before: set[str], result: tuple[int, str, str],
                      needles: tuple[str, ...]) -> None:
    code, out, err = result
    assert code == EXIT_USAGE, f"exit {code}; stderr: {err[-500:]!r}"
    assert out == "", "a refused submit printed a job id"
    assert "error" in err and any(n in err for n in needles), err[-500:]
    assert "unknown parameter" not in err, (
        f"the door let the value through; the executor's validator refused it: {err[-300:]!r}")
    assert stored_ids(jm) == before, "a refused submit wrote something"


@pytest.mark.parametrize("params", CLI_PARAMS)
async def test_cli_submit_refuses_hostile_params(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], params: str | bytes
) -> None:
    async with cli_runtime(tmp_path, capsys) as (jm, cli):
        before = stored_ids(jm)
        check_cli_refusal(jm, before, cli.submit(params), WHOLE)
        await cli_serves(jm, cli)


@pytest.mark.parametrize(("option", "value", "needles"), CLI_OPTIONS)
async def test_cli_submit_refuses_hostile_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str,
    needles: tuple[str, ...]
) -> None:
    async with cli_runtime(tmp_path, capsys) as (jm, cli):
        before = stored_ids(jm)
        check_cli_refusal(jm, before, cli.submit("{}", option, value), needles)
        await cli_serves(jm, cli)


@pytest.mark.parametrize(("args", "needles"), [
    pytest.param([b"--key", b"\xff"], ("idempotency_key", "--key"), id="key-non-utf8-byte"),
    pytest.param([b"--key", ("€" * 200).encode()], ("idempotency_key", "--key"),
                 id="key-euro-x200"),
    pytest.param([b"--params", b'{"hostile": "\xff"}'], WHOLE, id="params-non-utf8-byte"),
])
async def test_the_real_command_refuses_hostile_argv(
    tmp_path: Path, args: list[bytes], needles: tuple[str, ...]
) -> None:
    """The command as a shell runs it: bytes that are not UTF-8 reach it as lone surrogates,
    and its error still prints."""
    data = tmp_path / "data"
    if b"--params" not in args:
        args = [*args, b"--params", b"{}"]
    argv = [sys.executable.encode(), b"-m", b"kalam_actors", b"submit", CLI_TYPE.encode(),
            b"--data", os.fsencode(data), *args]
    async with open_job_manager(data / "jobs", executors=cli_executors(), durable=False,
                                poll_interval_s=0.02) as jm:
        before = stored_ids(jm)
        result = await trio.to_thread.run_sync(
            lambda: subprocess.run(argv, capture_output=True, timeout=60))
        err = result.stderr.decode("utf-8", "replace")
        check_cli_refusal(jm, before, (result.returncode, result.stdout.decode(), err), needles)
        await serves(jm)


# --------------------------------------------------------------------------- from executors

Behaviour = Callable[[JobContext], JobDecision]


def _raise_surrogate(ctx: JobContext) -> JobDecision:
    raise RuntimeError("bad \udcff text")


def _retry_then_complete(ctx: JobContext) -> JobDecision:
    if ctx.attempt == 1:
        return JobDecision.retry("again", backoff_ms=100, exception_trace="trace \udcff text")
    return JobDecision.completed("done")


BEHAVIOURS: dict[str, Behaviour] = {
    "good": lambda ctx: JobDecision.completed("fine"),
    "completed-surrogate": lambda ctx: JobDecision.completed("bad \udcff text"),
    "failed-surrogate": lambda ctx: JobDecision.failed("bad \udcff text"),
    "skipped-surrogate": lambda ctx: JobDecision.skipped("bad \udcff text"),
    "retry-surrogate": lambda ctx: JobDecision.retry("bad \udcff text", backoff_ms=100),
    "failed-trace-surrogate": lambda ctx: JobDecision.failed(
        "bad text", exception_trace="bad \udcff text"),
    "raise-surrogate": _raise_surrogate,
    "retry-trace-surrogate-then-complete": _retry_then_complete,
    "message-bytes": lambda ctx: JobDecision.completed(b"bytes"),  # type: ignore[arg-type]
    "message-int": lambda ctx: JobDecision.failed(42),  # type: ignore[arg-type]
    "trace-bytes": lambda ctx: JobDecision.failed(
        "bad trace", exception_trace=b"trace"),  # type: ignore[arg-type]
}


class Hostile(JobExecutor):
    """Does what ``BEHAVIOURS[params["case"]]`` does; ``{"case": "good"}`` completes."""

    job_type = JobType.FLUSH
    name = "hostile"

    def execute(self, ctx: JobContext, job: Any) -> JobDecision:
        return BEHAVIOURS[ctx.params["case"]](ctx)


@contextlib.asynccontextmanager
async def executor_runtime(path: Path) -> AsyncIterator[JobManager]:
    # Commits in the trio thread, and a long poll: the MockClock jumps straight to the next
    # due retry (see test_reliability_actor_faults).
    async with open_job_manager(path, executors=[Hostile()], durable=False,
                                poll_interval_s=600.0) as jm:
        yield jm


async def good_job(jm: JobManager) -> None:
    job_id = await jm.create_job("FL", {"case": "good"})
    assert (await jm.wait_job(job_id, timeout_s=60)).status is S.COMPLETED


async def hostile_job(path: Path, case: str, max_retries: int) -> Any:
    """Run one job of ``case`` to its end; the runtime serves a good job after it, and opens
    again on the same store, finding the job as it ended."""
    async with executor_runtime(path) as jm:
        job_id = await jm.create_job("FL", {"case": case}, max_retries=max_retries)
        job = await jm.wait_job(job_id, timeout_s=60)
        await good_job(jm)
    async with executor_runtime(path) as jm:
        again = await jm.get_job(job_id)
        assert again is not None and again.status is job.status, again
        assert again.message == job.message and again.exception_trace == job.exception_trace
        await good_job(jm)
        audit_store(jm.store)
    return job


def readable(text: str | None, field: str) -> str:
    assert isinstance(text, str), f"{field} is {text!r}"
    text.encode("utf-8")
    return text


@pytest.mark.parametrize(("case", "max_retries", "status", "field"), [
    pytest.param("completed-surrogate", 0, S.COMPLETED, "message", id="completed-message"),
    pytest.param("failed-surrogate", 0, S.FAILED, "message", id="failed-message"),
    pytest.param("skipped-surrogate", 0, S.SKIPPED, "message", id="skipped-message"),
    pytest.param("retry-surrogate", 0, S.FAILED, "message", id="retry-message-no-retries-left"),
    pytest.param("retry-surrogate", 1, S.FAILED, "exception_trace", id="retry-message-retried"),
    pytest.param("failed-trace-surrogate", 0, S.FAILED, "exception_trace", id="failed-trace"),
    pytest.param("raise-surrogate", 0, S.FAILED, "message", id="raised-exception-message"),
    pytest.param("retry-trace-surrogate-then-complete", 1, S.COMPLETED, "exception_trace",
                 id="retry-trace-then-completed"),
])
async def test_executor_text_with_a_lone_surrogate_is_stored_escaped(
    tmp_path: Path, vclock: trio.testing.MockClock, case: str, max_retries: int,
    status: JobStatus, field: str
) -> None:
    job = await hostile_job(tmp_path / "store", case, max_retries)
    assert job.status is status, job
    assert job.retry_count == max_retries, job
    text = readable(getattr(job, field), field)
    # The text around the surrogate is kept as it was; the surrogate is kept as its escape.
    assert "udcff" in text and " text" in text, text
    if job.message is not None:
        readable(job.message, "message")
    report(TESTS, executor_surrogates=1)


@pytest.mark.parametrize(("case", "field"), [
    pytest.param("message-bytes", "message", id="message-bytes"),
    pytest.param("message-int", "message", id="message-int"),
    pytest.param("trace-bytes", "exception_trace", id="trace-bytes"),
])
@pytest.mark.parametrize("max_retries", [0, 1], ids=["no-retries", "one-retry"])
async def test_executor_returning_a_non_text_field_fails_the_attempt(
    tmp_path: Path, vclock: trio.testing.MockClock, case: str, field: str, max_retries: int
) -> None:
    job = await hostile_job(tmp_path / "store", case, max_retries)
    # Every attempt is bad: each is a failed attempt, retried while retries are left.
    assert job.status is S.FAILED, job
    assert job.retry_count == max_retries, job
    assert field in readable(job.message, "message"), job.message
    report(TESTS, executor_bad_fields=1)


PROGRESS_REFUSED = [
    pytest.param(lambda ctx: ctx.report_progress(10**30), "done", id="done-10**30"),
    pytest.param(lambda ctx: ctx.report_progress(-1), "done", id="done-minus-1"),
    pytest.param(lambda ctx: ctx.report_progress(1, total=math.inf), "total", id="total-inf"),
    pytest.param(lambda ctx: ctx.report_progress(1, note=b"bytes"), "note", id="note-bytes"),
]


def _progress_behaviour(call: Callable[[JobContext], None]) -> Behaviour:
    def run(ctx: JobContext) -> JobDecision:
        try:
            call(ctx)
        except Exception as exc:
            field = getattr(exc, "field", None)
            # The context still works after a refused report.
            ctx.report_progress(2, total=4, note="after")
            return JobDecision.completed(f"refused {type(exc).__name__} field={field}: {exc}")
        return JobDecision.completed("accepted")

    return run


@pytest.mark.parametrize(("call", "field"), PROGRESS_REFUSED)
async def test_invalid_progress_raises_invalid_params_in_the_executor(
    tmp_path: Path, vclock: trio.testing.MockClock, call: Callable[[JobContext], None],
    field: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(BEHAVIOURS, "progress", _progress_behaviour(call))
    job = await hostile_job(tmp_path / "store", "progress", 0)
    assert job.status is S.COMPLETED, job
    message = readable(job.message, "message")
    assert message.startswith("refused InvalidParams"), (
        f"the executor did not see InvalidParams at the call: {message!r}")
    assert field in message, message
    assert job.progress is not None and (job.progress.done, job.progress.total,
                                         job.progress.note) == (2, 4, "after"), job.progress
    report(TESTS, progress_refused=1)


@pytest.mark.parametrize("note", [
    pytest.param("bad \udcff note", id="lone-surrogate"),
    pytest.param("n" * 10_000, id="10000-chars"),
])
async def test_progress_notes_are_stored_readable(
    tmp_path: Path, vclock: trio.testing.MockClock, note: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def report_note(ctx: JobContext) -> None:
        ctx.report_progress(1, total=2, note=note)

    monkeypatch.setitem(BEHAVIOURS, "progress", _progress_behaviour(report_note))
    job = await hostile_job(tmp_path / "store", "progress", 0)
    assert job.status is S.COMPLETED and job.message == "accepted", job
    assert job.progress is not None and (job.progress.done, job.progress.total) == (1, 2)
    stored = readable(job.progress.note, "progress note")
    assert stored.startswith(note[:3]), stored[:50]
    if "\udcff" in note:
        assert "udcff" in stored, stored
    report(TESTS, progress_notes=1)
