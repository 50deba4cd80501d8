"""The public keys of a Supabase project's asymmetric JWT signing keys, fetched from its JWKS and cached.

Supabase Auth publishes the public half of every trusted asymmetric signing
key (ES256, RS256; standby, in use and previously used) at
`https://<ref>.supabase.co/auth/v1/.well-known/jwks.json`; the gateway caches
that answer for 10 minutes and the client libraries another 10
(supabase/supabase apps/docs/content/guides/auth/signing-keys.mdx, "Public
key discovery and caching"). Symmetric keys (the legacy JWT secret, shared
secret signing keys) are never in it.

`JwksCache` keeps one copy of the set for `MAX_AGE` seconds, so a revoked key
stops being trusted within about that long after Supabase drops it, and
refetches early when a token names a `kid` it does not hold (a rotation to a
key newer than the cached set), at most once per `REFETCH_INTERVAL` so a
stream of made-up kids cannot turn every request into a fetch. Transient
fetch faults (timeouts, resets, 5xx, 429) are retried with the project's one
retry policy (`migrate.retry`). When the set cannot be fetched and no copy
younger than `MAX_AGE + STALE_GRACE` is held, `JwksUnavailable` is raised and
the request that needed it fails; the server stays up.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import jwt

from migrate.errors import MigrateError
from migrate.retry import call_with_retries

log = logging.getLogger(__name__)

FETCH_ATTEMPTS = 3

# The JWK `kty` each JWS algorithm family verifies with (RFC 7518 section 3.1).
KEY_TYPE_OF_ALGORITHM = {
    **{alg: "RSA" for alg in ("RS256", "RS384", "RS512")},
    **{alg: "EC" for alg in ("ES256", "ES384", "ES512")},
    "EdDSA": "OKP",
}
# The curves an algorithm may use (RFC 7518 section 3.4, RFC 8037 section 3.1); RSA keys have none.
CURVES_OF_ALGORITHM = {"ES256": ("P-256",), "ES384": ("P-384",), "ES512": ("P-521",), "EdDSA": ("Ed25519", "Ed448")}


class JwksUnavailable(MigrateError):
    """The JWKS could not be fetched (after retries) and no usable copy is held."""


@dataclass(frozen=True)
class PublicKey:
    """One verifying key of the set: its JWK metadata and the key object PyJWT verifies with."""

    kid: str | None
    kty: str
    alg: str | None  # the JWK's own `alg`, when it names one
    crv: str | None  # EC and OKP keys' curve
    key: Any

    def verifies(self, algorithm: str) -> bool:
        """True when this key may check a token signed with `algorithm`: its type (and curve) fit, and its alg if it names one."""
        if KEY_TYPE_OF_ALGORITHM.get(algorithm) != self.kty or self.alg not in (None, algorithm):
            return False
        return algorithm not in CURVES_OF_ALGORITHM or self.crv in CURVES_OF_ALGORITHM[algorithm]


def parse_jwks(document: Any, *, source: str) -> tuple[PublicKey, ...]:
    """The asymmetric public keys of a JWKS document; keys PyJWT cannot use are skipped with a warning."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JwksUnavailable(f"{source}: not a JWKS (expected a JSON object with a \"keys\" list)")
    keys = []
    for index, entry in enumerate(document["keys"]):
        if not isinstance(entry, dict) or entry.get("kty") not in ("RSA", "EC", "OKP"):
            continue  # symmetric or malformed: never a public key
        if entry.get("use") not in (None, "sig"):
            continue
        try:
            parsed = jwt.PyJWK(entry)
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError) as err:
            # The message names the key's position and kid only, never its material.
            log.warning("%s: key %d (kid %r) skipped: %s", source, index, entry.get("kid"), type(err).__name__)
            continue
        kid, alg, crv = entry.get("kid"), entry.get("alg"), entry.get("crv")
        keys.append(
            PublicKey(
                kid=str(kid) if kid is not None else None, kty=str(entry["kty"]), alg=str(alg) if alg else None, crv=str(crv) if crv else None, key=parsed.key
            )
        )
    return tuple(keys)


class JwksCache:
    """The key set at `url`, fetched on first use, kept `MAX_AGE` seconds, refetched for unknown kids."""

    #: Seconds a fetched set is used before it is fetched again: the client libraries' 10 minutes.
    MAX_AGE = 600.0
    #: A failed fetch, or an unknown kid, fetches the set again at most this often.
    REFETCH_INTERVAL = 30.0
    #: How long past MAX_AGE a copy is still used while the endpoint cannot be reached.
    STALE_GRACE = 3600.0

    def __init__(self, url: str, *, fetch: Callable[[str], Any] | None = None, attempts: int = FETCH_ATTEMPTS):
        from migrate.stores.supabase_jwks import fetch_jwks_document

        self.url = url
        self.attempts = attempts
        self._fetch = fetch or fetch_jwks_document
        self._clock = time.monotonic
        self._lock = threading.Lock()
        self._keys: tuple[PublicKey, ...] = ()
        self._fetched_at: float | None = None  # last successful fetch
        self._tried_at: float | None = None  # last attempt, successful or not

    def __repr__(self) -> str:
        return f"JwksCache({self.url!r}, keys={len(self._keys)})"

    def keys(self) -> tuple[PublicKey, ...]:
        """The current set (fetched when older than MAX_AGE); raises JwksUnavailable."""
        with self._lock:
            now = self._clock()
            if self._fetched_at is not None and now - self._fetched_at < self.MAX_AGE:
                return self._keys
            if self._tried_at is None or now - self._tried_at >= self.REFETCH_INTERVAL:
                self._refresh(required=True)
            elif not self._usable(now):
                # The last attempt failed moments ago: fail fast instead of waiting on retries again.
                raise JwksUnavailable(f"cannot fetch the JWKS at {self.url} (failed {now - self._tried_at:.0f}s ago)")
            return self._keys

    def _usable(self, now: float) -> bool:
        return self._fetched_at is not None and now - self._fetched_at < self.MAX_AGE + self.STALE_GRACE

    def lookup(self, kid: str | None, algorithm: str) -> tuple[PublicKey | None, tuple[PublicKey, ...]]:
        """(the key for this token header, the set it was looked up in); refetches once for an unknown kid.

        Supabase Storage's rule (src/internal/auth/jwt.ts findJWKFromHeader): the
        first key of the algorithm's key type whose kid equals the token's, or
        with no kid when the token has none.
        """
        keys = self.keys()
        found = _select(keys, kid, algorithm)
        if found is not None:
            return found, keys
        with self._lock:
            if self._tried_at is None or self._clock() - self._tried_at >= self.REFETCH_INTERVAL:
                # A key newer than our copy (a rotation); a failed refetch keeps the copy we have.
                self._refresh(required=False)
            keys = self._keys
        return _select(keys, kid, algorithm), keys

    def _refresh(self, *, required: bool) -> None:
        """Fetch the set (lock held). On failure keep the copy while it is within the grace, else raise when `required`."""
        self._tried_at = self._clock()
        try:
            document = call_with_retries(lambda: self._fetch(self.url), max_attempts=self.attempts, max_wait=2.0)
            keys = parse_jwks(document, source=self.url)
        except (MigrateError, OSError) as err:
            usable = self._usable(self._clock())
            log.warning("JWKS %s: cannot fetch (%s)%s", self.url, err, "; using the copy fetched before" if usable else "")
            if required and not usable:
                raise JwksUnavailable(f"cannot fetch the JWKS: {err}") from None
            return
        self._keys = keys
        self._fetched_at = self._tried_at
        log.info("JWKS %s: %d signing key(s)", self.url, len(keys))


def _select(keys: tuple[PublicKey, ...], kid: str | None, algorithm: str) -> PublicKey | None:
    for key in keys:
        same_kid = key.kid == kid if kid is not None else key.kid is None
        if same_kid and key.verifies(algorithm):
            return key
    return None
