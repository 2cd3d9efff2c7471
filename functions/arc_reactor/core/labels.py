"""Labels on Batch jobs, their VMs and (through Nextflow `process.resourceLabels`) every task job (pure).

GCP label rules: a key is 1-63 characters of lowercase letters, digits, `_` and `-`, starting with a
lowercase letter; a value is 0-63 characters of the same set; at most 64 labels per resource. GCP also
accepts international letters, but we map everything to ASCII so labels are easy to type in filters.

Sanitizing (the same for keys and values, deterministic):
  1. Unicode is decomposed (NFKD) and accents dropped: `José` -> `jose`; then lowercased.
  2. In values, `@` becomes `-at-` and `.` becomes `_` (so an email stays readable and reversible by
     eye): `Jane.Doe@Example.org` -> `jane_doe-at-example_org`.
  3. Any other character outside `[a-z0-9_-]` becomes `_`: `nf-core/scrnaseq` -> `nf-core_scrnaseq`.
  4. A key that does not start with a letter gets a `k` in front (`1st` -> `k1st`, empty -> `k`).
  5. Longer than 63 characters: the first 54 characters, `-` and 8 hex digits of the SHA-256 of the
     original text, so two long values that differ only at the end stay different.

`run_labels` always sets `app=arc-reactor`, `run-id`, `pipeline` and `user-email` (empty when unknown);
extra labels cannot override those four, keys starting with `goog` (reserved by Google) are dropped, and
extras are kept in key order up to the 64-label limit. Nothing is changed silently: `label_changes` says
what became of each label that Batch sees differently (or not at all); the run keeps both the labels as
written (`labels`) and as Batch sees them (`batch_labels`), and the feedback and API show the changes.

ListJobs filters on labels quote the key, `labels."run-id"="r..."` (as Google's dsub does for its
`job-id` label): a bare `labels.run-id` would read as a subtraction in the AIP-160 filter grammar.
"""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata
from collections.abc import Mapping

MAX_LEN = 63
MAX_LABELS = 64
APP = "arc-reactor"
KEY_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
VALUE_RE = re.compile(r"^[a-z0-9_-]{0,63}$")
RESERVED_KEYS = ("app", "run-id", "pipeline", "user-email")

_INVALID = re.compile(r"[^a-z0-9_-]")
_HASH_LEN = 8


def _ascii_lower(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def _fit(clean: str, original: str) -> str:
    if len(clean) <= MAX_LEN:
        return clean
    digest = hashlib.sha256(original.encode("utf-8")).hexdigest()[:_HASH_LEN]
    return f"{clean[: MAX_LEN - _HASH_LEN - 1]}-{digest}"


def sanitize_label_value(value: str) -> str:
    """Map any text to a valid GCP label value (rules in the module docstring)."""
    text = _ascii_lower(value).replace("@", "-at-").replace(".", "_")
    return _fit(_INVALID.sub("_", text), value)


def sanitize_label_key(key: str) -> str:
    """Map any text to a valid GCP label key (rules in the module docstring)."""
    text = _INVALID.sub("_", _ascii_lower(key).replace("@", "-at-").replace(".", "_"))
    if not "a" <= text[:1] <= "z":
        text = "k" + text
    return _fit(text, key)


def run_labels(
    run_id: str, pipeline: str, user_email: str | None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The labels of a run's Batch job: the four fixed ones plus sanitized extras, at most 64 in all."""
    labels = {
        "app": APP,
        "run-id": sanitize_label_value(run_id),
        "pipeline": sanitize_label_value(pipeline),
        "user-email": sanitize_label_value(user_email or ""),
    }
    extras, _changes = sanitize_extra_labels(extra or {})
    return {**labels, **extras}


def sanitize_extra_labels(extra: Mapping[str, str]) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The user's labels as Batch will see them, and what sanitizing did: one entry per label that was
    changed (`became: key=value`) or left out (`dropped: why`), so the user is told, never surprised."""
    labels: dict[str, str] = {}
    changes: list[dict[str, str]] = []
    room = MAX_LABELS - len(RESERVED_KEYS)
    for raw_key in sorted(extra):
        raw_value = str(extra[raw_key])
        key, value = sanitize_label_key(raw_key), sanitize_label_value(raw_value)
        why = ""
        if key in RESERVED_KEYS:
            why = f"{key} is set by Arc Reactor"
        elif key in labels:
            why = f"another label already became {key}"
        elif key.startswith("goog"):
            why = "keys starting with goog are reserved by Google"
        elif len(labels) >= room:
            why = f"a Batch job has at most {MAX_LABELS} labels"
        if why:
            changes.append({"key": raw_key, "value": raw_value, "dropped": why})
            continue
        labels[key] = value
        if (key, value) != (raw_key, raw_value):
            changes.append({"key": raw_key, "value": raw_value, "became": f"{key}={value}"})
    return labels, changes


def label_changes(extra: Mapping[str, str] | None) -> list[dict[str, str]]:
    """What sanitizing does to these labels (see sanitize_extra_labels); empty when nothing changes.

    Every run view shows it, and a page of runs mostly repeats a few label sets: the answer for each set is
    kept (it depends on the labels alone), and each caller gets its own copy."""
    if not extra:
        return []
    try:
        items = tuple(sorted(extra.items()))
        hash(items)
    except TypeError:  # a value that cannot be a cache key: work it out
        return sanitize_extra_labels(extra)[1]
    return [dict(change) for change in _changes_of(items)]


@functools.lru_cache(maxsize=4096)
def _changes_of(items: tuple[tuple[str, str], ...]) -> tuple[dict[str, str], ...]:
    return tuple(sanitize_extra_labels(dict(items))[1])


def label_filter(key: str, value: str) -> str:
    """A ListJobs filter term matching one label, `labels."KEY"="VALUE"`; both sides are sanitized first,
    so the result never holds a quote or an operator of its own."""
    return f'labels."{sanitize_label_key(key)}"="{sanitize_label_value(value)}"'


def run_label_filter(run_id: str) -> str:
    """The ListJobs filter term for every Batch job of a run (its orchestrator and its task jobs)."""
    return label_filter("run-id", run_id)
