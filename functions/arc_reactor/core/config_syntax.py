"""Tokens of a Nextflow config: just enough Groovy lexing to check a config without running it (pure)."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Groovy, like Java, turns \uXXXX into characters before it lexes, so one could close a string or spell
# `${` where this tokenizer sees only a plain literal: refuse them anywhere in the file.
_UNICODE_ESCAPE = re.compile(r"\\u")
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "0": "\0"}
_KINDS = [
    ("space", r"[ \t\f\r]+|\\\r?\n"),  # a backslash-newline continues the line
    ("nl", r"\n"),
    ("comment", r"//[^\n]*|/\*.*?\*/"),
    ("str", r"'''.*?'''|\"\"\".*?(?<!\\)\"\"\"|'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\""),
    ("num", r"\d[\d_]*(?:\.\d[\d_]*)?(?:[eE][+-]?\d+)?(?![A-Za-z_\d])|\d[\d_]*[lLgGiIdDfF]\b"),
    ("name", r"[A-Za-z_][A-Za-z0-9_]*"),
    ("unterminated", r"/\*|'|\""),  # reached only when a string or comment above found no end
    ("op", r"->|."),
]
# One alternation tried left to right; the group that matched names the token's kind.
_TOKEN = re.compile("|".join(f"(?P<{kind}>{pattern})" for kind, pattern in _KINDS), re.DOTALL)


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
        try:
            return float(digits) if any(c in digits for c in ".eE") else int(digits)
        except ValueError as exc:  # e.g. past Python's 4,300-digit limit: no resource is that big
            shown = digits if len(digits) <= 24 else f"{digits[:12]}...({len(digits)} digits)"
            raise ConfigSyntaxError(f"{shown} is not a number this config can hold", self.line) from exc


def _string_value(raw: str) -> tuple[str, bool]:
    """The value of a quoted string token, and whether it interpolates (double quotes with `$`)."""
    quote = 3 if raw[:3] in ("'''", '"""') else 1
    body = raw[quote:-quote]
    # Any unescaped `$` in a double-quoted string counts: `\\${x}` is an escaped backslash, then `${x}`.
    interpolated = raw[0] == '"' and "$" in _ESCAPE.sub("", body)
    value = _ESCAPE.sub(lambda m: _ESCAPES.get(m.group(1), m.group(1)), body) if "\\" in body else body
    return value, interpolated


def tokenize(text: str) -> list[Token]:
    """The tokens of `text`, newlines kept (they end statements), comments dropped, eof last."""
    escape = _UNICODE_ESCAPE.search(text)
    if escape is not None:
        line = text.count("\n", 0, escape.start()) + 1
        raise ConfigSyntaxError(
            "unicode escapes (\\uXXXX) are not allowed: Groovy decodes them before parsing", line
        )
    tokens: list[Token] = []
    pos, line = 0, 1
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        assert match is not None  # the last alternative matches any character
        kind, raw = match.lastgroup or "op", match.group()
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
