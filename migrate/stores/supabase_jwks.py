"""GET a JWKS document (Supabase Auth's /auth/v1/.well-known/jwks.json) over HTTP; `migrate.jwks` caches and parses it.

Faults worth another attempt (transport errors, timeouts, 5xx, 429 with its
Retry-After) are TransientError, for the one retry policy (`migrate.retry`);
any other answer that is not a JSON 200 is a plain MigrateError.
"""

from __future__ import annotations

from typing import Any

import httpx

from migrate.errors import MigrateError, TransientError
from migrate.retry import parse_retry_after

FETCH_TIMEOUT = 10.0


def fetch_jwks_document(url: str) -> Any:
    """The JSON document at `url`."""
    try:
        answer = httpx.get(url, timeout=FETCH_TIMEOUT, headers={"Accept": "application/json"}, follow_redirects=True)
    except httpx.TransportError as err:
        raise TransientError(f"{url}: {type(err).__name__}") from err
    if answer.status_code == 429 or answer.status_code >= 500:
        raise TransientError(
            f"{url}: HTTP {answer.status_code}", throttled=answer.status_code == 429, retry_after=parse_retry_after(answer.headers.get("retry-after"))
        )
    if answer.status_code != 200:
        raise MigrateError(f"{url}: HTTP {answer.status_code}")
    try:
        return answer.json()
    except ValueError:
        raise MigrateError(f"{url}: the answer is not JSON") from None
