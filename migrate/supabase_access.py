"""Who may read an object through the old Supabase Storage routes, decided the way Supabase decides.

The redirect route (`migrate.serve`) asks `check_access` before it answers a
redirect. The rules mirror github.com/supabase/storage:

- `/object/public/...` and `/render/image/public/...` (getPublicObject.ts,
  renderPublicImage.ts): no credentials; the bucket must be public, else
  "Bucket not found".
- `/object/authenticated/...` and `/render/image/authenticated/...`
  (getObject.ts, renderAuthenticatedImage.ts behind the jwt plugin): a valid
  JWT is required, else AccessDenied with the verifier's message.
- `/object/...` (getObject.ts with allowInvalidJwt): a missing or bad JWT
  makes the request anonymous, which only reaches public buckets.
- `/object/sign/...` and `/render/image/sign/...` (getSignedObject.ts,
  renderSignedImage.ts): the `token` query parameter is an HS256 JWT signed
  with the project's JWT secret whose `url` claim is "bucket/key"; a token
  that does not verify (expired included) is 400 InvalidJWT, one for another
  object is 400 InvalidSignature.

JWTs are verified the way src/internal/auth/jwt.ts `verifyJWT` does with a
JWKS: HS256 tokens against the legacy JWT secret (whatever their `kid`: the
published JWKS never holds a shared secret, and Storage falls back to the
secret when no `oct` key matches), RS256/ES256 (and the rest of their
families, and EdDSA) against the public key of the project's JWKS
(`cutover.serve.jwks_url`, `migrate.jwks`) whose `kid` and key type match.
An asymmetric token is refused with '"alg" (Algorithm) Header Parameter value
not allowed' when the set has no key of its type (and always without a
JWKS), and with jose's invalid-key message when no key has its kid (Storage
then hands jose the secret's bytes: panva/jose src/lib/check_key_type.ts,
pinned by supabase/storage jwt.test.ts "preserve the invalid-key error").
A public key is never used as an HMAC secret: the algorithm picks the key,
and the key's type (and its JWK `alg`, when given) must fit the algorithm.

Signed-URL tokens go through the same verifier, as upstream's
verifyObjectSignature does; in practice only those signed with the legacy
JWT secret verify here. Hosted Storage now signs new ones with its own
`storage-url-signing-key` (an HS512 `oct` key per project, created by
src/storage/events/jwks/jwks-create-signing-secret.ts, chosen by
`getJwtSecret`'s `jwks.urlSigningKey || secret`), which is never published:
such URLs are refused (InvalidJWT); hand out `migrate presign` URLs instead.

Row-level security policies are not evaluated here: on a private bucket only
the roles the plan lists (`cutover.serve.roles`, default `service_role`, the
role that bypasses RLS) and the project's `sb_secret_` key get through; any
other verified role gets "Object not found", as RLS hiding the row would.

In front of Storage, the API gateway (supabase/supabase apps/docs/content/guides/api/api-keys.mdx)
turns an `sb_secret_` key in the `apikey` header into the service_role and answers 401
`{"message", "hint"}` itself for an `sb_...` key it does not know ("Invalid API key") or one sent
as `Authorization: Bearer` without an `apikey` ("No API key found in request"); a new key as Bearer
next to an `apikey` is forwarded and fails the JWT check (the same as
migrate/stack/supabase_server/auth.py). Publishable keys are not known to the route: refused as unknown.

Error answers keep upstream's shape: HTTP 400 with
`{"statusCode": "<status>", "code", "error", "message"}` (storage-error.ts
`render()`; the same shapes as migrate/stack/supabase_server/errors.py).
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import jwt

from migrate.jwks import KEY_TYPE_OF_ALGORITHM

if TYPE_CHECKING:
    from migrate.jwks import JwksCache

ALGORITHM = "HS256"
ALGORITHM_NOT_ALLOWED = '"alg" (Algorithm) Header Parameter value not allowed'
_BEARER = re.compile(r"^Bearer\s+", re.IGNORECASE)
NEW_KEY_PREFIX = "sb_"  # sb_secret_... / sb_publishable_...: API keys, not JWTs

PUBLIC_FORMS = frozenset({"public", "render-public"})
AUTHENTICATED_FORMS = frozenset({"authenticated", "render-authenticated"})
SIGNED_FORMS = frozenset({"signed", "render-signed"})
OPTIONAL_AUTH_FORMS = frozenset({"object"})


class AccessRefused(Exception):
    """The old route would have refused this request; `status`/`body()` are what it answered."""

    def __init__(self, status: int, code: str, message: str, *, error: str | None = None, http_status: int = 400):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.error = error or code
        self.http_status = http_status

    def body(self) -> dict[str, Any]:
        return {"statusCode": str(self.status), "code": self.code, "error": self.error, "message": self.message}


class GatewayRefused(AccessRefused):
    """The API gateway's own 401 (the request never reached Storage): `{"message", "hint"}`."""

    def __init__(self, message: str, hint: str):
        super().__init__(401, "gateway", message, error="Unauthorized", http_status=401)
        self.hint = hint

    def body(self) -> dict[str, Any]:
        return {"message": self.message, "hint": self.hint}


def no_such_bucket() -> AccessRefused:
    return AccessRefused(404, "NoSuchBucket", "Bucket not found", error="Bucket not found")


def no_such_key(*, http_status: int = 400) -> AccessRefused:
    return AccessRefused(404, "NoSuchKey", "Object not found", error="not_found", http_status=http_status)


def access_denied(message: str) -> AccessRefused:
    return AccessRefused(403, "AccessDenied", message, error="Unauthorized")


def internal_error() -> AccessRefused:
    """codes.ts InternalError (HTTP 500): Storage's answer to a failure that is not the caller's (here: no JWKS)."""
    return AccessRefused(500, "InternalError", "Internal server error", http_status=500)


@dataclass(frozen=True)
class AccessKeys:
    """What requests are checked against. Never printed: `repr` shows no secret."""

    jwt_secret: str | None
    secret_key: str | None = None
    roles: tuple[str, ...] = ("service_role",)
    # The public keys of the project's asymmetric JWT signing keys (ES256/RS256 tokens).
    jwks: "JwksCache | None" = None

    def __repr__(self) -> str:
        jwks = self.jwks.url if self.jwks is not None else None
        return f"AccessKeys(jwt_secret={'set' if self.jwt_secret else None}, secret_key={'set' if self.secret_key else None}, roles={self.roles!r}, jwks={jwks!r})"


@dataclass(frozen=True)
class Caller:
    """Who is asking: a verified role, or anonymous."""

    role: str | None  # None: anonymous

    @property
    def anonymous(self) -> bool:
        return self.role is None


def _verifying_key(header: Mapping[str, Any], secret: str | None, jwks: "JwksCache | None") -> tuple[str, Any]:
    """(algorithm, key) a token with this header is checked with; ValueError (jose's words) when none may.

    Raises migrate.jwks.JwksUnavailable when the JWKS is needed and cannot be had."""
    algorithm = header.get("alg")
    if algorithm == ALGORITHM:
        if not secret:
            raise ValueError("signature verification failed")  # no secret: nothing verifies (never an empty HMAC key)
        return algorithm, secret
    key_type = KEY_TYPE_OF_ALGORITHM.get(algorithm) if isinstance(algorithm, str) else None
    if key_type is None or jwks is None:
        raise ValueError(ALGORITHM_NOT_ALLOWED)
    kid = header.get("kid")
    found, keys = jwks.lookup(str(kid) if kid is not None else None, str(algorithm))
    if not any(key.kty == key_type for key in keys):
        # jwt.ts getJWTAlgorithms: an algorithm family is allowed only when the JWKS has a key of its type.
        raise ValueError(ALGORITHM_NOT_ALLOWED)
    if found is None:
        raise ValueError(_invalid_key(str(algorithm)))
    return str(algorithm), found.key


def _invalid_key(algorithm: str) -> str:
    # jose's words when Storage, finding no key for the token, hands it the secret's bytes instead.
    return f"Key for the {algorithm} algorithm must be one of type CryptoKey, KeyObject, or JSON Web Key. Received an instance of Uint8Array"


def verify_token(token: str, secret: str | None, jwks: "JwksCache | None" = None) -> dict[str, Any]:
    """Claims of a JWT Storage would accept; raises AccessRefused-ready messages as ValueError (jose's wording)."""
    if token.count(".") != 2:
        raise ValueError("Invalid Compact JWS")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:  # not JSON, a non-string kid, an unknown `crit` extension
        raise ValueError("JWS Protected Header is invalid") from None
    algorithm, key = _verifying_key(header, secret, jwks)
    try:
        return dict(jwt.decode(token, key, algorithms=[algorithm], options={"verify_aud": False}))
    except jwt.ExpiredSignatureError:
        raise ValueError('"exp" claim timestamp check failed') from None
    except jwt.ImmatureSignatureError:
        raise ValueError('"nbf" claim timestamp check failed') from None
    except jwt.InvalidSignatureError:
        raise ValueError("signature verification failed") from None
    except jwt.InvalidTokenError:
        raise ValueError("JWT Claims Set must be a top-level JSON object") from None
    except jwt.PyJWTError:
        # InvalidKeyError: a published key PyJWT will not use for this algorithm (its checks go beyond ours).
        raise ValueError(_invalid_key(algorithm)) from None


def request_token(headers: Mapping[str, str]) -> str:
    """The Bearer token, else the `apikey` header (what the Supabase gateway accepts)."""
    authorization = headers.get("authorization") or ""
    if authorization:
        return _BEARER.sub("", authorization, count=1).strip()
    return (headers.get("apikey") or "").strip()


def gateway(headers: Mapping[str, str], keys: AccessKeys) -> Caller | str:
    """What the API gateway passes on: the caller a new API key in `apikey` names, or the token Storage verifies.

    Raises GatewayRefused where the gateway answers itself."""
    authorization = (headers.get("authorization") or "").strip()
    apikey = (headers.get("apikey") or "").strip()
    if authorization:
        token = _BEARER.sub("", authorization, count=1).strip()
        if token.startswith(NEW_KEY_PREFIX) and not apikey:
            raise GatewayRefused("No API key found in request", "No `apikey` request header or url param was found.")
        return token  # a new key as Bearer is forwarded as it is and fails the JWT check
    if apikey.startswith(NEW_KEY_PREFIX):
        if keys.secret_key and hmac.compare_digest(apikey.encode(), keys.secret_key.encode()):
            return Caller(role="service_role")
        raise GatewayRefused("Invalid API key", "Double check your Supabase `anon` or `service_role` API key.")
    return apikey


def identify(token: str, keys: AccessKeys) -> Caller:
    """The caller a token names; raises ValueError (the verifier's message) when it does not verify."""
    if not token:
        raise ValueError("Invalid Compact JWS")
    if keys.secret_key and hmac.compare_digest(token.encode(), keys.secret_key.encode()):
        # sb_secret_ keys are not JWTs; the gateway treats them as service_role.
        return Caller(role="service_role")
    if not keys.jwt_secret and keys.jwks is None:
        raise ValueError("Invalid Compact JWS")
    claims = verify_token(token, keys.jwt_secret, keys.jwks)
    return Caller(role=str(claims.get("role") or "anon"))


def check_access(
    *,
    form: str,
    bucket: str,
    key: str,
    public: bool,
    headers: Mapping[str, str],
    query: Mapping[str, str],
    keys: AccessKeys,
) -> None:
    """Return when the old route would have served `bucket/key` to this request; raise AccessRefused otherwise."""
    if form in PUBLIC_FORMS:
        if not public:
            raise no_such_bucket()
        return
    if form in SIGNED_FORMS:
        token = query.get("token")
        if not token:
            raise AccessRefused(400, "Bad Request", "querystring must have required property 'token'", error="Bad Request")
        try:
            claims = verify_token(token, keys.jwt_secret, keys.jwks)
        except ValueError as err:
            raise AccessRefused(400, "InvalidJWT", str(err)) from None
        if claims.get("url") != f"{bucket}/{key}":
            # codes.ts InvalidSignature (older getSignedObject.ts said "The url do not match the signature").
            raise AccessRefused(400, "InvalidSignature", "Invalid signature")
        return
    if public and form in OPTIONAL_AUTH_FORMS:
        # A bad token only makes this route anonymous, and anyone may read a public bucket:
        # who is asking does not change the answer, so no JWT (or JWKS fetch) is needed.
        gateway(headers, keys)
        return
    passed = gateway(headers, keys)
    try:
        if isinstance(passed, Caller):
            caller = passed
        elif passed.startswith(NEW_KEY_PREFIX):
            raise ValueError("Invalid Compact JWS")  # Storage's jose: not a JWT
        else:
            caller = identify(passed, keys)
    except ValueError as err:
        if form in AUTHENTICATED_FORMS:
            raise access_denied(str(err)) from None
        caller = Caller(role=None)
    if public:
        return
    if caller.anonymous:
        raise no_such_bucket()
    if caller.role not in keys.roles:
        raise no_such_key()
