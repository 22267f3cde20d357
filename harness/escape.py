"""How every output embeds text it did not write: model and variant names, serials, device
props, error messages. One rule per format, used by every writer (report files, compare.md,
JUnit XML, plots), so no writer keeps a copy of its own.

Names can come from anyone: a model file called `<img src=x onerror=alert(1)>.tflite` or
`=HYPERLINK("x","y").tflite` must reach every output as plain text.

It lives outside `harness.report` because importing that package loads pandas and matplotlib,
which `bench compare` (compare.md, JUnit) does not otherwise need.
"""
from __future__ import annotations

import html
import re

# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection, OWASP).
CSV_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# A plain number cannot be a formula, even with a sign: "-0.28" stays a number in a spreadsheet.
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")

# Markdown: `<` opens raw HTML or an autolink only before a letter, `/`, `!` or `?` (as in the
# HTML tokenizer); `&` is an entity only in `&name;` / `&#123;`. Escaping just those keeps
# ordinary text ("12 % < 20 %", "offline & gone") readable in the raw file.
_MD_TAG_OPEN = re.compile(r"<(?=[A-Za-z/!?])")
_MD_ENTITY = re.compile(r"&(?=#?[A-Za-z0-9]+;)")
# Backslash first, so an escape added here can never be undone by one from the input;
# `[`/`]` would start a link or an image, a backtick a code span that shows entities raw.
_MD_BACKSLASH_ESCAPED = ("\\", "|", "[", "]", "`")
# XML 1.0 has no way to write these characters at all, escaped or not.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def csv_cell(value):
    """A cell for results.csv: text a spreadsheet would run as a formula gets a leading `'`,
    which spreadsheets show as text; numbers (also negative ones) are left alone."""
    if not isinstance(value, str) or not value.startswith(CSV_FORMULA_STARTS):
        return value
    if _PLAIN_NUMBER.fullmatch(value):
        return value
    return "'" + value


def md_text(value) -> str:
    """Text for a Markdown table cell or line: shown literally, never as HTML, a link, an image
    or a cell boundary; one line."""
    text = str(value)
    for char in _MD_BACKSLASH_ESCAPED:
        text = text.replace(char, "\\" + char)
    text = _MD_ENTITY.sub("&amp;", text)
    text = _MD_TAG_OPEN.sub("&lt;", text)
    return text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")


def md_code(value) -> str:
    """Text as a Markdown code span on a line of its own (not in a table, where `|` would still
    split the cell): the fence is longer than any run of backticks in the text, so the text
    cannot close it."""
    text = str(value).replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def html_text(value) -> str:
    """Text for an HTML element or a quoted attribute value."""
    return html.escape(str(value), quote=True)


def xml_text(value) -> str:
    """Text for an XML attribute or element: ElementTree escapes `<`, `&` and quotes, but writes
    control characters (ANSI colour codes in a device's output) as they are, which makes the
    file unreadable for every XML parser; they become U+FFFD."""
    return _XML_ILLEGAL.sub("\ufffd", str(value))


def plot_text(value) -> str:
    """A label for matplotlib: a `$` pair would be parsed as mathtext (and a bad one fails the
    whole report)."""
    return str(value).replace("$", r"\$")
