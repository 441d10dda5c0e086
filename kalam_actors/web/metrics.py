"""``/metrics`` in Prometheus's text format: a collector that reads the job store on each
scrape (counts are kept by the store, so a scrape is a few index reads, never a scan), plus,
when the web runs inside a runtime, that runtime's own figures."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from .._runtime_lock import runtime_pid
from ..ids import JobType
from ..manager import Histogram, JobManager
from ..model import JobStatus
from ..store import JobStore
from . import queries

__all__ = ["StoreCollector", "last_write_time", "metrics_registry", "render_metrics"]

PREFIX = "kalam_actors"


def last_write_time(store: JobStore) -> float | None:
    """When the store's data file last changed (seconds since the epoch): LMDB writes each
    commit into it, and readers never touch it. None if it cannot be read."""
    try:
        return (store.path / "jobs.lmdb" / "data.mdb").stat().st_mtime
    except OSError:
        return None


class StoreCollector(Collector):
    """Collects the job store's figures (and a manager's, when given) on each scrape."""

    def __init__(self, store: JobStore, manager: JobManager | None = None) -> None:
        self.store = store
        self.manager = manager

    def collect(self) -> Iterator[Metric]:
        yield self._jobs()
        yield from self._store()
        if self.manager is not None:
            yield from self._runtime(self.manager)

    def _jobs(self) -> Metric:
        counts = self.store.counts()
        jobs = GaugeMetricFamily(
            f"{PREFIX}_jobs", "Stored jobs by status and type.", labels=["status", "type"])
        # Every pair, zeros included: a series that vanishes at zero breaks rate() and alerts.
        for status in JobStatus:
            for job_type in JobType:
                jobs.add_metric([status.value, job_type.value], counts.get((status, job_type), 0))
        return jobs

    def _store(self) -> Iterator[Metric]:
        pid = runtime_pid(self.store.path)
        yield GaugeMetricFamily(
            f"{PREFIX}_runtime_up", "1 when a runtime holds the job store, else 0.",
            value=0 if pid is None else 1)
        waiting = queries.oldest_waiting(self.store)
        lag = 0.0
        if waiting is not None:
            lag = max(0.0, (datetime.now(UTC) - waiting.created_at).total_seconds())
        yield GaugeMetricFamily(
            f"{PREFIX}_queue_lag_seconds",
            "Age of the oldest job waiting to start (New or Queued); 0 when none waits.",
            value=lag)
        written = last_write_time(self.store)
        if written is not None:
            yield GaugeMetricFamily(
                f"{PREFIX}_store_last_write_timestamp_seconds",
                "When the job store last committed a write (its data file's mtime).",
                value=written)

    def _runtime(self, manager: JobManager) -> Iterator[Metric]:
        stats = manager.statistics()
        yield GaugeMetricFamily(
            f"{PREFIX}_in_flight", "Attempts handed to executor actors and not yet finished.",
            value=stats.in_flight)
        yield GaugeMetricFamily(
            f"{PREFIX}_max_concurrent", "The most attempts the runtime runs at once.",
            value=stats.max_concurrent)
        yield CounterMetricFamily(
            f"{PREFIX}_commits", "Write transactions the runtime committed since it started.",
            value=stats.commits)
        yield CounterMetricFamily(
            f"{PREFIX}_state_changes", "Job records the runtime wrote since it started.",
            value=stats.state_changes)
        yield CounterMetricFamily(
            f"{PREFIX}_actor_restarts",
            "Executor actors restarted after a crash or a timeout since the runtime started.",
            value=stats.actor_restarts)
        attempts = CounterMetricFamily(
            f"{PREFIX}_attempts", "Attempts recorded since the runtime started, by type and "
            "outcome.", labels=["type", "outcome"])
        for (job_type, outcome), n in sorted(stats.attempts.items(),
                                             key=lambda item: (item[0][0].value, item[0][1])):
            attempts.add_metric([job_type.value, outcome], n)
        yield attempts
        for name, doc, hist in (
            ("attempt_duration_seconds", "How long attempts ran, start to result.",
             stats.attempt_seconds),
            ("start_latency_seconds", "From a job's creation to its first attempt's start.",
             stats.start_latency_seconds),
            ("commit_duration_seconds", "How long each group commit took, fsync included.",
             stats.commit_seconds),
            ("commit_batch_writes", "Job records written by each group commit.",
             stats.commit_writes),
        ):
            if hist is not None:
                yield _histogram(f"{PREFIX}_{name}", doc, hist)


def _histogram(name: str, doc: str, hist: Histogram) -> Metric:
    buckets = [("+Inf" if bound == float("inf") else repr(float(bound)), count)
               for bound, count in zip(hist.bounds, hist.counts, strict=True)]
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=hist.total)


def metrics_registry(store: JobStore, manager: JobManager | None = None) -> CollectorRegistry:
    """A registry of its own (not prometheus_client's global one): the store's collector, and
    the serving process's own figures (memory, CPU, open files: the runtime's, under
    ``run --web``)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store, manager))
    ProcessCollector(registry=registry)
    return registry


def render_metrics(registry: CollectorRegistry) -> bytes:
    """The registry in Prometheus's text exposition format."""
    return generate_latest(registry)
