"""Turning a bundle file's bytes into text or YAML, with problems that name the file and line (pure)."""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode

from arc_reactor.errors import Problem

BOM = b"\xef\xbb\xbf"
# Deep nesting is never needed in a manifest or params file, and unbounded depth would let a small file
# exhaust the recursion limit of the YAML composer or of jsonschema later on.
MAX_YAML_DEPTH = 32


def decode_text(data: bytes, file: str, max_bytes: int | None = None) -> tuple[str | None, list[Problem]]:
    """UTF-8 text of `data` with any BOM stripped, or None and the problem (size, NUL byte, encoding)."""
    if max_bytes is not None and len(data) > max_bytes:
        return None, [Problem(file, f"file is {len(data)} bytes; the limit is {max_bytes} bytes")]
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):  # a UTF-16 BOM (Excel's "Unicode text")
        return None, [
            Problem(file, "file is UTF-16 text; save it as UTF-8 (e.g. 'CSV UTF-8' in Excel)", line=1)
        ]
    data = data.removeprefix(BOM)
    nul = data.find(b"\x00")
    if nul >= 0:
        msg = "file contains a NUL byte; bundle files must be UTF-8 text"
        return None, [Problem(file, msg, line=data.count(b"\n", 0, nul) + 1)]
    try:
        return data.decode("utf-8"), []
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        msg = f"file is not valid UTF-8 (byte 0x{data[exc.start]:02x}); save it as UTF-8 text"
        return None, [Problem(file, msg, line=line)]


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases, duplicate keys and deep nesting, which only hide mistakes here."""

    _depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        """Compose one node, refusing aliases (billion-laughs style expansion) and deep nesting."""
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise ConstructorError(None, None, "YAML aliases (*name) are not allowed", mark)
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise ConstructorError(None, None, f"nesting deeper than {MAX_YAML_DEPTH} levels", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        """Build a mapping, refusing a key given twice (YAML would silently keep the last)."""
        seen: set[str] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, ScalarNode):
                if key_node.value in seen:
                    msg = f"key {key_node.value!r} is given twice"
                    raise ConstructorError(None, None, msg, key_node.start_mark)
                seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


def _yaml_problem(exc: yaml.YAMLError, text: str, file: str) -> Problem:
    """A Problem for a YAML error, with the line where the parser stopped."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        what = "; ".join(str(p) for p in (exc.context, exc.problem) if p)
        return Problem(file, f"invalid YAML: {what}", line=mark.line + 1 if mark else None)
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        char = exc.character
        what = f"U+{char:04X}" if isinstance(char, int) else repr(char)
        return Problem(file, f"invalid YAML: control character {what} is not allowed", line=line)
    return Problem(file, f"invalid YAML: {exc}")


def _plain(exc: Exception) -> str:
    """What was wrong, in the user's terms rather than Python's."""
    text = str(exc)
    if "integer string conversion" in text:
        return "an integer longer than 4,300 digits; quote it if it is an identifier"
    return f"{type(exc).__name__}: {text}"


def load_yaml(text: str, file: str) -> tuple[Any, dict[str, int], list[Problem]]:
    """Parse one YAML document: (value, line of each top-level key, problems); value is None on error."""
    try:
        loader = _StrictLoader(text)  # the reader already refuses unprintable characters here
        try:
            node = loader.get_single_node()
            value = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        return None, {}, [_yaml_problem(exc, text, file)]
    except (ValueError, OverflowError, RecursionError) as exc:
        # PyYAML builds scalars with Python's own constructors, which raise plain errors for values the YAML
        # grammar allows: an impossible date (2024-13-45), a time of 25:61:99, an integer past Python's
        # 4,300-digit limit, nesting deeper than the interpreter's stack. Each is a problem with the file.
        return None, {}, [Problem(file, f"invalid value: {_plain(exc)}"[:500])]
    lines: dict[str, int] = {}
    if isinstance(node, MappingNode):
        for key_node, _ in node.value:
            if isinstance(key_node, ScalarNode):
                lines[str(key_node.value)] = key_node.start_mark.line + 1
    return value, lines, []
