"""SDK-HMAC-SHA256: the AK/SK request signature of Huawei Cloud's SDKs, and its verifier for the service.

The signing steps follow huaweicloudsdkcore's `Signer` exactly (see shared/reference/official-sdk-wire.md):
canonical URI always ends in '/', only the SDK's own headers are signed, the raw SK is the HMAC key.
The verifier accepts both the SDK's `Access=` form and the reference's `Credential=AK/...` form.
"""
from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Mapping
from urllib.parse import quote, unquote

ALGORITHM = "SDK-HMAC-SHA256"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
HEADER_DATE = "X-Sdk-Date"
HEADER_CONTENT = "X-Sdk-Content-Sha256"
UNSIGNED = "UNSIGNED-PAYLOAD"


def _quote(value: str) -> str:
    return quote(value, safe="~")


def canonical_uri(path: str) -> str:
    segments = unquote(path).split("/")
    uri = "/".join(_quote(s) for s in segments)
    return uri if uri.endswith("/") else uri + "/"


def canonical_query(query: Mapping[str, object] | list[tuple[str, str]] | None) -> str:
    if not query:
        return ""
    items = query.items() if isinstance(query, Mapping) else query
    out: list[str] = []
    for key, value in sorted(items):  # the SDK sorts the raw pairs, then quotes
        values = sorted(value) if isinstance(value, list) else [value]
        for v in values:
            text = str(v).lower() if isinstance(v, bool) else str(v)
            out.append(f"{_quote(str(key))}={_quote(text)}")
    return "&".join(out)


def signed_header_names(headers: Mapping[str, str]) -> list[str]:
    return sorted(k.lower() for k in headers if "_" not in k)


def payload_hash(headers: Mapping[str, str], body: bytes) -> str:
    """The SDK signs non-JSON bodies (multipart uploads) as UNSIGNED-PAYLOAD via X-Sdk-Content-Sha256."""
    declared = {k.lower(): v for k, v in headers.items()}.get(HEADER_CONTENT.lower())
    if body and declared:
        return declared
    return hashlib.sha256(body).hexdigest()


def canonical_request(method: str, path: str, query, headers: Mapping[str, str], signed: list[str],
                      body: bytes) -> str:
    lowered = {k.lower(): v for k, v in headers.items()}
    canon_headers = "".join(f"{name}:{str(lowered.get(name, '')).strip()}\n" for name in signed)
    return "\n".join([method.upper(), canonical_uri(path), canonical_query(query), canon_headers,
                      ";".join(signed), payload_hash(headers, body)])


def string_to_sign(canon_request: str, sdk_date: str) -> str:
    return f"{ALGORITHM}\n{sdk_date}\n{hashlib.sha256(canon_request.encode()).hexdigest()}"


def signature(secret_key: str, to_sign: str) -> str:
    return hmac.new(secret_key.encode(), to_sign.encode(), hashlib.sha256).hexdigest()


def sign(method: str, url_path: str, headers: dict[str, str], body: bytes, access_key: str, secret_key: str,
         query=None, now: datetime | None = None) -> dict[str, str]:
    """Return the headers with X-Sdk-Date and Authorization added. `headers` must already hold Host and every
    other header the request will carry that should be signed (Content-Type, User-Agent, X-Project-Id...)."""
    out = dict(headers)
    content_type = next((v for k, v in out.items() if k.lower() == "content-type"), "").lower()
    declared = any(k.lower() == HEADER_CONTENT.lower() for k in out)
    if content_type and not declared and not content_type.startswith(("application/json", "application/bson")):
        out[HEADER_CONTENT] = UNSIGNED  # as the SDK does for uploads; a caller may declare the hash instead
    if not any(k.lower() == "x-sdk-date" for k in out):
        out[HEADER_DATE] = (now or datetime.now(timezone.utc)).strftime(DATE_FORMAT)
    sdk_date = next(v for k, v in out.items() if k.lower() == "x-sdk-date")
    names = signed_header_names(out)
    canon = canonical_request(method, url_path, query, out, names, body)
    sig = signature(secret_key, string_to_sign(canon, sdk_date))
    out["Authorization"] = f"{ALGORITHM} Access={access_key}, SignedHeaders={';'.join(names)}, Signature={sig}"
    return out


# -------------------------------------------------------------------------------------------- verifying
class SignatureError(Exception):
    """Why a signature was refused. The text names no secret and no expected signature."""


@dataclass(frozen=True)
class ParsedAuthorization:
    access_key: str
    signed_headers: list[str]
    signature: str


_AUTH_RE = re.compile(r"^\s*SDK-HMAC-SHA256\s+(?P<rest>.+)$")


def parse_authorization(value: str) -> ParsedAuthorization:
    match = _AUTH_RE.match(value or "")
    if not match:
        raise SignatureError("unsupported authorization scheme")
    fields: dict[str, str] = {}
    for part in match.group("rest").split(","):
        key, sep, val = part.strip().partition("=")
        if sep:
            fields[key.strip()] = val.strip()
    access = fields.get("Access") or fields.get("Credential", "").split("/")[0]
    signed = [h for h in fields.get("SignedHeaders", "").split(";") if h]
    sig = fields.get("Signature", "")
    if not access or not signed or not re.fullmatch(r"[0-9a-f]{64}", sig):
        raise SignatureError("malformed authorization header")
    return ParsedAuthorization(access, signed, sig)


def verify(method: str, path: str, query, headers: Mapping[str, str], body: bytes, secret_key: str,
           auth: ParsedAuthorization, max_skew_seconds: int = 900, now: datetime | None = None) -> None:
    """Raise SignatureError unless the request carries a valid, fresh signature by `secret_key`."""
    check_headers(headers, auth, max_skew_seconds, now)
    lowered = {k.lower(): v for k, v in headers.items()}
    declared = lowered.get(HEADER_CONTENT.lower())
    if declared is not None and declared != UNSIGNED and declared != hashlib.sha256(body).hexdigest():
        raise SignatureError("payload hash mismatch")
    canon = canonical_request(method, path, query, lowered, auth.signed_headers, body)
    expected = signature(secret_key, string_to_sign(canon, lowered["x-sdk-date"]))
    if not hmac.compare_digest(expected.encode(), auth.signature.encode("utf-8", "replace")):
        raise SignatureError("signature mismatch")


def check_headers(headers: Mapping[str, str], auth: ParsedAuthorization, max_skew_seconds: int = 900,
                  now: datetime | None = None) -> None:
    """What can be checked before the body arrives (no key involved, so no timing tells whether the access
    key exists): the date and host signed, every signed header present, the date fresh, and an unsigned
    body allowed only for a multipart upload."""
    lowered = {k.lower(): v for k, v in headers.items()}
    # The date and host must be covered by the signature, or a captured request could be replayed with a
    # new date or sent to another host.
    for required in ("x-sdk-date", "host"):
        if required not in auth.signed_headers:
            raise SignatureError(f"{required} is not signed")
    for name in auth.signed_headers:
        if name not in lowered:
            raise SignatureError(f"signed header {name} is missing")
    try:
        stamp = datetime.strptime(lowered["x-sdk-date"], DATE_FORMAT).replace(tzinfo=timezone.utc)
    except ValueError:
        raise SignatureError("malformed X-Sdk-Date") from None
    skew = abs(((now or datetime.now(timezone.utc)) - stamp).total_seconds())
    if skew > max_skew_seconds:
        raise SignatureError("X-Sdk-Date is outside the allowed clock skew")
    declared = lowered.get(HEADER_CONTENT.lower())
    if declared is not None:
        if HEADER_CONTENT.lower() not in auth.signed_headers:
            raise SignatureError("X-Sdk-Content-Sha256 is not signed")
        # Only a multipart upload may leave its body unsigned (the SDK's UNSIGNED-PAYLOAD); every other body
        # the service would parse as JSON, so it must be covered. Media types compare case-insensitively.
        is_multipart = lowered.get("content-type", "").strip().lower().startswith("multipart/form-data")
        if declared == UNSIGNED and not is_multipart:
            raise SignatureError("only a multipart upload may be sent as UNSIGNED-PAYLOAD")
