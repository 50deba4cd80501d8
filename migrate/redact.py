"""Keep secrets out of logs, manifests, reports and error messages.

Secrets are registered as they are read (`register_secret`), and
`redact` replaces them, plus anything shaped like a credential (JWTs, URL
passwords, `key=...` pairs), with `***`. The CLI runs every message it prints
through `redact` as a last line of defence; code should not put secrets in
messages in the first place.
"""

from __future__ import annotations

import re
import threading

_lock = threading.Lock()
_secrets: set[str] = set()

# Three base64url segments separated by dots: a JWT.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}")
# scheme://user:password@host -> scheme://user:***@host
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*:)(?P<secret>[^@\s/]+)(?P<tail>@)")
# token=..., apikey: ..., secret_access_key=..., password=...
_KEY_VALUE = re.compile(
    r"(?P<head>(?:token|apikey|api_key|secret|secret_access_key|password|passwd|signature|X-Amz-Signature)"
    r"[\"']?\s*[=:]\s*[\"']?)(?P<secret>[^\s\"'&,;]+)",
    re.IGNORECASE,
)

MASK = "***"


def register_secret(value: str | None) -> None:
    """Remember a secret so `redact` can mask it wherever it shows up."""
    if value and len(value) >= 4:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """Return `text` with every known or credential-shaped secret masked."""
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, MASK)
    text = _JWT.sub(MASK, text)
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}{m['tail']}", text)
    text = _KEY_VALUE.sub(lambda m: f"{m['head']}{MASK}", text)
    return text
