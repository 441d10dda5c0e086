"""The ASGI app: server-rendered pages, actions, ``/metrics`` and ``/healthz`` over a JobStore.

Every store read runs in a worker thread (an LMDB read is short, but a page may read a few
thousand records, and under ``run --web`` the trio thread is the runtime's). Every page reads
without JavaScript; ``static/live.js`` only refreshes the parts marked ``data-live``.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import parse_qs, urlencode

import anyio.to_thread
import jinja2
import orjson
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._runtime_lock import runtime_pid
from ..errors import (
    CancelNotAllowed,
    IdempotentConflict,
    InvalidParams,
    InvalidTransition,
    JobNotFound,
    KalamError,
    StoreError,
    UnknownJobType,
)
from ..ids import JobId, JobType
from ..manager import JobManager
from ..model import Job, JobStatus
from ..store import JobStore
from . import auth, queries
from .chart import chart_view
from .errors import WebConfigError
from .metrics import last_write_time, metrics_registry, render_metrics

__all__ = ["create_app", "resolve_store_path"]

T = TypeVar("T")

MAX_FORM_BYTES: Final = 16 * 1024
LIVE_INTERVAL_MS: Final = 1000
CHART_TTL_S: Final = 10.0
"""The overview's chart (up to CHART_SCAN jobs read) is computed at most this often."""
_STATIC_VERSION: Final = "1"

_SECURITY_HEADERS: Final = [
    (b"content-security-policy",
     b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
     b"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]


def resolve_store_path(source: str | os.PathLike[str]) -> Path:
    """The job store a path names: a store folder (holding ``jobs.lmdb``) or a data directory
    (holding ``jobs/jobs.lmdb``). Never creates one.

    Raises:
        WebConfigError: no job store there.
    """
    root = Path(source).expanduser()
    if (root / "jobs.lmdb").is_dir():
        return root.resolve()
    if (root / "jobs" / "jobs.lmdb").is_dir():
        return (root / "jobs").resolve()
    raise WebConfigError(
        f"no job store at {root} (looked for {root / 'jobs.lmdb'} and "
        f"{root / 'jobs' / 'jobs.lmdb'}); start one with `kalam-actors run --data DIR --create`"
    )


class _SecurityHeaders:
    """Adds the security headers to every response (a plain ASGI middleware)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = list(message.get("headers", [])) + _SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)


# --------------------------------------------------------------------------- formatting


def _when(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _when_short(value: datetime | None) -> str:
    """``MM-DD HH:MM:SS``: enough to tell jobs apart in a row."""
    return "" if value is None else value.astimezone(UTC).strftime("%m-%d %H:%M:%S")


def _seconds(value: float) -> str:
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.0f} min"
    if value < 172800:
        return f"{value / 3600:.1f} h"
    return f"{value / 86400:.0f} days"


def _ago(value: datetime | None) -> str:
    if value is None:
        return ""
    return _seconds(max(0.0, (datetime.now(UTC) - value).total_seconds())) + " ago"


def _took(job: Job) -> str:
    if job.started_at is None:
        return ""
    end = job.finished_at or datetime.now(UTC)
    return _seconds(max(0.0, (end - job.started_at).total_seconds()))


def _short(text: str | None, limit: int = 120) -> str:
    if not text:
        return ""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _pretty_json(text: str) -> str:
    try:
        return orjson.dumps(orjson.loads(text), option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONDecodeError:
        return text


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("kalam_actors.web", "templates"),
        autoescape=True,  # every job text is escaped; nothing is marked safe
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=_when, when_short=_when_short, ago=_ago, short=_short,
                       pretty_json=_pretty_json, took=_took, seconds=_seconds)
    env.globals.update(JobStatus=JobStatus, JobType=JobType,
                       static=lambda name: f"/static/{name}?v={_STATIC_VERSION}")
    return env


# --------------------------------------------------------------------------- the app


_NOTICES: Final = {
    "cancelled": "The job was cancelled.",
    "retried": "A new job runs this one again.",
    "deleted": "The job was deleted.",
    "logged-in": "Logged in: you can cancel, retry and delete jobs.",
    "logged-out": "Logged out.",
}


def _query_from(params: Mapping[str, str]) -> queries.JobsQuery:
    """The jobs page's filters from its URL.

    Raises:
        InvalidParams, UnknownJobType: naming the bad value.
    """
    status = params.get("status") or None
    job_type = params.get("type") or None
    limit_text = params.get("limit") or str(queries.DEFAULT_PAGE)
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= queries.MAX_PAGE:
        raise InvalidParams(f"limit must be a whole number from 1 to {queries.MAX_PAGE}, "
                            f"not {limit_text!r}", field="limit")
    before, after = params.get("before") or None, params.get("after") or None
    return queries.JobsQuery(
        status=None if status is None else JobStatus.parse(status),
        job_type=None if job_type is None else JobType.parse(job_type),
        key=params.get("key") or None,
        id_prefix=(params.get("id") or "").strip().upper() or None,
        text=(params.get("q") or "").strip() or None,
        before=None if before is None else JobId.parse(before),
        after=None if after is None else JobId.parse(after),
        limit=int(limit_text),
    )


def _jobs_url(params: Mapping[str, str], **changes: str | None) -> str:
    """``/jobs`` with the same filters and ``changes`` applied (None removes a parameter)."""
    merged = {k: v for k, v in params.items() if v and k not in ("before", "after", "notice",
                                                                   "job")}
    for k, v in changes.items():
        if v is None:
            merged.pop(k, None)
        else:
            merged[k] = v
    return "/jobs" + (f"?{urlencode(merged)}" if merged else "")


class _Web:
    """The app's state and handlers."""

    def __init__(self, store: JobStore, *, token: str | None, log_file: Path | None,
                 manager: JobManager | None) -> None:
        self.store = store
        self.token = token
        self.log_file = log_file
        self.manager = manager
        self.templates = _templates()
        self.registry = metrics_registry(store, manager)
        self._chart: tuple[float, queries.Chart] | None = None

    def routes(self) -> list[Route | Mount]:
        return [
            Route("/", self.overview_page, methods=["GET"]),
            Route("/jobs", self.jobs_page, methods=["GET"]),
            Route("/jobs/{job_id}", self.job_page, methods=["GET"]),
            Route("/jobs/{job_id}/cancel", partial(self.act, "cancel"), methods=["POST"]),
            Route("/jobs/{job_id}/retry", partial(self.act, "retry"), methods=["POST"]),
            Route("/jobs/{job_id}/delete", partial(self.act, "delete"), methods=["POST"]),
            Route("/login", self.login_page, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/metrics", self.metrics, methods=["GET"]),
            Route("/healthz", self.healthz, methods=["GET"]),
            Mount("/static", StaticFiles(packages=[("kalam_actors.web", "static")]),
                  name="static"),
        ]

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking store read in a worker thread."""
        return await anyio.to_thread.run_sync(partial(fn, *args))

    # -- rendering

    async def render(self, request: Request, template: str, status_code: int = 200,
                     **context: Any) -> HTMLResponse:
        """The page, rendered in a worker thread (a long table takes milliseconds, and under
        ``run --web`` the trio thread is the runtime's)."""
        csrf, fresh = auth.csrf_token(request)
        context = {
            "request_path": request.url.path,
            "request_target": _target(request),
            "token_configured": self.token is not None,
            "logged_in": auth.logged_in(request, self.token),
            "csrf": csrf,
            "notice": _NOTICES.get(request.query_params.get("notice", "")),
            "store_path": str(self.store.path),
            "live_interval": LIVE_INTERVAL_MS,
            "live": False,
            **context,
        }
        html = await self.read(self._render, template, context)
        response = HTMLResponse(html, status_code=status_code,
                                headers={"cache-control": "no-store"})
        if fresh:
            response.set_cookie(auth.CSRF_COOKIE, csrf, httponly=True, samesite="strict",
                                secure=request.url.scheme == "https")
        return response

    def _render(self, template: str, context: dict[str, Any]) -> str:
        return self.templates.get_template(template).render(
            runtime_pid=runtime_pid(self.store.path), now=datetime.now(UTC), **context)

    async def error(self, request: Request, status_code: int, title: str,
                    message: str) -> HTMLResponse:
        return await self.render(request, "error.html", status_code, title=title,
                                 message=message, nav="")

    # -- pages

    def _overview(self) -> queries.Overview:
        now = time.monotonic()
        cached = self._chart
        if cached is None or now - cached[0] > CHART_TTL_S:
            cached = self._chart = (now, queries.finished_chart(self.store, datetime.now(UTC)))
        return queries.overview(self.store, chart=cached[1])

    async def overview_page(self, request: Request) -> Response:
        data = await self.read(self._overview)
        by_status, by_type = queries.totals(data.counts)
        return await self.render(
            request, "overview.html", title="Overview", nav="overview", live=True, data=data,
            by_status=by_status, by_type=by_type, chart=chart_view(data.chart),
            total=sum(by_status.values()),
            active=sum(n for s, n in by_status.items() if s.is_active),
            lag=None if data.oldest_waiting is None else
            max(0.0, (datetime.now(UTC) - data.oldest_waiting.created_at).total_seconds()),
        )

    async def jobs_page(self, request: Request) -> Response:
        params = dict(request.query_params)
        counts = await self.read(self.store.counts)
        by_status, by_type = queries.totals(counts)
        context: dict[str, Any] = dict(
            title="Jobs", nav="jobs", params=params, by_status=by_status, by_type=by_type,
            filtered=any(params.get(k) for k in ("status", "type", "key", "id", "q")),
            deleted=_job_param(request, "job") if params.get("notice") == "deleted" else None)
        try:
            query = _query_from(params)
        except (InvalidParams, UnknownJobType) as exc:
            return await self.render(request, "jobs.html", 400, live=False, page=None,
                                     query_error=str(exc), **context)
        page = await self.read(queries.jobs_page, self.store, query)
        return await self.render(
            # A search reads thousands of jobs: it is not repeated every second.
            request, "jobs.html", live=not query.scans, page=page, query=query, query_error=None,
            older_url=page.older and _jobs_url(
                params, before=page.older, after=None),
            newer_url=page.newer and _jobs_url(params, after=page.newer, before=None),
            first_url=_jobs_url(params) if (query.before or query.after) else None,
            **context,
        )

    async def job_page(self, request: Request) -> Response:
        text = request.path_params["job_id"]
        if not _is_job_id(text):
            return await self.error(request, 404, "No such job", f"{text!r} is not a job id "
                                    "(two letters, a dash, 26 characters).")
        job = await self.read(self.store.get_job, text)
        if job is None:
            return await self.error(request, 404, "No such job",
                                    f"There is no job {text} (it may have been deleted).")
        lines = await self.read(queries.job_log_lines, self.log_file, job.job_id)
        return await self.render(
            request, "job.html", title=job.job_id, nav="jobs", live=True, job=job,
            log_lines=lines, log_file=None if self.log_file is None else str(self.log_file),
            retried_from=_job_param(request, "from"),
        )

    # -- actions

    async def act(self, action: str, request: Request) -> Response:
        form = await _form(request)
        refused = auth.refusal(request, self.token, form.get("csrf"))
        if refused is not None:
            return await self.error(request, 403, "Not allowed", str(refused))
        text = request.path_params["job_id"]
        if not _is_job_id(text):
            return await self.error(request, 404, "No such job", f"{text!r} is not a job id.")
        job_id = JobId.parse(text)
        try:
            if action == "cancel":
                await self._cancel(job_id)
                return _see_other(f"/jobs/{job_id}?notice=cancelled")
            if action == "retry":
                new_id = await self.read(self.store.retry_job, job_id)
                return _see_other(f"/jobs/{new_id}?notice=retried&from={job_id}")
            await self.read(self.store.delete_job, job_id)
            return _see_other(f"/jobs?notice=deleted&job={job_id}")
        except JobNotFound:
            return await self.error(request, 404, "No such job",
                                    f"There is no job {job_id} (it may have been deleted).")
        except (InvalidTransition, CancelNotAllowed, IdempotentConflict) as exc:
            return await self.error(request, 409, f"Cannot {action} {job_id}", str(exc))
        except StoreError as exc:
            return await self.error(request, 503, f"Cannot {action} {job_id}", str(exc))

    async def _cancel(self, job_id: JobId) -> Job:
        if self.manager is not None:
            # In the runtime's own process: its loop cancels at once, no polling.
            return await self.manager.cancel_job(job_id)
        return await self.read(self.store.cancel_job, job_id)

    # -- login

    async def login_page(self, request: Request) -> Response:
        return await self.render(request, "login.html", title="Log in", nav="", failed=False,
                                 next=_safe_next(request.query_params.get("next")))

    async def login(self, request: Request) -> Response:
        form = await _form(request)
        next_url = _safe_next(form.get("next"))
        if self.token is None:
            return await self.error(request, 403, "Read-only", "This web view has no token: it is "
                                    "read-only. Start it with --token to allow actions.")
        if not auth.same_origin(request) or not auth.equal(
                form.get("csrf"), request.cookies.get(auth.CSRF_COOKIE)):
            return await self.error(request, 403, "Not allowed",
                                    "The form's CSRF token does not match (reload and try again).")
        if not auth.equal(form.get("token"), self.token):
            await anyio.sleep(0.5)  # slows guessing; the token is the only secret here
            return await self.render(request, "login.html", 403, title="Log in", nav="",
                                     failed=True, next=next_url)
        response = _see_other(_with_notice(next_url, "logged-in"))
        response.set_cookie(auth.SESSION_COOKIE, auth.session_value(self.token), httponly=True,
                            samesite="strict", secure=request.url.scheme == "https")
        return response

    async def logout(self, request: Request) -> Response:
        form = await _form(request)
        if not auth.equal(form.get("csrf"), request.cookies.get(auth.CSRF_COOKIE)):
            return await self.error(request, 403, "Not allowed",
                                    "The form's CSRF token does not match (reload and try again).")
        response = _see_other("/?notice=logged-out")
        response.delete_cookie(auth.SESSION_COOKIE, httponly=True, samesite="strict")
        return response

    # -- machine endpoints

    async def metrics(self, request: Request) -> Response:
        body = await self.read(render_metrics, self.registry)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    async def healthz(self, request: Request) -> Response:
        try:
            body = await self.read(self._health)
        except KalamError as exc:
            return JSONResponse({"status": "error", "error": str(exc)}, status_code=503)
        return JSONResponse(body)

    def _health(self) -> dict[str, Any]:
        pid = runtime_pid(self.store.path)
        counts = self.store.counts()
        by_status, _ = queries.totals(counts)
        written = last_write_time(self.store)
        now = datetime.now(UTC).timestamp()
        return {
            "status": "ok",
            "store": str(self.store.path),
            "runtime": {"running": pid is not None, "pid": pid if pid and pid > 0 else None,
                        "in_process": self.manager is not None},
            "last_write_age_s": None if written is None else round(max(0.0, now - written), 3),
            "jobs": {s.value: n for s, n in by_status.items()},
            "read_only": self.token is None,
        }


def _is_job_id(text: str) -> bool:
    try:
        JobId.parse(text)
    except InvalidParams:
        return False
    return True


def _job_param(request: Request, name: str) -> str | None:
    value = request.query_params.get(name)
    return value if value and _is_job_id(value) else None


def _target(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def _safe_next(value: str | None) -> str:
    """Only a path on this site (never ``//host`` or a scheme): no open redirect."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def _with_notice(url: str, notice: str) -> str:
    return url + ("&" if "?" in url else "?") + f"notice={notice}"


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


async def _form(request: Request) -> dict[str, str]:
    """A url-encoded form body (the only kind these forms send), first value of each field."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return {}
    fields = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {k: v[0] for k, v in fields.items()}


def create_app(
    source: str | os.PathLike[str] | None,
    *,
    token: str | None = None,
    log_file: str | os.PathLike[str] | None = None,
    manager: JobManager | None = None,
) -> Starlette:
    """The web app (ASGI, starlette) over a job store: pages, actions, ``/metrics``,
    ``/healthz``.

    Args:
        source: a data directory (holding ``jobs/``) or a job store folder. It reads through
            :class:`JobStore`, so a runtime may run beside it in another process. None when
            ``manager`` is given.
        token: the operator's token. Without one the app is read-only (actions get 403); with
            one, a request acts when it sends ``Authorization: Bearer <token>`` or the
            session cookie of the login form, and passes the CSRF check.
        log_file: the runtime's job log; a job's page shows its lines (those holding
            ``[<job_id>]``).
        manager: the runtime this app is served beside, in the same trio run: its store is
            read, its ``cancel_job`` cancels, and ``/metrics`` adds its statistics.

    Raises:
        WebConfigError: no job store at ``source``, an empty token, or ``source`` naming
            another store than ``manager``'s.
    """
    if token is not None and not token.strip():
        raise WebConfigError("the token must not be empty")
    if manager is not None:
        store = manager.store
        own_store = False
        if source is not None and resolve_store_path(source) != store.path:
            raise WebConfigError(f"{source} is not the store of the manager ({store.path})")
    else:
        if source is None:
            raise WebConfigError("give the web a data directory or a job store path")
        store = JobStore(resolve_store_path(source))
        own_store = True
    web = _Web(store, token=token, log_file=None if log_file is None else Path(log_file),
               manager=manager)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if own_store:
                store.close()

    app = Starlette(routes=web.routes(), lifespan=lifespan,
                    middleware=[Middleware(_SecurityHeaders)])
    app.state.store = store
    return app
