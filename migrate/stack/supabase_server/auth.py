"""JWTs the way Supabase Storage checks them: HS256 with the project's secret, or ES256 with its signing key; a `role` claim.

- src/http/plugins/jwt.ts: the token is the `Authorization: Bearer` value;
  a missing or bad token is AccessDenied carrying the verifier's message,
  except on routes that allow anonymous reads, where it makes the request
  anonymous instead. The server verifies with `jose`
  (src/internal/auth/jwt-jose.ts), so the messages are jose's: "Invalid
  Compact JWS" (missing or not three parts, also what hosted Supabase answers
  for a non-JWT key), "JWS Protected Header is invalid", "signature
  verification failed", '"exp" claim timestamp check failed'.
- `service_role` bypasses row-level security; every other role (`anon`,
  `authenticated`) goes through it. This server has no RLS policies, so
  those roles see no rows: they can only read public buckets through the
  routes that look objects up as the superuser.
- The API gateway in front of hosted Supabase (supabase/supabase
  apps/docs/content/guides/api/api-keys.mdx, "Known limitations"): an
  `sb_secret_...` key in the `apikey` header reaches Storage as the
  service_role, an `sb_publishable_...` key as anon. A publishable or secret
  key cannot be sent as `Authorization: Bearer`: when it equals the
  `apikey` header the request is forwarded and rejected as not a JWT (what
  Storage's jose answers: AccessDenied "Invalid Compact JWS", HTTP 400 with
  statusCode "403", as supabase/cli#4181 shows for the local gateway); with
  no `apikey` at all the gateway itself answers 401 "No API key found in
  request" (supabase.com/kb .../auth-error-401-unauthorized_missing_api_key),
  and an `apikey` it does not know gets its 401 "Invalid API key" (the
  gateway's wording, e.g. nuxt-modules/supabase#195).
- src/internal/auth/jwt.ts `signJWT`/`verifyJWT` and
  src/storage/object.ts `signObjectUrl`: signed URLs carry a JWT with the
  `url` ("bucket/key") and `exp` claims, signed with the same secret.
- A project on asymmetric JWT signing keys (supabase/supabase
  apps/docs/content/guides/auth/signing-keys.mdx) gets access tokens signed
  with an ES256 key and publishes its public key at
  /auth/v1/.well-known/jwks.json; Storage verifies them against that set
  (src/internal/auth/jwt.ts verifyJWT with the project's JWKS). This server
  has one such key, derived from its JWT secret (keys.signing_key), serves
  its JWKS at that path (app.py) and verifies both kinds with the redirect
  route's verifier (migrate.supabase_access.verify_token, which follows jwt.ts).
"""

from __future__ import annotations

import functools
import re
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

import jwt

from migrate.jwks import JwksCache
from migrate.stack.supabase_server.keys import is_new_api_key, project_keys, signing_key
from migrate.supabase_access import verify_token

ALGORITHM = "HS256"
SERVICE_ROLE = "service_role"
ANON_ROLE = "anon"
DEFAULT_EXPIRY = 10 * 365 * 86400

_BEARER = re.compile(r"^Bearer\s+", re.IGNORECASE)


class HeaderSource(Protocol):
    """Request headers: a mapping, or the `email.message.Message` http.server gives."""

    def get(self, name: str) -> Any:
        """The header's value, or None."""


class TokenRejected(Exception):
    """A JWT did not verify; the message is jsonwebtoken's wording for why."""


@dataclass(frozen=True)
class Principal:
    """Who is asking: the JWT's role, and whether the JWT verified at all."""

    role: str
    authenticated: bool
    claims: Mapping[str, Any] = field(default_factory=dict)

    @property
    def bypasses_rls(self) -> bool:
        """Only service_role skips row-level security."""
        return self.authenticated and self.role == SERVICE_ROLE

    @property
    def owner(self) -> str | None:
        """The JWT's `sub`: what the catalog records as the owner of new rows."""
        sub = self.claims.get("sub")
        return str(sub) if sub else None


ANONYMOUS = Principal(role=ANON_ROLE, authenticated=False)


def make_jwt(secret: str, role: str, *, expires_in: int = DEFAULT_EXPIRY) -> str:
    """An HS256 API key like Supabase's: `{"iss": "supabase", "role": role, "iat", "exp"}`."""
    now = int(time.time())
    claims = {"iss": "supabase", "role": role, "iat": now, "exp": now + expires_in}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def make_access_token(jwt_secret: str, role: str, *, expires_in: int = 3600, sub: str | None = None) -> str:
    """An ES256 access token like Supabase Auth issues on signing keys (`kid` header; iss, aud, sub, role, iat, exp)."""
    key = signing_key(jwt_secret)
    now = int(time.time())
    claims: dict[str, Any] = {"iss": "supabase", "aud": "authenticated", "role": role, "iat": now, "exp": now + expires_in}
    if sub:
        claims["sub"] = sub
    return jwt.encode(claims, key.private, algorithm="ES256", headers={"kid": key.kid})


def public_jwks(jwt_secret: str) -> dict[str, Any]:
    """The JWKS document the server publishes at /auth/v1/.well-known/jwks.json."""
    return {"keys": [signing_key(jwt_secret).public_jwk()]}


@functools.lru_cache(maxsize=8)
def _project_jwks(jwt_secret: str) -> JwksCache:
    # The server's own set: read from memory, never over the network.
    document = public_jwks(jwt_secret)
    return JwksCache("bundled:/auth/v1/.well-known/jwks.json", fetch=lambda _url: document)


def verify_jwt(token: str, secret: str) -> dict[str, Any]:
    """Claims of a valid token (HS256 with `secret`, or ES256 with the project's signing key); raises TokenRejected with jose's message otherwise."""
    try:
        return verify_token(token, secret, _project_jwks(secret))
    except ValueError as err:
        raise TokenRejected(str(err)) from None


class GatewayRejected(Exception):
    """The API gateway refuses the request before Storage sees it (HTTP 401)."""

    def __init__(self, message: str, hint: str):
        super().__init__(message)
        self.message = message
        self.hint = hint


def principal_for(token: str, secret: str) -> Principal:
    """Verify `token`; raises TokenRejected when it does not verify."""
    claims = verify_jwt(token, secret)
    return Principal(role=str(claims.get("role") or ANON_ROLE), authenticated=True, claims=claims)


class Gatekeeper:
    """The hosted gateway's key handling plus Storage's JWT check, with a verification cache."""

    def __init__(self, jwt_secret: str):
        self.jwt_secret = jwt_secret
        keys = project_keys(jwt_secret)
        self._api_keys = {
            keys.secret_key: Principal(role=SERVICE_ROLE, authenticated=True, claims={"role": SERVICE_ROLE}),
            keys.publishable_key: Principal(role=ANON_ROLE, authenticated=True, claims={"role": ANON_ROLE}),
        }
        # Clients send the same key on every request; verifying it once per
        # distinct token (until it expires) keeps HMAC and JSON work off the hot path.
        self._verified: dict[str, tuple[float, Principal]] = {}

    def principal(self, headers: HeaderSource, *, anonymous_ok: bool = False, apikey_param: str | None = None) -> Principal:
        """Who the request is; raises TokenRejected (Storage) or GatewayRejected (gateway).

        Without `Authorization` the gateway turns the `apikey` header (or the
        `apikey` URL parameter) into the Bearer token Storage reads (a legacy JWT
        as it is, a new key into its role).
        """
        authorization = (headers.get("Authorization") or "").strip()
        apikey = (headers.get("apikey") or apikey_param or "").strip()
        if authorization:
            token = _BEARER.sub("", authorization, count=1).strip()
            if is_new_api_key(token) and not apikey:
                raise GatewayRejected(
                    "No API key found in request", "No `apikey` request header or url param was found."
                )
            # A new key as Bearer is forwarded as it is and fails the JWT check below.
        elif is_new_api_key(apikey):
            mapped = self._api_keys.get(apikey)
            if mapped is None:
                raise GatewayRejected("Invalid API key", "Double check your Supabase `anon` or `service_role` API key.")
            return mapped
        else:
            token = apikey
        if not token and anonymous_ok:
            return ANONYMOUS
        cached = self._verified.get(token)
        if cached is not None and cached[0] > time.time():
            return cached[1]
        try:
            principal = principal_for(token, self.jwt_secret)
        except TokenRejected:
            if anonymous_ok:
                return ANONYMOUS
            raise
        if len(self._verified) > 1024:
            self._verified.clear()
        expires = principal.claims.get("exp")
        self._verified[token] = (float(expires) if isinstance(expires, (int, float)) else time.time() + 60, principal)
        return principal
