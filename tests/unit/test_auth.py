"""api/auth.py: Google ID tokens verified against certificates from a local RSA key (no network), the
certificate cache, and who may cancel or recover a run."""

import json
import time

import pytest

from arc_reactor.api.auth import (
    GCLOUD_CLIENT_ID,
    CachingRequest,
    Caller,
    TokenVerifier,
    is_admin,
    require_manager,
)
from arc_reactor.api.http import ApiError
from arc_reactor.core.run_record import RunRecord
from arc_reactor.settings import Settings

AUD = "https://runs-api-abc.a.run.app"


class Certs:
    """A google.auth transport Request serving one certificate set, counting fetches."""

    def __init__(self, certs):
        self.body = json.dumps(certs).encode()
        self.fetches = 0

    def __call__(self, url, method="GET", **kwargs):
        self.fetches += 1
        return type(
            "Resp", (), {"status": 200, "data": self.body, "headers": {"cache-control": "max-age=600"}}
        )()


class Keys:
    """A local RSA key pair: signs tokens, and its public key is the 'Google' certificate."""

    def __init__(self, kid="test-key"):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.private_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.kid = kid
        self.certs = {kid: public.decode()}

    def token(self, **claims):
        from google.auth import crypt, jwt

        now = int(time.time())
        payload = {
            "iss": "https://accounts.google.com",
            "aud": AUD,
            "iat": now,
            "exp": now + 600,
            "email": "ada@example.org",
            "email_verified": True,
            "sub": "1234",
        }
        payload.update(claims)
        payload = {k: v for k, v in payload.items() if v is not None}
        signer = crypt.RSASigner.from_string(self.private_pem, key_id=self.kid)
        return jwt.encode(signer, payload).decode()


@pytest.fixture(scope="module")
def keys():
    return Keys()


@pytest.fixture
def verifier(keys):
    return TokenVerifier(request=CachingRequest(Certs(keys.certs)))


def test_a_valid_token_gives_its_claims(keys, verifier):
    claims = verifier.verify(keys.token(), (AUD,))
    assert claims["email"] == "ada@example.org"
    assert verifier.verify(keys.token(aud=AUD + "/runs"), (AUD,))["email"] == "ada@example.org"
    assert verifier.verify(keys.token(aud=GCLOUD_CLIENT_ID), (AUD,))["email"] == "ada@example.org"


@pytest.mark.parametrize(
    ("claims", "why"),
    [
        ({"aud": "https://elsewhere.example"}, "is for"),
        ({"aud": AUD + "-evil.example"}, "is for"),
        ({"iss": "https://evil.example"}, "not issued by Google"),
        ({"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200}, "not valid"),
        ({"email": None}, "no email"),
        ({"email_verified": False}, "not verified"),
        ({"email_verified": "false"}, "not verified"),
        ({"email_verified": "true"}, "not verified"),
        ({"email_verified": None}, "not verified"),
    ],
)
def test_invalid_tokens_are_401(keys, verifier, claims, why):
    with pytest.raises(ApiError) as err:
        verifier.verify(keys.token(**claims), (AUD,))
    assert err.value.status == 401
    assert why in err.value.message
    assert err.value.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_token_signed_by_another_key_or_garbled_is_401(keys, verifier):
    other = Keys(kid=keys.kid)
    for token in (other.token(), keys.token()[:-4] + "AAAA", "not.a.jwt"):
        with pytest.raises(ApiError) as err:
            verifier.verify(token, (AUD,))
        assert err.value.status == 401


def test_certificates_are_fetched_once_and_kept_for_their_max_age(keys):
    certs = Certs(keys.certs)
    now = [1000.0]
    request = CachingRequest(certs, clock=lambda: now[0])
    verifier = TokenVerifier(request=request)
    for _ in range(5):
        verifier.verify(keys.token(), (AUD,))
    assert certs.fetches == 1
    now[0] += 601
    verifier.verify(keys.token(), (AUD,))
    assert certs.fetches == 2


def test_unreachable_certificates_are_503(keys):
    from google.auth.exceptions import TransportError

    def down(url, method="GET", **kwargs):
        raise TransportError("connection refused")

    with pytest.raises(ApiError) as err:
        TokenVerifier(request=down).verify(keys.token(), (AUD,))
    assert err.value.status == 503
    with pytest.raises(ApiError) as err:  # IAP's keys too: unavailable, never "allowed" or "refused"
        TokenVerifier(request=down).verify_iap("a.b.c", ("/projects/1/global/backendServices/2",))
    assert err.value.status == 503


def test_who_may_cancel_or_recover():
    def record(run_id: str, submitter: str | None = None) -> RunRecord:
        return RunRecord(run_id, "p", "1", "snakemake", run_id, "gs://w/", "gs://c/", "gs://i/", "gs://r/", "gs://l/",
                         submitter=submitter)  # fmt: skip

    run = record("r1", "Ada@Example.org")
    plain = Settings(admin_group="")
    admins = Settings(admin_group="ops@example.org, root@example.org")
    require_manager(plain, Caller("ada@example.org", authenticated=True), run, "cancel")
    require_manager(plain, Caller(None, local=True), run, "cancel")
    require_manager(admins, Caller("root@example.org", authenticated=True), run, "cancel")
    require_manager(admins, Caller("bob@example.org", frozenset({"ops@example.org"}), True), run, "recover")
    for settings, caller in (
        (plain, Caller("bob@example.org", authenticated=True)),
        (admins, Caller("bob@example.org", frozenset({"other@example.org"}), True)),
        (admins, Caller(None)),
    ):
        with pytest.raises(ApiError) as err:
            require_manager(settings, caller, run, "cancel")
        assert err.value.status == 403
    with pytest.raises(ApiError):
        require_manager(plain, Caller("ada@example.org", authenticated=True), record("r2"), "cancel")
    assert not is_admin(plain, Caller("", authenticated=True))
