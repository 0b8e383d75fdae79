"""Who may call the service: AK/SK signatures, or IAM-style tokens issued by POST /v3/auth/tokens.

Tokens are stateless: base64url(JSON claims) + "." + HMAC-SHA256 over it with the service's token secret,
so any worker process verifies any token. The claims carry the project the token is scoped to and a keyed
digest of the user's password and project as configured when it was issued: every use checks that digest
against the configuration now, so changing a user's password or project revokes that user's tokens (on the
next start or reload of the settings), and changing `token_secret` revokes every token.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Mapping

from imgrec.connectors import signer
from imgrec.schemas.errors import ApiError

TOKEN_PREFIX = "IMGREC."


@dataclass(frozen=True)
class Identity:
    kind: str  # "aksk" | "token"
    principal: str  # access key or user name, never a secret
    project_id: str


@dataclass(frozen=True)
class Precheck:
    """What the headers alone decided (see Authenticator.precheck)."""

    identity: Identity | None = None  # a token's caller, or None when auth is off
    parsed: signer.ParsedAuthorization | None = None  # an AK/SK signature still to verify against the body
    credential: object | None = None  # its access key's credential; None with `parsed`: an unknown key


FAILED_LOGINS = 10  # wrong passwords per minute from one address, and for one user from one address
FAILURE_WINDOW_S = 60.0
# Wrong passwords per minute across the whole service. Past it, an address that has failed in the last minute
# is refused before its password is checked: guessing one user's password from many addresses costs the
# attacker a fresh address per guess, while a user whose own address has not failed still signs in.
GLOBAL_FAILED_LOGINS = 100


class FailureWindow:
    """Recent failed logins per key, bounded in memory. A key is forgotten only once its failures are older
    than the window: while throttling it stays, however many other keys arrive. When every slot holds an
    active key, a new key cannot be tracked and `full` says so (the caller then refuses, failing closed)."""

    def __init__(self, limit: int = FAILED_LOGINS, window: float = FAILURE_WINDOW_S, keys: int = 100_000):
        self.limit, self.window, self.keys = limit, window, keys
        self._times: dict[str, list[float]] = {}

    def _recent(self, key: str, now: float) -> list[float]:
        times = [t for t in self._times.get(key, []) if now - t < self.window]
        if times:
            self._times[key] = times
        else:
            self._times.pop(key, None)
        return times

    def count(self, key: str) -> int:
        return len(self._recent(key, time.monotonic()))

    def throttled(self, key: str) -> bool:
        return self.count(key) >= self.limit

    @property
    def full(self) -> bool:
        return len(self._times) >= self.keys

    def add(self, key: str) -> bool:
        """Record a failure; False when it could not be tracked (every slot holds a key still active)."""
        now = time.monotonic()
        if key not in self._times and self.full:
            for old in [k for k, times in self._times.items() if now - times[-1] >= self.window]:
                del self._times[old]  # expired keys only: an active one is never evicted
            if self.full:
                return False
        self._times[key] = self._recent(key, now)[-self.limit:] + [now]
        return True


class LoginThrottle:
    """Who may try a password now. Three counters, none of which a stranger can turn against a user:
    per address (10 a minute), per (user, address) (10 a minute: another address of the same user is not
    affected), and a service-wide budget of failed logins (past it, only addresses without a recent
    failure are heard, so a distributed guesser needs a new address for every guess)."""

    def __init__(self, limit: int = FAILED_LOGINS, window: float = FAILURE_WINDOW_S,
                 global_limit: int = GLOBAL_FAILED_LOGINS, keys: int = 100_000):
        self.addresses = FailureWindow(limit, window, keys)
        self.pairs = FailureWindow(limit, window, keys)
        self.everyone = FailureWindow(global_limit, window, 1)

    def check_address(self, client: str) -> None:
        key = f"ip:{client}"
        if self.addresses.throttled(key) or (self.everyone.throttled("*") and (
                self.addresses.count(key) or self.addresses.full)):
            raise ApiError.of("APIG.0308", "too many failed logins: wait a minute")

    def check_user(self, client: str, user: str) -> None:
        if self.pairs.throttled(f"{user}@{client}"):
            raise ApiError.of("APIG.0308", "too many failed logins: wait a minute")

    def failed(self, client: str, user: str | None = None) -> None:
        self.everyone.add("*")
        self.addresses.add(f"ip:{client}")
        if user is not None:
            self.pairs.add(f"{user}@{client}")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Authenticator:
    def __init__(self, settings):
        auth = settings.auth
        self.enabled = auth.enabled
        secret = auth.token_secret.get_secret_value() if auth.token_secret else secrets.token_hex(32)
        self._token_key = secret.encode()
        self.token_ttl = auth.token_ttl_seconds
        self.max_skew = auth.max_clock_skew_seconds
        self._keys = {c.access_key: c for c in settings.credentials}
        self._users = {(u.domain, u.name): u for u in settings.users}
        self._dummy_secret = secrets.token_hex(20)  # signs for unknown access keys (constant timing)
        self.logins = LoginThrottle()

    # ------------------------------------------------------------------------------------------ tokens
    def issue_token(self, body: object, client: str = "") -> tuple[str, dict]:
        """Validate an IAM password-auth body; return (token, response body). Raise ApiError(401).
        Wrong passwords are throttled (429 APIG.0308) by `LoginThrottle`: passwords cannot be guessed at
        speed, and nobody can lock another user out."""
        self.logins.check_address(client)
        return self._issue_token(body, client)

    def _issue_token(self, body: object, client: str) -> tuple[str, dict]:
        try:
            identity = body["auth"]["identity"]  # type: ignore[index]
            if "password" not in identity.get("methods", []):
                raise KeyError("methods")
            user = identity["password"]["user"]
            domain = user["domain"]["name"] if "name" in user["domain"] else user["domain"]["id"]
            name, password = user["name"], user["password"]
            if not all(isinstance(v, str) for v in (domain, name, password)):
                raise TypeError("domain, name and password must be strings")
            scope = body["auth"].get("scope", {}).get("project", {})  # type: ignore[union-attr]
            if not isinstance(scope, dict):  # {"project": "x"}: a malformed body, not a server error
                raise TypeError("scope.project must be an object")
        except (KeyError, TypeError, AttributeError):
            raise ApiError(code="IAM.0001", status=400, message="The request body is invalid.",
                           retryable=False) from None
        self.logins.check_user(client, f"{domain}/{name}")
        known = self._users.get((domain, name))
        if known is None or not hmac.compare_digest(known.password.get_secret_value().encode(),
                                                     str(password).encode()):
            self.logins.failed(client, f"{domain}/{name}")
            raise ApiError(code="IAM.0004", status=401, message="The username or password is wrong.",
                           retryable=False)
        wanted_id, wanted_name = scope.get("id"), scope.get("name")
        if (wanted_id and wanted_id != known.project_id) or (wanted_name and wanted_name != known.project_name):
            raise ApiError(code="IAM.0031", status=401, message="The user has no access to the project.",
                           retryable=False)
        if not (wanted_id or wanted_name):
            raise ApiError(code="AIS.0026", status=400, retryable=False)  # a project-scoped token is required
        now = time.time()
        expires = now + self.token_ttl
        claims = {"u": name, "d": domain, "p": known.project_id, "v": self._credential_version(known),
                  "iat": int(now), "exp": int(expires), "n": secrets.token_hex(8)}
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        token = TOKEN_PREFIX + payload + "." + _b64(hmac.new(self._token_key, payload.encode(), hashlib.sha256).digest())
        iso = lambda t: datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"  # noqa: E731
        response = {"token": {
            "expires_at": iso(expires), "issued_at": iso(now), "methods": ["password"],
            "project": {"id": known.project_id, "name": known.project_name, "domain": {"name": domain}},
            "user": {"name": name, "domain": {"name": domain}},
            "catalog": [],
        }}
        return token, response

    def _verify_token(self, token: str) -> Identity:
        if not token.startswith(TOKEN_PREFIX) or token.count(".") != 2:
            raise ApiError.of("APIG.0301", "malformed token")
        payload, _, mac = token[len(TOKEN_PREFIX):].partition(".")
        expected = _b64(hmac.new(self._token_key, payload.encode(), hashlib.sha256).digest())
        # bytes, not str: compare_digest refuses non-ASCII strings with a TypeError (a 500), e.g. a MAC
        # ending in byte 0xff as the header arrives decoded as latin-1
        if not hmac.compare_digest(expected.encode(), mac.encode("utf-8", "replace")):
            raise ApiError.of("APIG.0301", "token signature invalid")
        try:
            claims = json.loads(_unb64(payload))
        except ValueError:
            raise ApiError.of("APIG.0301", "token payload invalid") from None
        if claims.get("exp", 0) < time.time():
            raise ApiError.of("APIG.0301", "token expired")
        user = self._users.get((claims.get("d"), claims.get("u")))
        if user is None:
            raise ApiError.of("APIG.0301", "token user no longer configured")
        if not hmac.compare_digest(str(claims.get("v", "")).encode(), self._credential_version(user).encode()):
            raise ApiError.of("APIG.0301", "token revoked: the user's password or project changed")
        return Identity("token", user.name, user.project_id)

    def _credential_version(self, user) -> str:
        """A keyed digest of what a token was issued against (password and project): a token stops working
        as soon as either changes, on every worker sharing the token secret. Reveals nothing of the password."""
        material = "\0".join((user.domain, user.name, user.password.get_secret_value(), user.project_id,
                               user.project_name))
        return _b64(hmac.new(self._token_key, b"credential\0" + material.encode(), hashlib.sha256).digest()[:16])

    # ------------------------------------------------------------------------------------------ requests
    def precheck(self, headers: Mapping[str, str]) -> Precheck:
        """Everything the headers alone decide, before a byte of the body is read: no credentials, a bad
        token, a malformed or stale signature -> APIG.0301 now, so such a client is never given the memory
        for a 12 MB body. An AK/SK request leaves with its parsed signature and credential (None: unknown)."""
        if not self.enabled:
            return Precheck()
        token = headers.get("x-auth-token")
        if token:
            return Precheck(identity=self._verify_token(token))
        authorization = headers.get("authorization")
        if not authorization:
            raise ApiError.of("APIG.0301", "no credentials")
        try:
            parsed = signer.parse_authorization(authorization)
            signer.check_headers(headers, parsed, self.max_skew)
        except signer.SignatureError as exc:
            raise ApiError.of("APIG.0301", str(exc)) from None
        return Precheck(parsed=parsed, credential=self._keys.get(parsed.access_key))

    def refuse_unknown_key(self, body_sha256: str) -> None:
        """An unknown access key is refused after the body was hashed (streamed, not kept) and a signature
        computed with a stand-in secret, like a known key's: the answer's timing does not tell them apart."""
        signer.signature(self._dummy_secret, body_sha256)
        raise ApiError.of("APIG.0301", "unknown access key")

    def authenticate(self, method: str, path: str, query: list[tuple[str, str]], headers: Mapping[str, str],
                     body: bytes, pre: Precheck | None = None) -> Identity | None:
        """Return the caller's identity, or raise ApiError (APIG.0301, 401). None when auth is off."""
        pre = pre if pre is not None else self.precheck(headers)
        if pre.parsed is None:
            return pre.identity
        if pre.credential is None:
            self.refuse_unknown_key(hashlib.sha256(body).hexdigest())
        credential = pre.credential
        try:
            signer.verify(method, path, query, headers, body, credential.secret_key.get_secret_value(), pre.parsed,
                          self.max_skew)
        except signer.SignatureError as exc:
            raise ApiError.of("APIG.0301", str(exc)) from None
        return Identity("aksk", credential.access_key, credential.project_id)

    @staticmethod
    def authorize_project(identity: Identity | None, path_project: str | None) -> None:
        """A credential or token works only on its own project's paths."""
        if identity is None or path_project is None:
            return
        if identity.project_id != path_project:
            raise ApiError.of("AIP.0003", "the project in the path does not belong to this credential")
