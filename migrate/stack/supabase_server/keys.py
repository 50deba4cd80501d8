"""The project's API keys besides the legacy JWTs: `sb_secret_`/`sb_publishable_` and S3 access keys.

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
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

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
