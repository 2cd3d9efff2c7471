"""The policy for a user's nextflow.config: an allowlist checked by a small parser, never by Groovy.

A Nextflow config is Groovy code, so only literal settings in `params` and process resources are
accepted; everything else (executor, google.*, workDir, plugins, includeConfig, env, closures, method
calls, string interpolation, ...) is refused with the line and the reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from arc_reactor.core.config_syntax import ConfigSyntaxError, Sized, Token, tokenize
from arc_reactor.errors import Problem

CONFIG = "nextflow.config"
SELECTORS = ("withName", "withLabel")
RESOURCE_KEYS = frozenset({"cpus", "memory", "time", "disk", "maxRetries", "maxErrors", "errorStrategy"})
ERROR_STRATEGIES = frozenset({"retry", "terminate", "ignore", "finish"})
MEMORY_UNITS = frozenset({"B", "KB", "MB", "GB", "TB", "PB"})
DURATION_UNITS = frozenset({"ms", "s", "m", "min", "h", "d"})
_MEMORY_TEXT = re.compile(r"^\s*\d+(\.\d+)?\s*\.?\s*[KMGTP]?B\s*$", re.IGNORECASE)
_DURATION_TEXT = re.compile(
    r"^\s*(\d+(\.\d+)?\s*\.?\s*(ms|millis?|s|secs?|seconds?|m|mins?|minutes?|h|hours?|d|days?)\s*)+$",
    re.IGNORECASE,
)

_TOP_REASONS = {
    "executor": "the executor is set by Arc Reactor",
    "google": "Google Cloud settings (project, location, service account, network) are set by Arc Reactor",
    "workDir": "the work directory is set by Arc Reactor",
    "plugins": "plugins are code and are fixed by Arc Reactor",
    "env": "environment variables reach every task and can change what it runs",
    "profiles": "profiles come from the pipeline itself; choose one with `profile:` in run.yaml",
    "manifest": "the manifest belongs to the pipeline",
    "cleanup": "cleanup would delete the work directory that -resume needs",
    "nextflow": "Nextflow's own settings are set by Arc Reactor",
    "workflow": "workflow handlers are code",
    **dict.fromkeys(
        (
            "docker",
            "singularity",
            "apptainer",
            "podman",
            "charliecloud",
            "shifter",
            "sarus",
            "conda",
            "spack",
        ),
        "the container engine is set by Arc Reactor",
    ),
    **dict.fromkeys(("aws", "azure", "k8s"), "runs use Google Cloud Batch only"),
    **dict.fromkeys(("tower", "wave", "fusion", "seqera", "lineage"), "Seqera services are not used"),
    **dict.fromkeys(
        ("timeline", "report", "trace", "dag"), "reports are written by Arc Reactor to the run's logs"
    ),
}
_TOP_DEFAULT = "a user nextflow.config may only set `params` and process resources"
_PROCESS_REASONS = {
    "executor": "the executor is set by Arc Reactor",
    "container": "the container is fixed by the pipeline at its registered revision",
    "containerOptions": "container options can change what a task runs and mounts",
    "shell": "the task shell is fixed by the pipeline",
    "beforeScript": "it runs arbitrary commands on the task VMs",
    "afterScript": "it runs arbitrary commands on the task VMs",
}
_PROCESS_DEFAULT = (
    "in process only cpus, memory, time, disk, maxRetries, maxErrors, errorStrategy and ext.args may be set"
    " (also inside withName/withLabel)"
)
# Scopes and lists nest by recursion here; real configs stay far below this, hostile ones must not crash.
MAX_DEPTH = 16
_LITERALS = "numbers, quoted strings, true/false, sizes and durations like 8.GB or 2.h, and lists of these"


def _process_verdict(rest: tuple[str, ...], is_block: bool) -> str | None:
    """Why a setting under `process` is refused, or None when allowed."""
    if rest and rest[0].startswith(tuple(f"{s}:" for s in SELECTORS)):
        rest = rest[1:]
    if not rest:
        return None
    if rest[0] == "ext":
        allowed = (rest == ("ext",) and is_block) or (rest == ("ext", "args") and not is_block)
        return None if allowed else "only ext.args may be set in process.ext"
    if len(rest) == 1 and not is_block and rest[0] in RESOURCE_KEYS:
        return None
    return _PROCESS_REASONS.get(rest[0], _PROCESS_DEFAULT)


def verdict(path: tuple[str, ...], is_block: bool) -> str | None:
    """Why the setting or scope at `path` is refused, or None when it is allowed."""
    if "executor" in path:
        # Refused at any depth (even as a param name) so that no spelling of it can slip through.
        return _TOP_REASONS["executor"]
    if path[0] == "params":
        return None
    if path[0] == "process":
        return _process_verdict(path[1:], is_block)
    return _TOP_REASONS.get(path[0], _TOP_DEFAULT)


def value_problem(path: tuple[str, ...], value: object) -> str | None:
    """Why a literal is wrong for the setting at `path`, or None (params take any literal)."""
    key = path[-1]
    if path[0] == "params":
        return None
    whole = value if isinstance(value, int) and not isinstance(value, bool) else None
    if key == "cpus" and (whole is None or whole < 1):
        return "cpus must be a positive whole number"
    if key in ("maxRetries", "maxErrors") and whole is None:
        return f"{key} must be a whole number"
    if key in ("memory", "disk") and not _is_size(value, MEMORY_UNITS, _MEMORY_TEXT):
        return f"{key} must be a size such as 8.GB or '8 GB'"
    if key == "time" and not _is_size(value, DURATION_UNITS, _DURATION_TEXT):
        return "time must be a duration such as 2.h or '2h'"
    if key == "errorStrategy" and value not in ERROR_STRATEGIES:
        return f"errorStrategy must be one of the strings {', '.join(sorted(ERROR_STRATEGIES))}"
    if key == "args":
        return _args_problem(value)
    return None


# One word of process.ext.args: nf-core modules paste `$args` into task shell scripts, so the value must be
# unable to break out of an argument list. Words of these characters, separated by spaces, cannot: no
# quotes, `;`, `|`, `&`, `$`, backticks, parentheses, redirections, globs, backslashes or newlines.
_ARG_WORD = re.compile(r"^[A-Za-z0-9_./:=,+@%-]+$")


def _args_problem(value: object) -> str | None:
    if not isinstance(value, str):
        return "ext.args must be a string"
    bad = next((w for w in value.split(" ") if w and not _ARG_WORD.match(w)), None)
    if bad is not None or "\n" in value or "\t" in value:
        shown = bad if bad is not None else value
        return (
            f"ext.args may hold only options and values of letters, digits and _ . / : = , + @ % -, "
            f"separated by spaces (it is pasted into the task's shell script); {shown!r} is not"
        )
    return None


def _is_size(value: object, units: frozenset[str], text: re.Pattern[str]) -> bool:
    if isinstance(value, Sized):
        return value.unit in units
    if isinstance(value, str):
        return bool(text.match(value))
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def check_config(text: str, file: str = CONFIG) -> list[Problem]:
    """Every refused construct in a user nextflow.config; an empty list means it is accepted."""
    try:
        parser = _Parser(tokenize(text), file)
        parser.body((), opened_at=None)
    except ConfigSyntaxError as exc:
        return [Problem(file, str(exc), line=exc.line)]
    return sorted(parser.problems, key=lambda p: p.line or 0)


_BAD = object()  # marks "not a literal" while reading a value
_GROOVY_STATEMENTS = frozenset({"def", "if", "else", "for", "while", "import", "return", "try", "switch"})


@dataclass
class _Parser:
    """Recursive descent over the tokens: statements, blocks and literal values only."""

    tokens: list[Token]
    file: str
    pos: int = 0

    def __post_init__(self) -> None:
        self.problems: list[Problem] = []

    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.pos + ahead, len(self.tokens) - 1)]

    def take(self) -> Token:
        tok = self.peek()
        self.pos = min(self.pos + 1, len(self.tokens) - 1)
        return tok

    def refuse(self, line: int, message: str) -> None:
        self.problems.append(Problem(self.file, message, line=line))

    def at_end_of_statement(self) -> bool:
        tok = self.peek()
        return tok.kind in ("nl", "eof") or tok.is_op(";") or tok.is_op("}")

    def body(self, path: tuple[str, ...], opened_at: int | None) -> None:
        """Statements until the `}` closing the block opened at `opened_at` (or the end of the file)."""
        while True:
            tok = self.peek()
            if tok.kind == "nl" or tok.is_op(";"):
                self.take()
            elif tok.kind == "eof":
                if opened_at is not None:
                    self.refuse(opened_at, "the block opened here is never closed (missing '}')")
                return
            elif tok.is_op("}"):
                self.take()
                if opened_at is not None:
                    return
                self.refuse(tok.line, "'}' without a matching '{'")
            else:
                self.statement(path)

    def statement(self, path: tuple[str, ...]) -> None:
        """One `name = value`, `name { ... }` or `withName: X { ... }`; anything else is refused."""
        first, start = self.peek(), self.pos
        if first.kind == "name" and first.text in SELECTORS and self.peek(1).is_op(":"):
            self.selector(path)
            return
        names = self.dotted_name()
        tok = self.peek()
        if names and first.text == "includeConfig":
            self.refuse(first.line, "includeConfig is not allowed: it would load config that is not checked")
        elif names and names[0] in _GROOVY_STATEMENTS:
            self.refuse(
                first.line, f"Groovy statements ({names[0]}) are not allowed: a config only sets values"
            )
        elif names and tok.is_op("="):
            self.take()
            self.assignment((*path, *names), first.line)
            return
        elif names and tok.is_op("{"):
            self.take()
            self.block((*path, *names), first.line)
            return
        else:
            self.pos = start
            self.refuse(first.line, _not_literal_reason(self.statement_tokens(), "unsupported statement"))
            return
        self.skip_statement()

    def dotted_name(self) -> list[str]:
        names: list[str] = []
        while self.peek().kind == "name":
            names.append(self.take().text)
            if not (self.peek().is_op(".") and self.peek(1).kind == "name"):
                break
            self.take()
        return names

    def selector(self, path: tuple[str, ...]) -> None:
        kind, line = self.take().text, self.peek().line
        self.take()  # the ':'
        target = self.take()
        if path != ("process",):
            self.refuse(line, f"{kind} selectors are only allowed directly inside process {{ }}")
        elif target.kind not in ("name", "str") or target.interpolated or not self.peek().is_op("{"):
            self.refuse(line, f"{kind}: expects a name or a quoted pattern followed by {{ ... }}")
        else:
            self.take()
            self.block((*path, f"{kind}:{target.text}"), line)
            return
        self.skip_statement()

    def block(self, path: tuple[str, ...], line: int) -> None:
        """The scope `path { ... }` with its opening brace taken: descend when allowed, else skip it."""
        reason = verdict(path, is_block=True)
        if reason is None and len(path) > MAX_DEPTH:
            reason = f"scopes nest deeper than {MAX_DEPTH} levels"
        if reason is None:
            self.body(path, opened_at=line)
            return
        self.refuse(line, f"{_dotted(path)} is not allowed: {reason}")
        self.skip_balanced(depth=1)

    def assignment(self, path: tuple[str, ...], line: int) -> None:
        reason = verdict(path, is_block=False)
        if reason is not None:
            self.refuse(line, f"{_dotted(path)} is not allowed: {reason}")
            self.skip_statement()
            return
        while self.peek().kind == "nl":
            self.take()  # Groovy lets a value start on the line after `=`
        start = self.pos
        value = self.literal()
        if value is _BAD or not self.at_end_of_statement():
            self.pos = start
            reason = _not_literal_reason(self.statement_tokens(), "the value is not a literal")
            self.refuse(line, f"{_dotted(path)}: {reason}")
            return
        problem = value_problem(path, value)
        if problem is not None:
            self.refuse(line, f"{_dotted(path)}: {problem}")

    def literal(self, depth: int = 0) -> object:
        """One literal value, or _BAD when the tokens here are not a literal (or nest too deep)."""
        tok = self.take()
        if tok.is_op("-") and self.peek().kind == "num":
            number = self.literal(depth)
            return -number if isinstance(number, int | float) else _BAD
        if tok.kind == "num":
            number = tok.number()
            if self.peek().is_op(".") and self.peek(1).kind == "name":
                self.take()
                unit = self.take().text
                return Sized(number, unit) if unit in MEMORY_UNITS | DURATION_UNITS else _BAD
            return number
        if tok.kind == "str":
            return _BAD if tok.interpolated else tok.text
        if tok.kind == "name" and tok.text in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[tok.text]
        if tok.is_op("[") and depth < MAX_DEPTH:
            return self.list_literal(depth + 1)
        return _BAD

    def list_literal(self, depth: int) -> object:
        items: list[object] = []
        while True:
            while self.peek().kind == "nl":
                self.take()
            if self.peek().is_op("]"):
                self.take()
                return items
            item = self.literal(depth)
            if item is _BAD:
                return _BAD
            items.append(item)
            while self.peek().kind == "nl":
                self.take()
            if self.peek().is_op(","):
                self.take()
            elif not self.peek().is_op("]"):
                return _BAD

    def statement_tokens(self) -> list[Token]:
        """Take the rest of the statement (balanced brackets included) and return its tokens."""
        start = self.pos
        self.skip_statement()
        return self.tokens[start : self.pos]

    def skip_statement(self) -> None:
        depth = 0
        while self.peek().kind != "eof":
            tok = self.peek()
            if depth == 0 and (tok.kind == "nl" or tok.is_op(";") or tok.is_op("}")):
                return
            depth += tok.is_op("{", "[", "(") - tok.is_op("}", "]", ")")
            self.take()

    def skip_balanced(self, depth: int) -> None:
        while depth > 0 and self.peek().kind != "eof":
            tok = self.take()
            depth += tok.is_op("{") - tok.is_op("}")


def _dotted(path: tuple[str, ...]) -> str:
    """The setting's name as a user would write it, selectors quoted: process.withName:'FOO'.cpus."""
    return ".".join(f"{seg.split(':', 1)[0]}:'{seg.split(':', 1)[1]}'" if ":" in seg else seg for seg in path)


def _not_literal_reason(tokens: list[Token], fallback: str) -> str:
    """Say what kind of code a refused value or statement holds, most telling kind first."""
    if any(t.kind == "str" and t.interpolated for t in tokens):
        return 'string interpolation ("${...}") is not allowed: values must be plain literals'
    if any(t.is_op("{", "->") for t in tokens):
        return f"closures ({{ ... }}) are not allowed: dynamic values are code; use a literal ({_LITERALS})"
    names = {t.text for t in tokens if t.kind == "name"}
    if "new" in names:
        return "object creation (new ...) is not allowed: a config only sets values"
    if names & {"System", "Runtime", "ProcessBuilder", "Thread", "Class"}:
        return "Java/Groovy system calls (System. ...) are not allowed: a config only sets values"
    if any(t.is_op("(") for t in tokens):
        return "method calls are not allowed: a config only sets values"
    return f"{fallback}: only {_LITERALS} are allowed"
