"""Text hygiene for every imgrec process: no secret reaches a log line, whoever logs it, and no value (an
object key, an error message) reaches a terminal, a report or a spreadsheet as anything but text.

`install()` wraps the log-record factory, so redaction applies to our loggers, to libraries' (httpx logs
every request URL at INFO) and to Prefect's handlers alike: URL query strings (presigned OBS/S3 URLs carry
`X-Amz-Credential` and `X-Amz-Signature`, valid for an hour), AK/SK signatures, IAM tokens and anything
that looks like `password=`/`secret=` are replaced by `<redacted>` before any handler sees the message.
"""
from __future__ import annotations

import logging
import re

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
# C0/C1 control characters (ESC starts terminal sequences: OSC sets the title or a hyperlink), DEL, and the
# bidirectional overrides that make text read differently from what it is.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_CONTROL_OR_NEWLINE = re.compile(_CONTROL.pattern[:-1] + "\n\t]")
_installed = False


def printable(text: object, newlines: bool = False) -> str:
    """`text` with control characters shown as escapes (ESC -> \\x1b): safe to print on a terminal.
    `newlines`: keep line breaks and tabs (a log message); otherwise they are escaped too (a table cell)."""
    pattern = _CONTROL if newlines else _CONTROL_OR_NEWLINE
    return pattern.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(text))


def markdown_cell(text: object) -> str:
    """A value inside a Markdown table cell: printable on one line, and literal (no link, image, HTML,
    code span or column break can be made from it)."""
    escaped = printable(text).replace("\\", "\\\\")
    for char in "`[]|":  # code spans, links and images, column breaks; emphasis is harmless and stays
        escaped = escaped.replace(char, "\\" + char)
    return escaped.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> object:
    """A value for CSV read by people in spreadsheets: a text cell that a spreadsheet would run as a formula
    (starting with = + - @, a tab or a carriage return) gets a leading apostrophe (OWASP's advice); lists are
    written as JSON lists; numbers, dates and other text stay as they are."""
    import json

    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, default=str, ensure_ascii=False)
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


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
