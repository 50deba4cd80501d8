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

#: Seconds per attempt (3 attempts): requests that need the set wait on the fetch.
FETCH_TIMEOUT = 5.0
MAX_RETRY_AFTER = 5.0


def fetch_jwks_document(url: str) -> Any:
    """The JSON document at `url`."""
    try:
        answer = httpx.get(url, timeout=FETCH_TIMEOUT, headers={"Accept": "application/json"}, follow_redirects=True)
    except httpx.TransportError as err:
        raise TransientError(f"{url}: {type(err).__name__}") from err
    except httpx.HTTPError as err:  # not transient (TooManyRedirects, an invalid URL): the request fails cleanly, the route stays up
        raise MigrateError(f"{url}: {type(err).__name__}") from err
    if answer.status_code == 429 or answer.status_code >= 500:
        # A request is waiting on this answer: honour Retry-After, but no longer than MAX_RETRY_AFTER.
        asked = parse_retry_after(answer.headers.get("retry-after"))
        raise TransientError(
            f"{url}: HTTP {answer.status_code}", throttled=answer.status_code == 429, retry_after=min(asked, MAX_RETRY_AFTER) if asked is not None else None
        )
    if answer.status_code != 200:
        raise MigrateError(f"{url}: HTTP {answer.status_code}")
    try:
        return answer.json()
    except ValueError:
        raise MigrateError(f"{url}: the answer is not JSON") from None
