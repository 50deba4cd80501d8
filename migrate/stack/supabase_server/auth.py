"""JWTs the way Supabase Storage checks them: HS256, a `role` claim, one secret.

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
- src/internal/auth/jwt.ts `signJWT`/`verifyJWT` and
  src/storage/object.ts `signObjectUrl`: signed URLs carry a JWT with the
  `url` ("bucket/key") and `exp` claims, signed with the same secret.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

import jwt

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


def verify_jwt(token: str, secret: str) -> dict[str, Any]:
    """Claims of a valid token; raises TokenRejected with jose's message otherwise."""
    if token.count(".") != 2:
        raise TokenRejected("Invalid Compact JWS")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.DecodeError as err:
        raise TokenRejected("JWS Protected Header is invalid") from err
    if header.get("alg") != ALGORITHM:
        raise TokenRejected('"alg" (Algorithm) Header Parameter value not allowed')
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options={"verify_aud": False})
    except jwt.InvalidSignatureError as err:
        raise TokenRejected("signature verification failed") from err
    except jwt.ExpiredSignatureError as err:
        raise TokenRejected('"exp" claim timestamp check failed') from err
    except jwt.ImmatureSignatureError as err:
        raise TokenRejected('"nbf" claim timestamp check failed') from err
    except jwt.InvalidTokenError as err:
        raise TokenRejected("JWT Claims Set must be a top-level JSON object") from err
    return dict(claims)


def request_token(headers: HeaderSource) -> str:
    """The JWT a request carries: the Bearer token, else the `apikey` header.

    The storage server reads only `Authorization`; the `apikey` fallback is
    what the Supabase API gateway in front of it does for clients that send
    only the key.
    """
    authorization = headers.get("Authorization") or ""
    if authorization:
        return _BEARER.sub("", authorization, count=1).strip()
    return (headers.get("apikey") or "").strip()


def principal_for(token: str, secret: str) -> Principal:
    """Verify `token`; raises TokenRejected when it does not verify."""
    claims = verify_jwt(token, secret)
    return Principal(role=str(claims.get("role") or ANON_ROLE), authenticated=True, claims=claims)


def sign_object_url(secret: str, url: str, expires_in: int) -> str:
    """The token of a signed download URL for `url` ("bucket/key")."""
    now = int(time.time())
    return jwt.encode({"url": url, "iat": now, "exp": now + expires_in}, secret, algorithm=ALGORITHM)
