"""The chaos tier's figures: every attack is one trial with one outcome, summed into one JSON line.

Outcomes and flags (docs/chaos.md):
- refused: turned away with a named problem (a file and what is wrong with it, or an HTTP 4xx error code);
- accepted: taken and done, exactly once, with the right final state;
- crashed: a 5xx where none was due, an exception escaping, or a refusal that names nothing;
- lost: nothing happened and nobody was told (no run, no feedback), or a valid input refused, or a run left
  in the wrong final state;
- duplicated: work done twice (two runs or two Batch jobs for one submission, a transition recorded twice);
- forged: something hostile got through as if legitimate (a policy bypass, a stored field the engine's text
  chose, a request answered for the wrong caller).
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from dataclasses import asdict, dataclass, field

OUTCOMES = ("refused", "accepted", "crashed", "lost")
FLAGS = ("duplicated", "forged")
BAD = ("crashed", "lost", "duplicated", "forged")


@dataclass(frozen=True)
class Trial:
    family: str  # input:inbox, input:api, fault, hook, auth
    name: str
    outcome: str
    duplicated: bool = False
    forged: bool = False
    detail: str = ""

    def bad(self) -> list[str]:
        """What is wrong with this trial's result, by figure name."""
        out = [self.outcome] if self.outcome in BAD else []
        return out + [f for f in FLAGS if getattr(self, f)]


@dataclass
class Tally:
    scale: str = field(default_factory=lambda: os.environ.get("CHAOS_SCALE", "bounded"))
    trials: list[Trial] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, trial: Trial) -> Trial:
        if trial.outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {trial.outcome!r}")
        with self._lock:
            self.trials.append(trial)
        return trial

    def figures(self) -> dict[str, object]:
        """The JSON line: totals, then per family, then the names of the trials that went wrong."""
        outcomes = Counter(t.outcome for t in self.trials)
        totals: dict[str, object] = {"tier": "chaos", "scale": self.scale, "tried": len(self.trials)}
        totals.update({o: outcomes[o] for o in OUTCOMES})
        totals.update({f: sum(getattr(t, f) for t in self.trials) for f in FLAGS})
        families: dict[str, dict[str, int]] = {}
        for t in self.trials:
            fam = families.setdefault(t.family, {"tried": 0, **dict.fromkeys(OUTCOMES, 0)})
            fam["tried"] += 1
            fam[t.outcome] += 1
        totals["families"] = families
        totals["wrong"] = [
            f"{t.family}/{t.name}: {','.join(t.bad())} {t.detail}".strip() for t in self.trials if t.bad()
        ]
        return totals

    def line(self) -> str:
        return json.dumps(self.figures(), sort_keys=False)


def assert_clean(trials: list[Trial]) -> None:
    """Fail the test naming every trial that crashed, lost, duplicated or forged anything."""
    wrong = [f"{t.name}: {'+'.join(t.bad())} {t.detail}" for t in trials if t.bad()]
    assert not wrong, "\n".join(wrong)


__all__ = ["Tally", "Trial", "asdict", "assert_clean"]
