"""Log hygiene for every imgrec process: no secret reaches a log line, whoever logs it, and no control
character (an object key's escape sequence) reaches a terminal through one.

`install()` wraps the log-record factory, so redaction applies to our loggers, to libraries' (httpx logs
every request URL at INFO) and to Prefect's handlers alike: URL query strings (presigned OBS/S3 URLs carry
`X-Amz-Credential` and `X-Amz-Signature`, valid for an hour), AK/SK signatures, IAM tokens and anything
that looks like `password=`/`secret=` are replaced by `<redacted>` before any handler sees the message.
"""
from __future__ import annotations

import logging
import re

from imgrec.schemas.text import printable

REDACTED = "<redacted>"
_PATTERNS = [
    (re.compile(r"(\bhttps?://[^\s?#\"'<>]+)\?[^\s#\"'<>]*", re.I), rf"\1?{REDACTED}"),  # URL query strings
    (re.compile(r"(Signature|Credential|Access|X-Amz-[A-Za-z-]+|AWSAccessKeyId)=[^\s,&\"']+", re.I),
     rf"\1={REDACTED}"),
    (re.compile(r"(X-Auth-Token|X-Subject-Token|Authorization)(\"?\s*[:=]\s*\"?)[^\s,\"']+[^\"'\n]*", re.I),
     rf"\1\2{REDACTED}"),
    (re.compile(r"\bIMGREC\.[A-Za-z0-9_\-.]{16,}"), REDACTED),  # this service's own tokens
    (re.compile(r"(\b[a-z][a-z0-9+.\-]*://[^\s/:@\"']*:)[^\s/@\"']+@", re.I), rf"\1{REDACTED}@"),  # user:password@
    (re.compile(r"(\b(?:password|passwd|secret|secret_key|sk|token)[\"']?\s*[:=]\s*[\"']?)[^\s,\"'&}]+", re.I),
     rf"\1{REDACTED}"),
]
_installed = False


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def install() -> None:
    """Once per process: redact every record as it is made; keep httpx's per-request lines out of INFO."""
    global _installed
    if _installed:
        return
    _installed = True
    make_record = logging.getLogRecordFactory()

    def redacting_record(*args, **kwargs) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed format string: leave it to logging's own error path
            return record
        cleaned = printable(redact(message), newlines=True)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return record

    logging.setLogRecordFactory(redacting_record)
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
