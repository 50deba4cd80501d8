"""`migrate serve` with a project on asymmetric JWT signing keys: ES256 tokens checked against a JWKS over HTTP.

The key pairs are made here; the JWKS is served by a small threaded http.server
on 127.0.0.1 that can rotate keys, fail with 503 or stop, and counts its fetches.
Refusal answers are upstream's: supabase/storage src/internal/auth/jwt.ts
verifyJWT throws AccessDenied with jose's message (storage-error.ts renders it
as HTTP 400, statusCode "403").
"""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from migrate.jwks import JwksCache
from migrate.serve import RunningServer, create_app
from tests.fixtures_cutover import PRIVATE_OBJECTS, CutoverWorld

REPORT = "reports/q1.pdf"
INVALID_KEY = "Key for the {alg} algorithm must be one of type CryptoKey, KeyObject, or JSON Web Key. Received an instance of Uint8Array"


class SigningKey:
    """An ES256 (or RS256) key pair with a kid, as Supabase Auth's signing keys are (kid: a UUID)."""

    def __init__(self, kid: str, algorithm: str = "ES256"):
        self.kid = kid
        self.algorithm = algorithm
        if algorithm == "ES256":
            self.private: Any = ec.generate_private_key(ec.SECP256R1())
        else:
            from cryptography.hazmat.primitives.asymmetric import rsa

            self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def public_jwk(self) -> dict[str, Any]:
        codec = jwt.algorithms.ECAlgorithm if self.algorithm == "ES256" else jwt.algorithms.RSAAlgorithm
        jwk = codec.to_jwk(self.private.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "alg": self.algorithm, "use": "sig", "key_ops": ["verify"], "ext": True}

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def token(self, role: str, *, expires_in: int = 3600, kid: str | None = None, algorithm: str | None = None) -> str:
        """An access token shaped like Supabase Auth's (iss, sub, aud, role, exp)."""
        now = int(time.time())
        claims = {"iss": "http://127.0.0.1/auth/v1", "sub": "7f6e0c1a-3a4b-4c5d-8e9f-000000000001", "aud": "authenticated", "role": role, "iat": now, "exp": now + expires_in}
        return jwt.encode(claims, self.private, algorithm=algorithm or self.algorithm, headers={"kid": kid or self.kid})


class NoAlgorithm(SigningKey):
    """A published key whose JWK leaves out `alg` (allowed by RFC 7517; the verifier infers it)."""

    def __init__(self, key: SigningKey):
        self.kid, self.algorithm, self.private = key.kid, key.algorithm, key.private

    def public_jwk(self) -> dict[str, Any]:
        return {name: value for name, value in super().public_jwk().items() if name != "alg"}


class JwksEndpoint:
    """GET /auth/v1/.well-known/jwks.json on 127.0.0.1: the published keys, or 503 while `failing`."""

    def __init__(self, *keys: SigningKey):
        self.keys = list(keys)
        self.failing = False
        self.fetches = 0
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                endpoint.fetches += 1
                if endpoint.failing:
                    body, status = b'{"message":"upstream unavailable"}', 503
                else:
                    body, status = json.dumps({"keys": [key.public_jwk() for key in endpoint.keys]}).encode(), 200
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/auth/v1/.well-known/jwks.json"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _hs256(claims: dict[str, Any], secret: bytes, header: dict[str, str]) -> str:
    """An HS256 JWT made by hand: PyJWT itself refuses a PEM public key as an HMAC secret."""
    import base64
    import hashlib
    import hmac

    def part(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    signing_input = part(json.dumps({"alg": "HS256", "typ": "JWT", **header}).encode()) + "." + part(json.dumps(claims).encode())
    return signing_input + "." + part(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())


@pytest.fixture
def signing_key() -> SigningKey:
    return SigningKey("5f3c8b2e-1d4a-4b6c-9e7f-0a1b2c3d4e5f")


@pytest.fixture
def jwks_endpoint(signing_key: SigningKey) -> Iterator[JwksEndpoint]:
    endpoint = JwksEndpoint(signing_key)
    yield endpoint
    endpoint.stop()


def _serve_block(world: CutoverWorld, serve: str) -> None:
    """Rewrite the world's plan with this `cutover.serve` mapping (the plan file is what `serve` reads)."""
    text = world.plan_path.read_text()
    start = text.index("  serve: {")
    end = text.index("}\n", start) + 2
    world.plan_path.write_text(text[:start] + f"  serve: {{{serve}}}\n" + text[end:])


class Route:
    """The redirect route for the world's current plan on 127.0.0.1, and a client for it."""

    def __init__(self, world: CutoverWorld):
        self.server = RunningServer(create_app(world.plan(), state_dir=world.state_dir), host="127.0.0.1", port=0).start()
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.server.port}", timeout=30)

    def get(self, path: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.client.get(path, headers=headers, **kwargs)

    def close(self) -> None:
        self.client.close()
        self.server.stop()


@pytest.fixture
def open_route(cutover_world: CutoverWorld) -> Iterator[Any]:
    routes: list[Route] = []

    def open_with(serve: str) -> Route:
        _serve_block(cutover_world, serve)
        routes.append(Route(cutover_world))
        return routes[-1]

    yield open_with
    for route in routes:
        route.close()


LEGACY = "jwt_secret_env: CUTOVER_JWT_SECRET, secret_key_env: CUTOVER_SECRET_KEY"


def _route_with_jwks(open_route: Any, endpoint: JwksEndpoint, monkeypatch: pytest.MonkeyPatch, *, refetch_interval: float) -> Route:
    """The route checking tokens against `endpoint`, refetching the set at most every `refetch_interval` seconds."""
    monkeypatch.setattr(JwksCache, "REFETCH_INTERVAL", refetch_interval)
    return open_route(f"{LEGACY}, jwks_url: {endpoint.url}")


def test_es256_tokens_open_private_objects_as_the_roles_say(open_route: Any, cutover_world: CutoverWorld, jwks_endpoint: JwksEndpoint, signing_key: SigningKey) -> None:
    world = cutover_world
    path = f"/storage/v1/object/authenticated/{world.private_bucket}/{REPORT}"
    route = open_route(f"{LEGACY}, jwks_url: {jwks_endpoint.url}")
    followed = route.get(path, signing_key.token("service_role"), follow_redirects=True)
    assert followed.history[0].status_code == 302 and followed.content == PRIVATE_OBJECTS[REPORT]
    assert route.get(f"/storage/v1/object/{world.private_bucket}/{REPORT}", signing_key.token("service_role")).status_code == 302
    # A signed-in user: RLS is not evaluated, so only the roles the plan lists get through (default service_role).
    user = route.get(path, signing_key.token("authenticated"))
    assert (user.status_code, user.json()["code"], user.json()["message"]) == (400, "NoSuchKey", "Object not found")
    # The legacy secret keeps working next to the JWKS (HS256 service key, signed URLs).
    assert route.get(path, world.server.service_key).status_code == 302
    assert jwks_endpoint.fetches == 1  # one fetch, then the cached set

    route = open_route(f"{LEGACY}, jwks_url: {jwks_endpoint.url}, roles: [service_role, authenticated]")
    followed = route.get(path, signing_key.token("authenticated"), follow_redirects=True)
    assert followed.history[0].status_code == 302 and followed.content == PRIVATE_OBJECTS[REPORT]


def test_without_jwks_url_es256_tokens_are_refused_as_storage_without_keys_does(open_route: Any, cutover_world: CutoverWorld, signing_key: SigningKey) -> None:
    route = open_route(LEGACY)
    answer = route.get(f"/storage/v1/object/authenticated/{cutover_world.private_bucket}/{REPORT}", signing_key.token("service_role"))
    assert (answer.status_code, answer.json()["code"]) == (400, "AccessDenied")
    assert answer.json()["message"] == '"alg" (Algorithm) Header Parameter value not allowed'


def test_refused_es256_tokens_get_what_storage_answers(
    open_route: Any, cutover_world: CutoverWorld, jwks_endpoint: JwksEndpoint, signing_key: SigningKey, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    world = cutover_world
    route = _route_with_jwks(open_route, jwks_endpoint, monkeypatch, refetch_interval=0.0)
    impostor = SigningKey(signing_key.kid)  # another key pair claiming the published kid
    now = int(time.time())
    # Alg confusion: HS256 with the published public key as the HMAC secret, with and without its kid.
    confused = [_hs256({"role": "service_role", "exp": now + 60}, signing_key.public_pem(), header) for header in ({"kid": signing_key.kid}, {})]
    rs256 = SigningKey(signing_key.kid, "RS256").token("service_role")
    cases = [
        ("expired", signing_key.token("service_role", expires_in=-60), '"exp" claim timestamp check failed'),
        ("unknown kid", signing_key.token("service_role", kid="00000000-dead-beef-0000-000000000000"), INVALID_KEY.format(alg="ES256")),
        ("impostor", impostor.token("service_role"), "signature verification failed"),
        ("HS256 with the public key, kid", confused[0], "signature verification failed"),
        ("HS256 with the public key", confused[1], "signature verification failed"),
        ("RS256, no RSA key published", rs256, '"alg" (Algorithm) Header Parameter value not allowed'),
        # PyJWT refuses these headers itself; they were a 500 before.
        ("kid not a string", _hs256({"role": "service_role"}, b"x" * 32, {"kid": ["a", "list"]}), "JWS Protected Header is invalid"),
        ("unknown crit", _hs256({"role": "service_role"}, b"x" * 32, {"crit": ["b64x"]}), "JWS Protected Header is invalid"),
    ]
    with caplog.at_level(logging.INFO):
        for case, token, message in cases:
            fetches = jwks_endpoint.fetches
            answer = route.get(f"/storage/v1/object/authenticated/{world.private_bucket}/{REPORT}", token)
            body = answer.json()
            assert (answer.status_code, body["statusCode"], body["code"], body["error"], body["message"]) == (400, "403", "AccessDenied", "Unauthorized", message), case
            assert "location" not in answer.headers, case
            if case == "unknown kid":
                assert jwks_endpoint.fetches == fetches + 1, "an unknown kid refetches the JWKS"
            # The bare route makes a refused token anonymous: a private bucket is then "not found".
            bare = route.get(f"/storage/v1/object/{world.private_bucket}/{REPORT}", token)
            assert (bare.status_code, bare.json()["code"]) == (400, "NoSuchBucket"), case
            # A signed-URL token must be one; a user's token is refused the same way.
            signed = route.get(f"/storage/v1/object/sign/{world.private_bucket}/{REPORT}", params={"token": token})
            assert (signed.status_code, signed.json()["code"], signed.json()["message"]) == (400, "InvalidJWT", message), case
    ours = "\n".join(record.getMessage() for record in caplog.records if record.name.startswith("migrate"))
    assert ours and not any(token in ours for _, token, _ in cases)


def test_a_key_verifies_only_the_algorithm_it_fits(
    open_route: Any, cutover_world: CutoverWorld, jwks_endpoint: JwksEndpoint, signing_key: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    rsa_key = SigningKey("0d1c2b3a-4e5f-4a6b-8c7d-9e0f1a2b3c4d", "RS256")
    jwks_endpoint.keys.append(rsa_key)
    route = _route_with_jwks(open_route, jwks_endpoint, monkeypatch, refetch_interval=0.0)
    path = f"/storage/v1/object/authenticated/{cutover_world.private_bucket}/{REPORT}"
    assert route.get(path, rsa_key.token("service_role")).status_code == 302
    # The JWK says alg RS256: an RS512 token under its kid finds no key (jwt.ts: upstream refuses it too).
    refused = route.get(path, rsa_key.token("service_role", algorithm="RS512"))
    assert (refused.status_code, refused.json()["code"], refused.json()["message"]) == (400, "AccessDenied", INVALID_KEY.format(alg="RS512"))
    # A P-256 key published without `alg` does not check an ES384 token (P-384) under its kid: refused, not a crash.
    jwks_endpoint.keys[0] = NoAlgorithm(signing_key)
    p384 = ec.generate_private_key(ec.SECP384R1())
    es384 = jwt.encode({"role": "service_role", "exp": int(time.time()) + 60}, p384, algorithm="ES384", headers={"kid": signing_key.kid})
    refused = route.get(path, es384)
    assert (refused.status_code, refused.json()["code"], refused.json()["message"]) == (400, "AccessDenied", INVALID_KEY.format(alg="ES384"))
    assert route.get(path, signing_key.token("service_role")).status_code == 302  # ES256 still fits it


def test_concurrent_first_requests_fetch_the_jwks_once(
    open_route: Any, cutover_world: CutoverWorld, jwks_endpoint: JwksEndpoint, signing_key: SigningKey
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    route = open_route(f"{LEGACY}, jwks_url: {jwks_endpoint.url}")
    path = f"/storage/v1/object/authenticated/{cutover_world.private_bucket}/{REPORT}"
    tokens = [signing_key.token("service_role", expires_in=3600 + number) for number in range(16)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(lambda token: httpx.get(f"{route.client.base_url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=30).status_code, tokens))
    assert statuses == [302] * 16
    assert jwks_endpoint.fetches == 1


def test_a_rotated_key_is_picked_up_and_unknown_kids_refetch_at_most_every_interval(
    open_route: Any, cutover_world: CutoverWorld, jwks_endpoint: JwksEndpoint, signing_key: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = f"/storage/v1/object/authenticated/{cutover_world.private_bucket}/{REPORT}"
    route = _route_with_jwks(open_route, jwks_endpoint, monkeypatch, refetch_interval=3600.0)
    assert route.get(path, signing_key.token("service_role")).status_code == 302
    # Made-up kids do not turn every request into a fetch.
    for number in range(5):
        assert route.get(path, signing_key.token("service_role", kid=f"made-up-{number}")).status_code == 400
    assert jwks_endpoint.fetches == 1

    # Rotation: Supabase publishes a standby key, then signs with it.
    monkeypatch.setattr(JwksCache, "REFETCH_INTERVAL", 0.0)
    standby = SigningKey("9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d")
    jwks_endpoint.keys.append(standby)
    assert route.get(path, standby.token("service_role")).status_code == 302
    assert route.get(path, signing_key.token("service_role")).status_code == 302  # the previous key is still trusted
    assert jwks_endpoint.fetches == 2


def test_an_unreachable_jwks_fails_the_request_not_the_server(
    open_route: Any, cutover_world: CutoverWorld, jwks_endpoint: JwksEndpoint, signing_key: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = cutover_world
    path = f"/storage/v1/object/authenticated/{world.private_bucket}/{REPORT}"
    route = _route_with_jwks(open_route, jwks_endpoint, monkeypatch, refetch_interval=0.0)
    jwks_endpoint.failing = True
    answer = route.get(path, signing_key.token("service_role"))
    assert answer.status_code == 500
    assert answer.json() == {"statusCode": "500", "code": "InternalError", "error": "InternalError", "message": "Internal server error"}
    assert jwks_endpoint.fetches == 3, "transient faults (503) are retried"
    # Tokens that need no JWKS are still answered; public objects need no token at all.
    assert route.get(path, world.server.service_key).status_code == 302
    assert route.get(f"/storage/v1/object/{world.public_bucket}/users/u1/avatar.png", signing_key.token("service_role")).status_code == 301
    jwks_endpoint.failing = False
    assert route.get(path, signing_key.token("service_role")).status_code == 302

    # Gone entirely (connection refused) before the first fetch: the same clean 500.
    route = open_route(f"{LEGACY}, jwks_url: {jwks_endpoint.url}")
    jwks_endpoint.stop()
    assert route.get(path, signing_key.token("service_role")).status_code == 500
    assert route.get(path, world.server.service_key).status_code == 302


def test_tokens_of_the_bundled_projects_signing_key_get_what_the_old_route_answers(
    open_route: Any, cutover_world: CutoverWorld, supabase_faults: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bundled Supabase server publishes its own ES256 key's JWKS; ours and its answers agree, token by token."""
    from migrate.stack.supabase_server.keys import signing_key as project_signing_key

    world, server = cutover_world, cutover_world.server
    monkeypatch.setattr(JwksCache, "REFETCH_INTERVAL", 0.0)
    route = open_route(f"{LEGACY}, jwks_url: {server.jwks_url}")
    published = httpx.get(server.jwks_url, timeout=30).json()["keys"]
    assert [(key["kty"], key["alg"], key["crv"], "d" in key) for key in published] == [("EC", "ES256", "P-256", False)]
    kid = published[0]["kid"]
    pem = project_signing_key(server.jwt_secret).private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    path = f"/storage/v1/object/authenticated/{world.private_bucket}/{REPORT}"
    valid = server.access_token("service_role")
    ours = route.get(path, valid, follow_redirects=True)
    upstream = httpx.get(f"{server.url}{path}", headers={"Authorization": f"Bearer {valid}"}, timeout=30)
    assert ours.history[0].status_code == 302 and ours.content == upstream.content == PRIVATE_OBJECTS[REPORT]

    refused = {
        "expired": server.access_token("service_role", expires_in=-60),
        "another key, same kid": SigningKey(kid).token("service_role"),
        "unknown kid": SigningKey("3c2b1a09-8f7e-4d6c-9b5a-493827161504").token("service_role"),
        "HS256 with the public key": _hs256({"role": "service_role", "exp": int(time.time()) + 60}, pem, {"kid": kid}),
        "anon": server.access_token("anon"),
    }
    for case, token in refused.items():
        for prefix in ("object/authenticated", "object"):
            case_path = f"/storage/v1/{prefix}/{world.private_bucket}/{REPORT}"
            ours = route.get(case_path, token)
            upstream = httpx.get(f"{server.url}{case_path}", headers={"Authorization": f"Bearer {token}"}, timeout=30)
            assert (ours.status_code, ours.json()) == (upstream.status_code, upstream.json()), (case, prefix)
        signed_path = f"/storage/v1/object/sign/{world.private_bucket}/{REPORT}"
        ours = route.get(signed_path, params={"token": token})
        upstream = httpx.get(f"{server.url}{signed_path}", params={"token": token}, timeout=30)
        assert (ours.status_code, ours.json()["code"], ours.json()["message"]) == (upstream.status_code, upstream.json()["code"], upstream.json()["message"]), case

    # The project's JWKS answering 503 (the bundled server's fault injection): a clean 500, the route stays up.
    fresh = open_route(f"{LEGACY}, jwks_url: {server.jwks_url}")
    supabase_faults({"action": "status", "status": 503, "path": r"^/auth/v1/\.well-known/jwks\.json$", "count": None})
    answer = fresh.get(path, valid)
    assert (answer.status_code, answer.json()["code"]) == (500, "InternalError")
    assert fresh.get(path, server.service_key).status_code == 302
