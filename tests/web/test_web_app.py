"""The pages and actions through starlette's TestClient: filters, escaping, the token, the
CSRF check, and the app's refusals."""

from __future__ import annotations

import html
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from web_support import TOKEN, XSS, Filled

from kalam_actors import JobId, JobStatus, JobStore, JobType
from kalam_actors.web import WebConfigError, check_bind, create_app, serve

ROW_ID = re.compile(r'<tr data-job-id="([A-Z]{2}-[0-9A-Z]{26})"')


def row_ids(text: str) -> list[str]:
    return ROW_ID.findall(text)


@pytest.fixture
def client(filled: Filled) -> Iterator[TestClient]:
    with TestClient(create_app(filled.root, log_file=filled.log)) as c:
        yield c


def _client(path: Path, token: str | None = TOKEN) -> TestClient:
    # follow_redirects off: the tests look at each 303 themselves.
    return TestClient(create_app(path, token=token), follow_redirects=False)


def _login(c: TestClient) -> str:
    """Log in through the form; returns the CSRF token the forms carry."""
    page = c.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None
    r = c.post("/login", data={"token": TOKEN, "csrf": csrf.group(1), "next": "/jobs"})
    assert r.status_code == 303 and r.headers["location"] == "/jobs?notice=logged-in"
    return csrf.group(1)


def _status(path: Path, job_id: str) -> JobStatus | None:
    with JobStore(path) as store:
        job = store.get_job(job_id)
    return None if job is None else job.status


# ---------------------------------------------------------------- pages


def test_jobs_page_lists_every_job_newest_first(client: TestClient, filled: Filled) -> None:
    r = client.get("/jobs")
    assert r.status_code == 200
    assert row_ids(r.text) == sorted(filled.ids.values(), key=lambda i: i[3:], reverse=True)


@pytest.mark.parametrize(("query", "wanted"), [
    ("status=Completed", {"flush0", "flush1", "flush2", "xss"}),
    ("status=failed", {"failed"}),
    ("type=Backup", {"new0", "new1", "cancelled"}),
    ("type=Backup&status=New", {"new0", "new1"}),
    ("key=FL:t1", {"flush1"}),
    ("q=DISK+ON", {"failed"}),
    ("q=rows&type=Flush", {"flush0", "flush1", "flush2"}),
])
def test_jobs_page_filters(client: TestClient, filled: Filled, query: str,
                           wanted: set[str]) -> None:
    r = client.get(f"/jobs?{query}")
    assert r.status_code == 200
    assert set(row_ids(r.text)) == {filled.ids[name] for name in wanted}


def test_id_prefix_filter(client: TestClient, filled: Filled) -> None:
    r = client.get("/jobs", params={"id": filled.ids["failed"][:3].lower()})
    assert set(row_ids(r.text)) == {filled.ids[n] for n in ("flush0", "flush1", "flush2",
                                                            "failed")}
    r = client.get("/jobs", params={"id": filled.ids["failed"]})
    assert row_ids(r.text) == [filled.ids["failed"]]


def test_jobs_page_pages_with_links(client: TestClient, filled: Filled) -> None:
    everything = row_ids(client.get("/jobs").text)
    seen: list[str] = []
    url = "/jobs?limit=4"
    while url:
        r = client.get(url)
        seen += row_ids(r.text)
        older = re.search(r'<a href="([^"]+)" rel="next">Older', r.text)
        url = html.unescape(older.group(1)) if older else ""
    assert seen == everything


def test_bad_filters_say_what_is_wrong(client: TestClient) -> None:
    r = client.get("/jobs?status=Sleeping")
    assert r.status_code == 400 and "unknown job status &#39;Sleeping&#39;" in r.text
    r = client.get("/jobs?type=Nap")
    assert r.status_code == 400 and "unknown job type" in r.text
    r = client.get("/jobs?before=nope")
    assert r.status_code == 400
    r = client.get("/jobs?limit=100000")
    assert r.status_code == 400 and "limit must be" in r.text


def test_job_page_shows_the_whole_job(client: TestClient, filled: Filled) -> None:
    job_id = filled.ids["failed"]
    r = client.get(f"/jobs/{job_id}")
    assert r.status_code == 200
    text = r.text
    assert "disk on fire" in text and "Traceback: OSError: disk" in text
    assert "Failed" in text and '&#34;fail&#34;: true' in text
    # The log lines of this job, and only of this job.
    log = re.search(r'<pre class="log">(.*?)</pre>', text, re.S)
    assert log is not None
    lines = [line for line in log.group(1).splitlines() if line]
    assert lines and all(f"[{job_id}]" in line for line in lines)


def test_job_page_progress_and_attempts(client: TestClient, filled: Filled) -> None:
    r = client.get(f"/jobs/{filled.ids['flush0']}")
    assert '<progress max="2" value="2"' in r.text
    assert "2/2 (100 %)" in r.text and "all written" in r.text
    assert "retries 0 of 3 allowed" in r.text


def test_every_job_text_is_escaped(client: TestClient, filled: Filled) -> None:
    for url in ("/jobs", f"/jobs/{filled.ids['xss']}", "/jobs?q=%3Cscript%3E"):
        text = client.get(url).text
        assert "<script>window" not in text and "<b>bold" not in text
        assert "&lt;script&gt;window.__xss = 1&lt;/script&gt;" in text
    # What the user typed into the filter comes back escaped too.
    r = client.get("/jobs", params={"key": '"><script>alert(1)</script>'})
    assert "<script>alert(1)" not in r.text
    assert html.escape(XSS, quote=True).replace("&#x27;", "&#39;")[:20] in client.get(
        f"/jobs/{filled.ids['xss']}").text


def test_missing_and_malformed_job_ids_are_404(client: TestClient) -> None:
    assert client.get(f"/jobs/{JobId.new(JobType.FLUSH)}").status_code == 404
    r = client.get("/jobs/<script>")
    assert r.status_code == 404 and "<script>" not in r.text


def test_overview_counts_and_chart(client: TestClient, filled: Filled) -> None:
    r = client.get("/")
    assert r.status_code == 200
    assert "<svg" in r.text and "5 jobs done (Completed or Skipped) and 1 Failed" in r.text
    assert 'href="/jobs?type=Flush&amp;status=Completed">3</a>' in r.text
    assert "No job is running." in r.text


def test_pages_carry_security_headers(client: TestClient) -> None:
    r = client.get("/jobs")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["x-content-type-options"] == "nosniff"


def test_static_files_are_served_from_the_package(client: TestClient) -> None:
    r = client.get("/static/live.js")
    assert r.status_code == 200 and "data-live" in r.text
    assert client.get("/static/style.css").status_code == 200


# ---------------------------------------------------------------- actions


def test_without_a_token_the_web_is_read_only(small: tuple[Path, dict[str, JobId]]) -> None:
    path, ids = small
    with _client(path, token=None) as c:
        page = c.get(f"/jobs/{ids['new']}")
        assert "Read-only" in page.text and 'id="cancel"' not in page.text
        for action in ("cancel", "retry", "delete"):
            r = c.post(f"/jobs/{ids['new']}/{action}", data={"csrf": "x"},
                       headers={"Authorization": f"Bearer {TOKEN}"})
            assert r.status_code == 403 and "read-only" in r.text
        assert c.post("/login", data={"token": TOKEN}).status_code == 403
    assert _status(path, ids["new"]) is JobStatus.NEW


def test_an_action_needs_the_token(small: tuple[Path, dict[str, JobId]]) -> None:
    path, ids = small
    with _client(path) as c:
        page = c.get(f"/jobs/{ids['new']}")
        csrf = c.cookies["kalam_csrf"]
        assert 'id="cancel"' in page.text and "Log in</a> with the token" in page.text
        r = c.post(f"/jobs/{ids['new']}/cancel", data={"csrf": csrf})
        assert r.status_code == 403 and "log in" in r.text
        r = c.post(f"/jobs/{ids['new']}/cancel", headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 403
        c.cookies.set("kalam_session", "forged")
        assert c.post(f"/jobs/{ids['new']}/cancel", data={"csrf": csrf}).status_code == 403
    assert _status(path, ids["new"]) is JobStatus.NEW


def test_a_wrong_token_does_not_log_in(small: tuple[Path, dict[str, JobId]]) -> None:
    path, _ = small
    with _client(path) as c:
        c.get("/login")
        r = c.post("/login", data={"token": "guess", "csrf": c.cookies["kalam_csrf"]})
        assert r.status_code == 403 and "That is not the token." in r.text
        assert "kalam_session" not in c.cookies


def test_logged_in_actions_need_the_csrf_token(small: tuple[Path, dict[str, JobId]]) -> None:
    path, ids = small
    with _client(path) as c:
        csrf = _login(c)
        assert c.post(f"/jobs/{ids['new']}/cancel").status_code == 403
        r = c.post(f"/jobs/{ids['new']}/cancel", data={"csrf": "not-the-cookie-value"})
        assert r.status_code == 403 and "CSRF" in r.text
        r = c.post(f"/jobs/{ids['new']}/cancel", data={"csrf": csrf},
                   headers={"Origin": "https://evil.example"})
        assert r.status_code == 403 and "another site" in r.text
        assert _status(path, ids["new"]) is JobStatus.NEW
        r = c.post(f"/jobs/{ids['new']}/cancel", data={"csrf": csrf},
                   headers={"Origin": "http://testserver"})
        assert r.status_code == 303 and r.headers["location"] == \
            f"/jobs/{ids['new']}?notice=cancelled"
        page = c.get(r.headers["location"])
        assert "The job was cancelled." in page.text
    assert _status(path, ids["new"]) is JobStatus.CANCELLED


def test_retry_and_delete_with_a_bearer_token(small: tuple[Path, dict[str, JobId]]) -> None:
    path, ids = small
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    with _client(path) as c:
        r = c.post(f"/jobs/{ids['done']}/retry", headers=bearer)
        assert r.status_code == 303
        new_id = re.match(r"/jobs/([A-Z]{2}-\w{26})\?notice=retried&from=", r.headers["location"])
        assert new_id is not None
        r = c.post(f"/jobs/{ids['done']}/delete", headers=bearer)
        assert r.status_code == 303 and r.headers["location"].startswith("/jobs?notice=deleted")
        assert f"Deleted job <code>{ids['done']}</code>" in c.get(r.headers["location"]).text
        # What the store says cannot be done is a 409 saying why.
        r = c.post(f"/jobs/{ids['other']}/delete", headers=bearer)
        assert r.status_code == 409 and "cannot delete an active job" in r.text
        r = c.post(f"/jobs/{new_id.group(1)}/retry", headers=bearer)
        assert r.status_code == 409
        assert c.post(f"/jobs/{ids['done']}/cancel", headers=bearer).status_code == 404
    with JobStore(path) as store:
        assert store.get_job(ids["done"]) is None
        retried = store.get_job(new_id.group(1))
        assert retried is not None and retried.status is JobStatus.NEW
        assert retried.params == {"n": 3} and retried.idempotency_key == "K3"
        assert store.get_job(ids["other"]) is not None


def test_login_redirects_only_within_the_site(small: tuple[Path, dict[str, JobId]]) -> None:
    path, _ = small
    with _client(path) as c:
        c.get("/login")
        for evil in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
            r = c.post("/login", data={"token": TOKEN, "csrf": c.cookies["kalam_csrf"],
                                       "next": evil})
            assert r.headers["location"] == "/?notice=logged-in"


def test_logout_ends_the_session(small: tuple[Path, dict[str, JobId]]) -> None:
    path, ids = small
    with _client(path) as c:
        csrf = _login(c)
        assert c.post("/logout", data={"csrf": csrf}).status_code == 303
        r = c.post(f"/jobs/{ids['new']}/cancel", data={"csrf": csrf})
        assert r.status_code == 403


# ---------------------------------------------------------------- refusals at start


def test_no_store_at_the_path_is_a_clear_error_and_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(WebConfigError, match="no job store at"):
        create_app(tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists()
    with pytest.raises(WebConfigError, match="no job store at"):
        serve(tmp_path / "nothing")


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "::", "example.org"])
def test_a_non_loopback_host_needs_a_token(host: str, filled: Filled) -> None:
    with pytest.raises(WebConfigError, match="without a token"):
        check_bind(host, None)
    with pytest.raises(WebConfigError, match="without a token"):
        serve(filled.root, host=host)
    check_bind(host, TOKEN)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_loopback_hosts_need_no_token(host: str) -> None:
    check_bind(host, None)


def test_an_empty_token_is_refused(filled: Filled) -> None:
    with pytest.raises(WebConfigError, match="empty"):
        create_app(filled.root, token=" ")
    with pytest.raises(WebConfigError, match="empty"):
        check_bind("127.0.0.1", "")


def test_the_core_does_not_import_the_web() -> None:
    """The web is an optional extra: importing kalam_actors must not need it."""
    code = ("import sys, kalam_actors, kalam_actors.cli; "
            "assert not {'kalam_actors.web', 'starlette', 'hypercorn', 'jinja2'} "
            "& set(sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_cli_refuses_a_non_loopback_address_without_a_token(filled: Filled) -> None:
    from kalam_actors.cli import main

    # The data directory holds the filled store in jobs/.
    code = main(["web", "--data", str(filled.root), "--host", "0.0.0.0"],
                configure_logging=False)
    assert code == 2
