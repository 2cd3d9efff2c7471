"""Tokens of a Nextflow config: just enough Groovy lexing to check a config without running it (pure)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "0": "\0"}
# `$` followed by `{` or a name interpolates inside a double-quoted Groovy string; `\$` does not.
_INTERPOLATION = re.compile(r"(?<!\\)\$[{A-Za-z_]")
_PATTERNS = [
    ("space", re.compile(r"[ \t\f\r]+|\\\r?\n")),  # a backslash-newline continues the line
    ("nl", re.compile(r"\n")),
    ("comment", re.compile(r"//[^\n]*|/\*.*?\*/", re.DOTALL)),
    ("str", re.compile(r"'''.*?'''|\"\"\".*?(?<!\\)\"\"\"", re.DOTALL)),
    ("str", re.compile(r"'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\"")),
    ("num", re.compile(r"\d[\d_]*(?:\.\d[\d_]*)?(?:[eE][+-]?\d+)?(?![A-Za-z_\d])|\d[\d_]*[lLgGiIdDfF]\b")),
    ("name", re.compile(r"[A-Za-z_][A-Za-z0-9_]*")),
    # Reached only when the string and comment patterns above failed: an opening without its end.
    ("unterminated", re.compile(r"/\*|'|\"")),
    ("op", re.compile(r"->|.")),
]


class ConfigSyntaxError(ValueError):
    """Text that cannot be split into tokens (an unterminated string or comment)."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


@dataclass(frozen=True)
class Sized:
    """A memory or duration literal such as `8.GB` or `2.h`."""

    amount: int | float
    unit: str


@dataclass(frozen=True)
class Token:
    """One token: kind is name, num, str, op, nl or eof; `text` is a string's value without quotes."""

    kind: str
    text: str
    line: int
    interpolated: bool = False

    def is_op(self, *ops: str) -> bool:
        """True when this is one of the operator tokens `ops`."""
        return self.kind == "op" and self.text in ops

    def number(self) -> int | float:
        """The value of a num token (Groovy allows `_` separators and type suffixes such as 10L)."""
        digits = self.text.replace("_", "").rstrip("lLgGiIdDfF")
        return float(digits) if any(c in digits for c in ".eE") else int(digits)


def _string_value(raw: str) -> tuple[str, bool]:
    """The value of a quoted string token, and whether it interpolates (double quotes with `$`)."""
    quote = 3 if raw[:3] in ("'''", '"""') else 1
    body = raw[quote:-quote]
    interpolated = raw[0] == '"' and bool(_INTERPOLATION.search(body))
    value = re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body, flags=re.DOTALL)
    return value, interpolated


def tokenize(text: str) -> list[Token]:
    """The tokens of `text`, newlines kept (they end statements), comments dropped, eof last."""
    tokens: list[Token] = []
    pos, line = 0, 1
    while pos < len(text):
        kind, match = next((k, m) for k, p in _PATTERNS if (m := p.match(text, pos)) is not None)
        raw = match.group()
        if kind == "unterminated":
            what = "comment" if raw == "/*" else "string"
            raise ConfigSyntaxError(f"the {what} opened here is never closed", line)
        if kind == "str":
            value, interpolated = _string_value(raw)
            tokens.append(Token("str", value, line, interpolated))
        elif kind not in ("space", "comment"):
            tokens.append(Token(kind, raw, line))
        line += raw.count("\n")
        pos = match.end()
    tokens.append(Token("eof", "", line))
    return tokens
