"""A Cognito-like identity provider for tests: a real RS256 key pair, a JWKS, a token and a
userinfo endpoint, served over HTTP on a loopback port by a thread.

Like Cognito, the userinfo answer carries the profile but no ``cognito:groups``; the groups
are in the tokens this provider signs.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

ISSUER = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_TestPool"
CLIENT_ID = "test-app-client"


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    jwk: dict[str, Any] = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**jwk, "kid": kid, "alg": "RS256", "use": "sig"}


@dataclass
class FakeIdP:
    """What the provider serves; tests change it between requests."""

    base_url: str = ""
    keys: dict[str, rsa.RSAPrivateKey] = field(default_factory=dict)  # kid -> private key
    published: list[str] = field(default_factory=list)  # kids in the JWKS
    jwks_status: int = 200
    jwks_padding: int = 0  # characters of an extra member in the JWKS answer
    token_answer: dict[str, Any] = field(default_factory=dict)
    userinfo: dict[str, Any] = field(default_factory=dict)
    hits: Counter[str] = field(default_factory=Counter)

    @property
    def jwks_url(self) -> str:
        return f"{self.base_url}/.well-known/jwks.json"

    def add_key(self, kid: str, key: rsa.RSAPrivateKey, *, publish: bool = True) -> None:
        self.keys[kid] = key
        if publish:
            self.published.append(kid)

    def jwks(self) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "keys": [public_jwk(self.keys[kid], kid) for kid in self.published]
        }
        if self.jwks_padding:
            answer["padding"] = "x" * self.jwks_padding
        return answer

    def sign(
        self,
        claims: dict[str, Any],
        *,
        kid: str | None = None,
        key: rsa.RSAPrivateKey | None = None,
    ) -> str:
        kid = kid or self.published[0]
        signer = key or self.keys[kid]
        return jwt.encode(claims, signer, algorithm="RS256", headers={"kid": kid})

    def id_claims(self, **overrides: Any) -> dict[str, Any]:
        """An ID token's claims as Cognito writes them (valid for an hour from now)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "sub": "5f1c2a9e-0000-4000-8000-000000000001",
            "aud": CLIENT_ID,
            "email_verified": True,
            "token_use": "id",
            "auth_time": now,
            "iss": ISSUER,
            "cognito:username": "kim",
            "exp": now + 3600,
            "iat": now,
            "email": "kim@example.com",
            "given_name": "Kim",
            "family_name": "Lee",
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def access_claims(self, **overrides: Any) -> dict[str, Any]:
        """A Cognito access token's claims: ``client_id``, no ``aud``, no email."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "sub": "5f1c2a9e-0000-4000-8000-000000000001",
            "token_use": "access",
            "scope": "openid email profile",
            "auth_time": now,
            "iss": ISSUER,
            "exp": now + 3600,
            "iat": now,
            "jti": "0d6a1c7e-0000-4000-8000-00000000000a",
            "client_id": CLIENT_ID,
            "username": "kim",
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def settings(self) -> dict[str, Any]:
        """Django settings pointing OIDC at this provider."""
        return {
            "OIDC_ENABLED": True,
            "OIDC_RP_CLIENT_ID": CLIENT_ID,
            "OIDC_RP_CLIENT_SECRET": "test-client-secret",
            "OIDC_RP_SIGN_ALGO": "RS256",
            "OIDC_OP_ISSUER": ISSUER,
            "OIDC_OP_JWKS_ENDPOINT": self.jwks_url,
            "OIDC_OP_AUTHORIZATION_ENDPOINT": f"{self.base_url}/oauth2/authorize",
            "OIDC_OP_TOKEN_ENDPOINT": f"{self.base_url}/oauth2/token",
            "OIDC_OP_USER_ENDPOINT": f"{self.base_url}/oauth2/userInfo",
            "OIDC_TIMEOUT": 5,
        }


def _handler(idp: FakeIdP) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            idp.hits[path] += 1
            if path == "/.well-known/jwks.json":
                if idp.jwks_status != 200:
                    self._answer(idp.jwks_status, {"message": "unavailable"})
                else:
                    self._answer(200, idp.jwks())
            elif path == "/oauth2/userInfo":
                self._answer(200, idp.userinfo)
            else:
                self._answer(404, {})

        def do_POST(self) -> None:
            path = self.path.split("?", 1)[0]
            idp.hits[path] += 1
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if path == "/oauth2/token":
                self._answer(200, idp.token_answer)
            else:
                self._answer(404, {})

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def fake_idp() -> Iterator[FakeIdP]:
    idp = FakeIdP()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(idp))
    idp.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield idp
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
