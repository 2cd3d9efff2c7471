"""The auth battery, through the real runs_api app in cloud mode: ID tokens signed by a local key standing
in for Google's certificates (no network). Every forged, stale, misdirected or unverified token is a 401;
a valid caller cannot act as another, read another's runs or take another's Idempotency-Key. A request
served where it should have been refused counts as forged."""

from __future__ import annotations

import base64
import json
import time

import pytest
from flow import DEMO_BUNDLE
from tally import Tally, Trial, assert_clean
from tokens import AUDIENCE, Keys

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

AUD = AUDIENCE  # ARC_SERVICE_URL: the URL a token must be for


def body() -> dict:
    return {
        "pipeline": "arc/fastq-stats",
        "revision": "1.0.0",
        "samplesheet": (DEMO_BUNDLE / "samplesheet.csv").read_text(),
        "params": {"min_quality": 20},
    }


def _unsigned(claims: dict) -> str:
    def part(d: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def _claims(email: str, **extra: object) -> dict:
    now = int(time.time())
    return {"iss": "accounts.google.com", "aud": AUD, "iat": now, "exp": now + 300, "email": email,
            "email_verified": True, **extra}  # fmt: skip


def tokens(keys: Keys) -> dict[str, dict[str, str]]:
    """Requests that must all be answered 401: name -> headers."""
    other = Keys(AUD)  # the same key id, another key: a signature Google never made
    now = int(time.time())
    return {
        "no-header": {},
        "basic-scheme": {"Authorization": "Basic YWRhOnNlY3JldA=="},
        "empty-bearer": {"Authorization": "Bearer "},
        "garbage-bearer": {"Authorization": "Bearer not.a.token"},
        "alg-none": {"Authorization": f"Bearer {_unsigned(_claims('ada@example.org'))}"},
        "another-key": other.headers("ada@example.org"),
        "wrong-audience": keys.headers("ada@example.org", aud="https://other.example"),
        "audience-from-host": {
            **keys.headers("eve@example.org", aud="https://evil.example"),
            "Host": "evil.example",
        },
        "expired": keys.headers("ada@example.org", iat=now - 7200, exp=now - 3600),
        "issued-in-future": keys.headers("ada@example.org", iat=now + 3600, exp=now + 7200),
        "wrong-issuer": keys.headers("ada@example.org", iss="https://evil.example"),
        "email-verified-string": keys.headers("ada@example.org", email_verified="true"),
        "email-verified-false-string": keys.headers("ada@example.org", email_verified="false"),
        "email-verified-null": keys.headers("ada@example.org", email_verified=None),
        "email-verified-one": keys.headers("ada@example.org", email_verified=1),
        "no-email": keys.headers(None),
        "huge-header": {"Authorization": "Bearer " + "a" * 60_000},
        "two-tokens": {"Authorization": keys.headers("ada@example.org")["Authorization"] + " extra"},
    }


def _trial(name: str, resp, want: set[int]) -> Trial:
    if resp.status_code >= 500:
        return Trial("auth", name, "crashed", detail=f"HTTP {resp.status_code}")
    if resp.status_code in want:
        return Trial("auth", name, "refused", detail=str(resp.status_code))
    return Trial("auth", name, "accepted", forged=resp.status_code < 400, detail=f"HTTP {resp.status_code}")


def test_forged_and_unverified_tokens_are_refused(api, keys, tally: Tally):
    trials = []
    for name, headers in tokens(keys).items():
        trials.append(tally.record(_trial(f"token/{name}", api.get("/runs", headers=headers), {401})))
        posted = api.post("/runs", json=body(), headers=headers)
        trials.append(tally.record(_trial(f"token/{name}/submit", posted, {401})))
    control = api.get("/runs", headers=keys.headers("ada@example.org"))
    trials.append(
        tally.record(Trial("auth", "token/valid", "accepted" if control.status_code == 200 else "lost"))
    )
    assert_clean(trials)


def test_a_caller_cannot_act_as_or_read_as_another(api, keys, tally: Tally):
    ada, bob = keys.headers("ada@example.org"), keys.headers("bob@example.org")
    trials = []
    spoofed = api.post("/runs", json=body(), headers={**bob, "X-Arc-Submitter": "ada@example.org"})
    submitter = (spoofed.get_json() or {}).get("submitter")
    trials.append(Trial("auth", "submitter-header-spoof", "accepted", forged=submitter != "bob@example.org",
                        detail=f"submitter {submitter}"))  # fmt: skip
    ada_run = api.post("/runs", json=body(), headers={**ada, "Idempotency-Key": "shared-key"}).get_json()[
        "id"
    ]
    for path in (f"/runs/{ada_run}", f"/runs/{ada_run}/events", f"/runs/{ada_run}/logs"):
        trials.append(
            _trial(
                f"read-other{path.removeprefix('/runs/' + ada_run) or '/run'}",
                api.get(path, headers=bob),
                {404},
            )
        )
    trials.append(
        _trial("list-other-submitter", api.get("/runs?submitter=ada@example.org", headers=bob), {403})
    )
    listed = {r["id"] for r in api.get("/runs", headers=bob).get_json()["runs"]}
    trials.append(Trial("auth", "list-own-only", "accepted", forged=ada_run in listed))
    trials.append(_trial("cancel-other", api.post(f"/runs/{ada_run}:cancel", headers=bob), {403, 404}))
    trials.append(
        _trial("recover-other", api.post(f"/runs/{ada_run}:recover", json={}, headers=bob), {403, 404})
    )
    reused = api.post("/runs", json=body(), headers={**bob, "Idempotency-Key": "shared-key"})
    got = (reused.get_json() or {}).get("id")
    outcome = "accepted" if reused.status_code == 201 else "lost"
    trials.append(
        Trial(
            "auth",
            "idempotency-key-of-another",
            outcome,
            forged=got == ada_run,
            detail=str(reused.status_code),
        )
    )
    changed = api.post(
        "/runs", json={**body(), "name": "other"}, headers={**ada, "Idempotency-Key": "shared-key"}
    )
    trials.append(_trial("idempotency-key-other-body", changed, {409, 422}))
    admin_claim = api.get("/runs", headers=keys.headers("mallory@example.org", admin=True, role="admin"))
    seen = {r["id"] for r in (admin_claim.get_json() or {}).get("runs", [])}
    trials.append(Trial("auth", "self-declared-admin", "accepted", forged=ada_run in seen))
    for t in trials:
        tally.record(t)
    assert_clean(trials)
