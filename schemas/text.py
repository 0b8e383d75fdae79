"""Values as text wherever a person reads them: no object key or error message reaches a terminal, a
Markdown report or a spreadsheet as anything but text (a key is anyone's bytes: escapes, links, formulas)."""
from __future__ import annotations

import json
import re

# C0/C1 control characters (ESC starts terminal sequences: OSC sets the title or a hyperlink), DEL, and the
# bidirectional overrides that make text read differently from what it is.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_CONTROL_OR_NEWLINE = re.compile(_CONTROL.pattern[:-1] + "\n\t]")


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
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, default=str, ensure_ascii=False)
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value
