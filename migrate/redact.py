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

# What a credential looks like when someone pastes one into a file.
_CREDENTIAL_SHAPES = (
    (re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), "a JWT"),
    (re.compile(r"\bsb_secret_[A-Za-z0-9_-]{8,}"), "a Supabase secret key"),
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), "an AWS access key id"),
)


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


def credential_shape(text: str, *, register: bool = False) -> str | None:
    """'a JWT', 'a Supabase secret key' or 'an AWS access key id' when `text` holds one (registered with `register`)."""
    found = [(pattern, what) for pattern, what in _CREDENTIAL_SHAPES if pattern.search(text)]
    for pattern, _ in found if register else ():
        for match in pattern.finditer(text):
            register_secret(match.group())
    return found[0][1] if found else None


def url_password_span(url: str) -> tuple[int, int] | None:
    """Where the password of `scheme://user:password@host/...` sits in `url`, if it has one."""
    scheme = re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", url)
    if scheme is None:
        return None
    end = min([len(url)] + [found for found in (url.find(stop, scheme.end()) for stop in "/?#") if found != -1])
    at = url.rfind("@", scheme.end(), end)
    colon = url.find(":", scheme.end(), at) if at != -1 else -1
    return None if colon == -1 else (colon + 1, at)


def mask_url_password(url: str) -> str:
    """`url` with the password (`user:password@` or `?password=`) replaced by `***`."""
    span = url_password_span(url)
    url = url if span is None else url[: span[0]] + MASK + url[span[1] :]
    return re.sub(r"([?&]password=)[^&#]*", r"\1" + MASK, url)
