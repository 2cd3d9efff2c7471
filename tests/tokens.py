"""ID tokens for auth tests without the network: signed by a local RSA key, whose public key is handed to
the verifier as Google's certificates (TokenVerifier(request=keys.request))."""

import json
import time

import pytest

AUDIENCE = "https://runs-api-123456.europe-west4.run.app"  # the deployed API's URL in these tests
IAP_AUDIENCE = "/projects/123456/locations/europe-west4/services/runs-api"  # IAP on Cloud Run


class Keys:
    """A local RSA key whose public half stands in for Google's certificates, and ID tokens it signs."""

    def __init__(self, audience: str):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.audience = audience
        self.certs = json.dumps({"k1": public.decode()}).encode()
        # Identity-Aware Proxy's key: ES256, published as a JWK set at its own URL.
        from cryptography.hazmat.primitives.asymmetric import ec
        from jwt.algorithms import ECAlgorithm

        self.iap_key = ec.generate_private_key(ec.SECP256R1())
        jwk = json.loads(ECAlgorithm.to_jwk(self.iap_key.public_key()))
        self.iap_certs = json.dumps({"keys": [{**jwk, "kid": "iap1", "alg": "ES256", "use": "sig"}]}).encode()

    def request(self, url, method="GET", **kwargs):
        from arc_reactor.api.auth import IAP_CERTS_URL

        data = self.iap_certs if url == IAP_CERTS_URL else self.certs
        return type("Resp", (), {"status": 200, "data": data, "headers": {}})()

    def iap_headers(self, email, aud=IAP_AUDIENCE, key=None, **claims):
        """The header Identity-Aware Proxy adds to a request it lets through (signed by `key`, else IAP's)."""
        import jwt as pyjwt

        now = int(time.time())
        payload = {"iss": "https://cloud.google.com/iap", "aud": aud, "iat": now, "exp": now + 600,
                   "email": email, "sub": "accounts.google.com:1234"}  # fmt: skip
        payload.update(claims)
        token = pyjwt.encode(payload, key or self.iap_key, algorithm="ES256", headers={"kid": "iap1"})
        return {"X-Goog-IAP-JWT-Assertion": token}

    def headers(self, email, **claims):
        from google.auth import crypt, jwt

        now = int(time.time())
        payload = {
            "iss": "accounts.google.com", "aud": self.audience, "iat": now, "exp": now + 300, "email": email,
            "email_verified": True,
        }  # fmt: skip
        payload.update(claims)
        token = jwt.encode(crypt.RSASigner.from_string(self.pem, key_id="k1"), payload).decode()
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="session")
def keys() -> Keys:
    return Keys(AUDIENCE)


@pytest.fixture
def api(app_env, gcs, keys, monkeypatch):
    """The real runs_api app in cloud mode (ARC_LOCAL unset) trusting `keys`, with ops@example.org as the
    admin group, on the local parts of `app_env` and the demo data."""
    from flow import function_client, upload_demo_data

    from arc_reactor.api.auth import TokenVerifier
    from arc_reactor.settings import get_settings
    from arc_reactor.wiring import get_deps, reset_deps

    monkeypatch.delenv("ARC_LOCAL")
    monkeypatch.setenv("ARC_ADMIN_GROUP", "ops@example.org")
    # Group lookups would need Google's credentials (never in tests): tests/unit/test_groups.py covers them.
    monkeypatch.setenv("ARC_GROUP_LOOKUP", "false")
    monkeypatch.setenv("ARC_SERVICE_URL", keys.audience)
    upload_demo_data(gcs)
    get_settings.cache_clear()
    reset_deps()
    get_deps().token_verifier = TokenVerifier(request=keys.request)
    return function_client("runs_api", "http")
