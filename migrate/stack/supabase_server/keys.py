"""The project's keys besides the legacy JWTs: `sb_secret_`/`sb_publishable_`, S3 access keys, a JWT signing key.

A hosted project generates these independently of its JWT secret. The
bundled server derives them from the JWT secret (HMAC-SHA256 with a label)
so that the process, `launch()` and `migrate stack env` agree on them
without another secret to pass around or store; they are as unguessable
as the JWT secret itself.

Formats (supabase/supabase apps/docs/content/guides/api/api-keys.mdx):
secret keys `sb_secret_...`, publishable keys `sb_publishable_...`.
S3 access keys (apps/docs/content/guides/storage/s3/authentication.mdx):
an access key id and a secret access key the project generates; hosted
Supabase shows a 32-hex-digit id and a 64-hex-digit secret.
The asymmetric JWT signing key (apps/docs/content/guides/auth/signing-keys.mdx):
an ES256 (NIST P-256) key with a UUID `kid`, whose public half the project
publishes in its JWKS at /auth/v1/.well-known/jwks.json.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import uuid
from dataclasses import dataclass
from typing import Any

# The S3 endpoint signs with the project's region (config.ts storageS3Region);
# us-east-1 is hosted Supabase's "East US (North Virginia)", the Americas
# general region (supabase/supabase apps/docs/content/guides/platform/regions.mdx).
DEFAULT_S3_REGION = "us-east-1"
SECRET_KEY_PREFIX = "sb_secret_"
PUBLISHABLE_KEY_PREFIX = "sb_publishable_"
NEW_KEY_PREFIX = "sb_"


def _derive(jwt_secret: str, label: str) -> bytes:
    return hmac.new(jwt_secret.encode(), label.encode(), hashlib.sha256).digest()


def _urlsafe(raw: bytes, length: int) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")[:length]


@dataclass(frozen=True)
class ProjectKeys:
    """The non-JWT keys of one bundled project."""

    secret_key: str
    publishable_key: str
    s3_access_key_id: str
    s3_secret_access_key: str

    def __repr__(self) -> str:  # never print the keys themselves
        return "ProjectKeys(...)"


def project_keys(jwt_secret: str) -> ProjectKeys:
    """The keys the server started with `jwt_secret` accepts."""
    return ProjectKeys(
        secret_key=SECRET_KEY_PREFIX + _urlsafe(_derive(jwt_secret, "sb_secret"), 32),
        publishable_key=PUBLISHABLE_KEY_PREFIX + _urlsafe(_derive(jwt_secret, "sb_publishable"), 32),
        s3_access_key_id=_derive(jwt_secret, "s3_access_key_id").hex()[:32],
        s3_secret_access_key=_derive(jwt_secret, "s3_secret_access_key").hex(),
    )


def is_new_api_key(value: str) -> bool:
    """True for `sb_secret_...` / `sb_publishable_...` style keys (not JWTs)."""
    return value.startswith(NEW_KEY_PREFIX)


@dataclass(frozen=True)
class SigningKey:
    """The project's ES256 JWT signing key: `private` signs access tokens, `public_jwk()` is what the JWKS lists."""

    kid: str
    private: Any  # cryptography's EllipticCurvePrivateKey

    def __repr__(self) -> str:  # never print the key itself
        return f"SigningKey(kid={self.kid!r})"

    def public_jwk(self) -> dict[str, Any]:
        """The key as Supabase Auth's JWKS lists it (public members only)."""
        from jwt.algorithms import ECAlgorithm

        jwk = ECAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {"alg": "ES256", "crv": jwk["crv"], "ext": True, "key_ops": ["verify"], "kid": self.kid, "kty": "EC", "use": "sig", "x": jwk["x"], "y": jwk["y"]}


@functools.lru_cache(maxsize=8)  # derived on every JWKS answer and minted token otherwise
def signing_key(jwt_secret: str) -> SigningKey:
    """The ES256 signing key of the server started with `jwt_secret` (a P-256 scalar derived from it)."""
    from cryptography.hazmat.primitives.asymmetric import ec

    # The P-256 group order: a derived scalar in [1, order - 1] is a valid private key.
    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    scalar = int.from_bytes(_derive(jwt_secret, "jwt_signing_key_es256"), "big") % (order - 1) + 1
    kid = str(uuid.UUID(bytes=_derive(jwt_secret, "jwt_signing_key_kid")[:16], version=4))
    return SigningKey(kid=kid, private=ec.derive_private_key(scalar, ec.SECP256R1()))
