"""Issue 7.2 — a stateful property test of the job manager against a simple model.

Hypothesis drives a real runtime (in-process, on a background thread, on a MockClock that only
moves when the test says so) through: create (with and without keys), cancel, executor
decisions (complete, retry, fail, skip, raise, garbage), restart (the runtime is stopped with
attempts still blocked in their executors, so recovery finds them Running), and time passing.
After every step the store's states, retry counts and indexes must equal the model's.

Executors block in ``execute`` until the test releases that attempt with a decision, so a job
is Running exactly as long as the model says. The runtime's wall clock is injected (the
manager's ``_wall_now_us``) so that virtual time carries across restarts.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from reliability_support import audit_store, report, wait_until

import kalam_actors.manager as manager_module
from kalam_actors import (
    CancelNotAllowed,
    IdempotentConflict,
    InvalidTransition,
    JobDecision,
    JobExecutor,
    JobType,
    RetryPolicy,
    open_job_manager,
)

POLICY = RetryPolicy(base_ms=1000, factor=2.0, max_ms=4000)
START_US = 1_800_000_000_000_000
CAPACITY = 6  # actors per type; the model keeps fewer jobs active than this


# ----------------------------------------------------------------------------- executors


@dataclasses.dataclass(eq=False)
class Execution:
    job_id: str
    attempt: int
    generation: int
    event: threading.Event = dataclasses.field(default_factory=threading.Event)
    decision: Any = None


class Executions:
    """Every attempt the executors started, by (job, attempt); the test releases them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.live: dict[tuple[str, int], Execution] = {}
        self.started: list[tuple[str, int]] = []
        self.generation = 0

    def run(self, job_id: str, attempt: int) -> Any:
        ex = Execution(job_id, attempt, self.generation)
        with self.lock:
            self.live[(job_id, attempt)] = ex
            self.started.append((job_id, attempt))
        ex.event.wait(300)
        with self.lock:
            self.live.pop((job_id, attempt), None)
        return ex.decision

    def release(self, job_id: str, attempt: int, decision: Any) -> None:
        with self.lock:
            ex = self.live[(job_id, attempt)]
        ex.decision = decision
        ex.event.set()

    def release_all(self, decision: Any) -> None:
        with self.lock:
            pending = list(self.live.values())
        for ex in pending:
            ex.decision = decision
            ex.event.set()


def make_executor(job_type: JobType, executions: Executions, **attrs: Any) -> JobExecutor:
    def execute(self: Any, ctx: Any, job: Any) -> Any:
        decision = executions.run(ctx.job_id, ctx.attempt)
        if decision == "raise":
            raise RuntimeError("asked to raise")
        return decision

    cls = type(f"Blocking{job_type.prefix}", (JobExecutor,), {
        "job_type": job_type, "name": f"blocking-{job_type.prefix}", "execute": execute,
        "actors": CAPACITY, **attrs,
    })
    return cls()


# ----------------------------------------------------------------------------- the runtime


class Generation:
    """One run of the runtime, on its own thread and MockClock."""

    def __init__(self, path: Path, executors: list[JobExecutor], wall_us: int) -> None:
        self.clock = trio.testing.MockClock()
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.wall_us = wall_us

        async def main() -> None:
            self.stop = trio.Event()
            async with open_job_manager(
                path, executors=executors, max_concurrent=3 * CAPACITY, durable=False,
                poll_interval_s=1e6, shutdown_timeout_s=0.0, retry_policy=POLICY,
            ) as jm:
                self.jm = jm
                self.token = trio.lowlevel.current_trio_token()
                self.ready.set()
                await self.stop.wait()

        def run() -> None:
            try:
                trio.run(main, clock=self.clock)
            except BaseException as exc:
                self.error = exc
            finally:
                self.ready.set()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        self.ready.wait(60)
        if self.error is not None:
            raise self.error

    def call(self, fn: Any, *args: Any) -> Any:
        async def go() -> Any:
            return await fn(*args)

        return trio.from_thread.run(go, trio_token=self.token)

    def jump(self, seconds: float) -> None:
        trio.from_thread.run_sync(self.clock.jump, seconds, trio_token=self.token)

    def close(self) -> None:
        def stop() -> None:
            # From here on the runtime only shuts down: let its timeouts pass at once.
            self.clock.autojump_threshold = 0
            self.stop.set()

        trio.from_thread.run_sync(stop, trio_token=self.token)
        self.thread.join(60)
        assert not self.thread.is_alive(), "the runtime did not stop"
        if self.error is not None:
            raise self.error


# ----------------------------------------------------------------------------- the model


@dataclasses.dataclass
class ModelJob:
    job_id: str
    prefix: str
    key: str | None
    max_retries: int
    status: str = "R"
    retries: int = 0
    due_us: int | None = None
    cancel_accepted: bool = False

    @property
    def active(self) -> bool:
        return self.status in "NQRY"


RERUN = {"CL": True, "RT": False, "UC": True}
CANCELLABLE = {"CL": True, "RT": True, "UC": False}
DECISIONS = ["complete", "retry-1s", "retry-2s", "fail", "skip", "raise", "garbage"]
FIGURES = {"steps": 0, "examples": 0, "jobs": 0, "restarts": 0, "decisions": 0, "cancels": 0}


class JobManagerMachine(RuleBasedStateMachine):
    jobs = Bundle("jobs")

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(self.tmp_factory.mktemp("sm"))
        self.executions = Executions()
        self.executors = [
            make_executor(JobType.CLEANUP, self.executions, rerun_on_recovery=True),
            make_executor(JobType.RETENTION, self.executions, rerun_on_recovery=False),
            make_executor(JobType.USER_CLEANUP, self.executions, rerun_on_recovery=True,
                          cancellable=False),
        ]
        self.model: dict[str, ModelJob] = {}
        self.restarts = 0
        self.now_us = START_US
        self.gen = self.start()
        FIGURES["examples"] += 1

    tmp_factory: Any = None  # set by the test

    # -- harness

    def start(self) -> Generation:
        manager_module._wall_now_us = lambda: self.now_us  # type: ignore[attr-defined]
        self.executions.generation += 1
        return Generation(self.root / "store", self.executors, self.now_us)

    def teardown(self) -> None:
        try:
            self.gen.close()
        finally:
            self.executions.release_all(JobDecision.completed("teardown"))

    def holder(self, key: str | None) -> ModelJob | None:
        if key is None:
            return None
        return next((j for j in self.model.values() if j.active and j.key == key), None)

    def running(self) -> list[ModelJob]:
        return [j for j in self.model.values() if j.status == "R"]

    def dispatch_due(self) -> None:
        for job in self.model.values():
            if job.status == "Y" and job.due_us is not None and job.due_us <= self.now_us:
                job.status, job.due_us = "R", None

    def sync(self) -> None:
        """Wait until the store says what the model says (or fail with the difference)."""
        store = self.gen.jm.store
        want = {j.job_id: (j.status, j.retries) for j in self.model.values()}
        ex = self.executions

        def agreed() -> bool:
            audit = audit_store(store)
            got = {j: (r["s"], r["rc"]) for j, r in audit.records.items()}
            if got != want:
                return False
            with ex.lock:
                live = {k for k, e in ex.live.items() if e.generation == ex.generation}
            return all((j.job_id, j.retries + 1) in live for j in self.running())

        try:
            wait_until(agreed, timeout=10, what="the store to agree with the model")
        except AssertionError:
            audit = audit_store(store)
            got = {j: (r["s"], r["rc"]) for j, r in audit.records.items()}
            diff = {j: (want.get(j), got.get(j)) for j in set(want) | set(got)
                    if want.get(j) != got.get(j)}
            raise AssertionError(f"model and store disagree (model, store): {diff}") from None
        FIGURES["steps"] += 1

    # -- rules

    @precondition(lambda self: sum(j.active for j in self.model.values()) < CAPACITY)
    @rule(target=jobs, prefix=st.sampled_from(list(RERUN)),
          key=st.sampled_from([None, None, "a", "b"]), max_retries=st.integers(0, 2))
    def create(self, prefix: str, key: str | None, max_retries: int) -> Any:
        holder = self.holder(key)
        try:
            job_id = self._create(prefix, key, max_retries)
        except IdempotentConflict as exc:
            assert holder is not None, f"conflict on {key!r} but the model has no holder"
            assert exc.existing_job_id == holder.job_id
            self.sync()
            return holder.job_id
        assert holder is None, f"created a second active job for key {key!r}"
        self.model[job_id] = ModelJob(job_id, prefix, key, max_retries)
        FIGURES["jobs"] += 1
        self.sync()
        return job_id

    def _create(self, prefix: str, key: str | None, max_retries: int) -> str:
        jm = self.gen.jm

        async def go() -> str:
            return await jm.create_job(prefix, {}, idempotency_key=key, max_retries=max_retries)

        return trio.from_thread.run(go, trio_token=self.gen.token)

    @rule(job_id=jobs)
    def cancel(self, job_id: str) -> None:
        job = self.model[job_id]
        jm = self.gen.jm

        async def go() -> Any:
            return await jm.cancel_job(job_id)

        FIGURES["cancels"] += 1
        try:
            result = trio.from_thread.run(go, trio_token=self.gen.token)
        except InvalidTransition:
            assert not job.active, f"cancel of active {job_id} refused as terminal"
        except CancelNotAllowed:
            # The seed: a type that cannot be cancelled is refused once an attempt started
            # (Running, or Retrying after one).
            assert job.status in ("R", "Y") and not CANCELLABLE[job.prefix]
        else:
            assert job.active, f"cancel of terminal {job_id} ({job.status}) accepted"
            assert CANCELLABLE[job.prefix] or job.status not in ("R", "Y")
            if job.status == "R":
                assert CANCELLABLE[job.prefix]
                job.cancel_accepted = True
                assert result.status.value == "Running"
            else:
                job.status, job.due_us = "X", None
                assert result.status.value == "Cancelled"
        self.sync()

    @precondition(lambda self: bool(self.running()))
    @rule(data=st.data(), decision=st.sampled_from(DECISIONS))
    def decide(self, data: Any, decision: str) -> None:
        job = data.draw(st.sampled_from(sorted(self.running(), key=lambda j: j.job_id)))
        given: Any = {
            "complete": JobDecision.completed("done"),
            "retry-1s": JobDecision.retry("again", backoff_ms=1000),
            "retry-2s": JobDecision.retry("again", backoff_ms=2000),
            "fail": JobDecision.failed("no"),
            "skip": JobDecision.skipped("nothing"),
            "raise": "raise",
            "garbage": "not a decision",
        }[decision]
        self.executions.release(job.job_id, job.retries + 1, given)
        FIGURES["decisions"] += 1
        if job.cancel_accepted:
            job.status = "X"
        elif decision in ("complete", "fail", "skip"):
            job.status = {"complete": "C", "fail": "F", "skip": "S"}[decision]
        elif job.retries < job.max_retries:
            job.retries += 1
            backoff = {"retry-1s": 1000, "retry-2s": 2000}.get(decision)
            if backoff is None:
                backoff = POLICY.backoff_ms(job.retries)
            job.status, job.due_us = "Y", self.now_us + backoff * 1000
        else:
            job.status = "F"
        self.sync()

    @rule(seconds=st.sampled_from([0.5, 1.5, 2.5, 6.5]))
    def time_passes(self, seconds: float) -> None:
        self.gen.jump(seconds)
        self.now_us += int(seconds * 1_000_000)
        self.dispatch_due()
        self.sync()

    @precondition(lambda self: self.restarts < 3 and any(j.active for j in self.model.values()))
    @rule()
    def restart(self) -> None:
        self.restarts += 1
        self.gen.close()
        self.executions.release_all(JobDecision.completed("from a runtime that is gone"))
        for job in self.model.values():
            if job.status != "R":
                continue
            if job.cancel_accepted:
                job.status = "X"
            elif RERUN[job.prefix] and job.retries < job.max_retries:
                job.retries += 1
                job.status, job.due_us = "Y", self.now_us
            else:
                job.status = "F"
            job.cancel_accepted = False
        self.gen = self.start()
        FIGURES["restarts"] += 1
        self.dispatch_due()
        self.sync()

    @invariant()
    def no_attempt_started_twice(self) -> None:
        started = self.executions.started
        assert len(started) == len(set(started)), "an attempt of a job started twice"


def test_job_manager_agrees_with_its_model(
    tmp_path_factory: pytest.TempPathFactory, soak_mode: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The machine replaces the manager's wall clock for each generation; restored after.
    monkeypatch.setattr(manager_module, "_wall_now_us", manager_module._wall_now_us)
    JobManagerMachine.tmp_factory = tmp_path_factory
    profile = settings.get_profile("reliability-soak" if soak_mode else "reliability-ci")
    run_state_machine_as_test(JobManagerMachine, settings=profile)
    report("state_machine", **FIGURES)
