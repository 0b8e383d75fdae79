"""IAM token client: POST /v3/auth/tokens with a password and a project scope (reference 3.3).

The token comes back in the `X-Subject-Token` response header and is valid 24 h; we cache it until shortly
before `expires_at` and let the API client force one refresh when the service answers with an auth error.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import datetime

import httpx

from imgrec.schemas.errors import ApiError

REFRESH_MARGIN_SECONDS = 300


def token_request_body(domain: str, user: str, password: str, project_name: str | None = None,
                       project_id: str | None = None) -> dict:
    project = {"id": project_id} if project_id else {"name": project_name}
    return {"auth": {
        "identity": {"methods": ["password"],
                     "password": {"user": {"name": user, "password": password, "domain": {"name": domain}}}},
        "scope": {"project": project},
    }}


def parse_expires_at(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass
class PasswordCredentials:
    domain: str
    user: str
    password: str = field(repr=False)
    project_name: str | None = None
    project_id: str | None = None


class TokenProvider:
    """Thread-unsafe but asyncio-safe: concurrent callers share one in-flight token request."""

    def __init__(self, iam_base_url: str, credentials: PasswordCredentials, http: httpx.AsyncClient | None = None,
                 timeout: float = 30.0):
        self._url = iam_base_url.rstrip("/") + "/v3/auth/tokens"
        self._credentials = credentials
        self._http = http
        self._timeout = timeout
        self._token: str | None = None
        self._expires_at = 0.0
        self.project_id: str | None = credentials.project_id
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:  # never show the token or password
        return f"TokenProvider({self._url!r}, user={self._credentials.user!r})"

    async def token(self, force_refresh: bool = False) -> str:
        async with self._lock:
            if force_refresh or not self._token or time.time() > self._expires_at - REFRESH_MARGIN_SECONDS:
                await self._fetch()
            assert self._token
            return self._token

    async def _fetch(self) -> None:
        c = self._credentials
        body = token_request_body(c.domain, c.user, c.password, c.project_name, c.project_id)
        client = self._http or httpx.AsyncClient(timeout=self._timeout)
        try:
            resp = await client.post(self._url, json=body, headers={"Content-Type": "application/json;charset=UTF-8"})
        except httpx.HTTPError as exc:
            raise ApiError(code="IAM.NETWORK", status=0, message=f"IAM unreachable: {type(exc).__name__}",
                           retryable=True) from None
        finally:
            if self._http is None:
                await client.aclose()
        if resp.status_code != 201 or "X-Subject-Token" not in resp.headers:
            raise ApiError(code="APIG.0301", status=resp.status_code or 401,
                           message="IAM refused the credentials", retryable=resp.status_code >= 500)
        self._token = resp.headers["X-Subject-Token"]
        info = resp.json().get("token", {})
        self._expires_at = parse_expires_at(info["expires_at"]) if "expires_at" in info else time.time() + 3600
        self.project_id = self.project_id or info.get("project", {}).get("id")
