"""AWS Signature Version 4, checked the way Supabase Storage's S3 endpoint checks it.

github.com/supabase/storage src/storage/protocols/s3/signature-v4.ts: the
`Authorization: AWS4-HMAC-SHA256 Credential=<key>/<date>/<region>/s3/aws4_request,
SignedHeaders=..., Signature=...` header, or the presigned `X-Amz-*` query; the
canonical URI is the request path as sent (with the /storage/v1 prefix the
gateway strips and the server puts back); the query is re-encoded per RFC 3986
and sorted; the payload hash is the client's `x-amz-content-sha256` (or
UNSIGNED-PAYLOAD for a presigned GET); the server signs with its own region
(enforceRegion), so a client configured for another region gets
SignatureDoesNotMatch.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
import urllib.parse
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
UNSIGNED = "UNSIGNED-PAYLOAD"
SERVICE = "s3"
# signature-v4.ts ALWAYS_UNSIGNABLE_HEADERS
_UNSIGNABLE = {
    "authorization", "connection", "expect", "from", "keep-alive", "max-forwards", "pragma", "referer", "te",
    "trailer", "transfer-encoding", "upgrade", "user-agent", "x-amzn-trace-id",
}
_SPACES = re.compile(r"\s+")
MAX_CLOCK_SKEW = 15 * 60  # AWS: RequestTimeTooSkewed beyond 15 minutes


class SignatureError(Exception):
    """A request that does not authenticate: an S3 error code, status and message."""

    def __init__(self, code: str, status: int, message: str):
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message


@dataclass(frozen=True)
class ClientSignature:
    """What the client signed with."""

    access_key: str
    short_date: str
    region: str
    service: str
    signed_headers: list[str]
    signature: str
    long_date: str
    content_sha256: str | None
    presigned: bool


def _rfc3986(value: str) -> str:
    return urllib.parse.quote(value, safe="-_.~")


def parse(headers: Mapping[str, str], query: list[tuple[str, str]]) -> ClientSignature:
    """The client's signature from the Authorization header or the presigned query."""
    authorization = headers.get("authorization") or ""
    params = dict(query)
    if authorization:
        if not authorization.startswith(ALGORITHM + " "):
            raise SignatureError("InvalidArgument", 400, "Unsupported authorization type")
        fields = {}
        for part in authorization[len(ALGORITHM) + 1 :].split(","):
            name, _, value = part.strip().partition("=")
            fields[name] = value
        credential, signed, signature = fields.get("Credential"), fields.get("SignedHeaders"), fields.get("Signature")
        long_date = headers.get("x-amz-date") or ""
        presigned = False
    elif "X-Amz-Signature" in params:
        credential, signed, signature = params.get("X-Amz-Credential"), params.get("X-Amz-SignedHeaders"), params["X-Amz-Signature"]
        long_date = params.get("X-Amz-Date") or ""
        presigned = True
        expires = params.get("X-Amz-Expires")
        if expires is not None:
            try:
                seconds = int(expires)
                issued = _timestamp(long_date)
            except ValueError as err:
                raise SignatureError("AuthorizationQueryParametersError", 400, "Invalid expiration") from err
            if issued + seconds < time.time():
                raise SignatureError("AccessDenied", 403, "Request has expired")
    else:
        raise SignatureError("AccessDenied", 403, "Missing authorization header")
    if not credential or not signed or not signature or not long_date:
        raise SignatureError("AuthorizationHeaderMalformed", 400, "Invalid signature format")
    parts = credential.split("/")
    if len(parts) != 5:
        raise SignatureError("AuthorizationHeaderMalformed", 400, "Invalid credentials")
    access_key, short_date, region, service, _ = parts
    content_sha = headers.get("x-amz-content-sha256") or params.get("X-Amz-Content-Sha256")
    return ClientSignature(
        access_key=access_key, short_date=short_date, region=region, service=service,
        signed_headers=signed.split(";"), signature=signature, long_date=long_date,
        content_sha256=content_sha, presigned=presigned,
    )


def _signing_key(secret: str, short_date: str, region: str) -> bytes:
    key = hmac.new(f"AWS4{secret}".encode(), short_date.encode(), hashlib.sha256).digest()
    for part in (region, SERVICE, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


@dataclass(frozen=True)
class SignedRequest:
    """What a signature covers: the method, the path as sent, the decoded query, the lowercased headers."""

    method: str
    raw_path: str
    query: list[tuple[str, str]]
    headers: Mapping[str, Any]


def mismatch() -> SignatureError:
    """S3's answer to a signature that does not verify."""
    return SignatureError(
        "SignatureDoesNotMatch",
        403,
        "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
    )


def _timestamp(long_date: str) -> float:
    return datetime.strptime(long_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc).timestamp()


def expected_signature(client: ClientSignature, request: SignedRequest, *, secret: str, region: str) -> str:
    """The signature the server computes for this request (signature-v4.ts `sign`)."""
    method, raw_path, query, headers = request.method, request.raw_path, request.query, request.headers
    canonical_query = "&".join(
        f"{_rfc3986(name)}={_rfc3986(value)}" for name, value in sorted(query) if name != "X-Amz-Signature"
    )
    lines = []
    for name in sorted(client.signed_headers):
        if name in _UNSIGNABLE:
            continue
        value = headers.get(name)
        if value is None:
            continue
        lines.append(f"{name}:{_SPACES.sub(' ', str(value).strip())}")
    if client.presigned and method == "GET":
        payload = UNSIGNED
    else:
        payload = client.content_sha256 or EMPTY_SHA256
    canonical = "\n".join(
        [method, raw_path or "/", canonical_query, "\n".join(lines) + "\n", ";".join(sorted(client.signed_headers)), payload]
    )
    scope = f"{client.short_date}/{region}/{SERVICE}/aws4_request"
    to_sign = "\n".join([ALGORITHM, client.long_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    return hmac.new(_signing_key(secret, client.short_date, region), to_sign.encode(), hashlib.sha256).hexdigest()


def verify(client: ClientSignature, request: SignedRequest, *, access_key: str, secret: str, region: str) -> None:
    """Raise SignatureError unless the request was signed with these credentials."""
    if not hmac.compare_digest(client.access_key, access_key):
        raise SignatureError("InvalidAccessKeyId", 403, "The Access Key Id you provided does not exist in our records.")
    try:
        signed_at = _timestamp(client.long_date)
    except ValueError as err:
        raise SignatureError("AccessDenied", 403, "No date provided") from err
    if not client.presigned and abs(signed_at - time.time()) > MAX_CLOCK_SKEW:
        raise SignatureError(
            "RequestTimeTooSkewed", 403, "The difference between the request time and the server's time is too large."
        )
    if not hmac.compare_digest(expected_signature(client, request, secret=secret, region=region), client.signature):
        raise mismatch()


class ChunkVerifier:
    """Checks the chunk signatures of a STREAMING-AWS4-HMAC-SHA256-PAYLOAD body, each chained on the last.

    String to sign per chunk (AWS sigv4-streaming): AWS4-HMAC-SHA256-PAYLOAD,
    the request date, the scope, the previous signature (the seed is the
    request's), SHA-256 of "", SHA-256 of the chunk data.
    """

    def __init__(self, client: ClientSignature, *, secret: str, region: str):
        self._client = client
        self._key = _signing_key(secret, client.short_date, region)
        self._scope = f"{client.short_date}/{region}/{SERVICE}/aws4_request"
        self._previous = client.signature

    def check(self, data_sha256: str, signature: str | None) -> None:
        """Raise SignatureError unless `signature` signs this chunk (data hashed as `data_sha256`)."""
        to_sign = "\n".join(
            ["AWS4-HMAC-SHA256-PAYLOAD", self._client.long_date, self._scope, self._previous, EMPTY_SHA256, data_sha256]
        )
        expected = hmac.new(self._key, to_sign.encode(), hashlib.sha256).hexdigest()
        if signature is None or not hmac.compare_digest(expected, signature):
            raise mismatch()
        self._previous = signature
