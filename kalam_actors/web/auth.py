"""Who may act: the operator's token, a session cookie derived from it, and the CSRF check.

- Without a token configured the web is read-only: every action is refused (403).
- With one, a request may act when it carries ``Authorization: Bearer <token>`` (scripts), or
  the session cookie the login form sets (browsers). The cookie holds an HMAC of the token,
  never the token itself.
- A browser's action must also pass the CSRF check: the form's ``csrf`` field must equal the
  ``kalam_csrf`` cookie (a random value set with the first page; another site can neither read
  it nor set it), and an ``Origin`` header, when sent, must be this site's. Bearer requests are
  not at risk (a browser never adds that header on its own) and skip it.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from typing import Final

from starlette.requests import Request

__all__ = [
    "CSRF_COOKIE",
    "SESSION_COOKIE",
    "Refusal",
    "csrf_token",
    "equal",
    "is_loopback",
    "refusal",
    "session_value",
]

SESSION_COOKIE: Final = "kalam_session"
CSRF_COOKIE: Final = "kalam_csrf"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost: it may resolve anywhere


def session_value(token: str) -> str:
    """What the session cookie holds for ``token``: an HMAC of it, so the cookie does not
    reveal the token (which also works as a bearer token)."""
    return hmac.new(token.encode(), b"kalam-actors web session", hashlib.sha256).hexdigest()


def csrf_token(request: Request) -> tuple[str, bool]:
    """The request's CSRF token, and whether it is new (to be set as a cookie)."""
    known = request.cookies.get(CSRF_COOKIE)
    if known and 20 <= len(known) <= 100:
        return known, False
    return secrets.token_urlsafe(32), True


def equal(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and hmac.compare_digest(a.encode(), b.encode())


def bearer(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def logged_in(request: Request, token: str | None) -> bool:
    """True when the request carries the token (bearer) or the session cookie."""
    if token is None:
        return False
    return equal(bearer(request), token) or equal(
        request.cookies.get(SESSION_COOKIE), session_value(token))


class Refusal(Exception):
    """Raised (and shown as a 403 page) when a request may not act; ``str()`` says why."""


def same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")


def refusal(request: Request, token: str | None, form_csrf: str | None) -> Refusal | None:
    """Why this request may not act, or None when it may."""
    if token is None:
        return Refusal("this web view is read-only: start it with a token "
                       "(kalam-actors web --token T) to allow actions")
    if equal(bearer(request), token):
        return None
    if not equal(request.cookies.get(SESSION_COOKIE), session_value(token)):
        return Refusal("log in with the operator's token to act on jobs")
    if not same_origin(request):
        return Refusal("the request came from another site (Origin header)")
    if not equal(form_csrf, request.cookies.get(CSRF_COOKIE)):
        return Refusal("the form's CSRF token does not match (reload the page and try again)")
    return None
