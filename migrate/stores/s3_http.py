"""A lean S3 client for the data path: GetObject (ranged), PutObject, UploadPart.

Why: botocore spends 1.5-2 ms of CPU on every request (endpoint
resolution, parameter validation, event hooks, XML/shape handling). For
thousands of small objects that is the bottleneck on a 2-core machine where
the client's CPU is taken from the server. These three calls are simple
enough to do over `http.client` with SigV4 signed here, at a fraction of the
cost. Everything else (listing, HEAD, multipart create/complete/abort,
ListParts) stays on boto3 in `stores/s3.py`.

Correctness is unchanged: the payload hash we sign is the body's real
SHA-256 (computed while streaming anyway), Content-MD5 and
x-amz-checksum-* are sent as before, and errors go through the same
`translate_error` table as boto3's, by wrapping them in botocore's
`ClientError` shape.

SigV4 reference: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import http.client
import ssl
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Callable, Iterator, Mapping

import botocore.exceptions
from botocore.credentials import Credentials

from migrate.errors import IntegrityError, MigrateError, ObjectError, TransientError
from migrate.stores.base import range_header
from migrate.stores.http_exchange import exchange
from migrate.stores.s3_resolve import BucketAddress, S3Resolution

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
#: How much one `readinto` asks the socket for (the loop yields slices this big for hashing and rate limits).
_READ_SLICE = 1024 * 1024
_SAFE = "-_.~"


def _uri_encode(text: str, *, keep_slash: bool) -> str:
    return urllib.parse.quote(text, safe=_SAFE + ("/" if keep_slash else ""))


class SigV4Signer:
    """Signs S3 requests; caches the derived signing key per day and region."""

    def __init__(self, credentials: Callable[[], Credentials]):
        self._credentials = credentials
        self._key_cache: tuple[str, str, str, str, bytes] | None = None  # (date, region, service, access key, key)

    def _signing_key(self, date: str, region: str, service: str, secret: str, access_key: str) -> bytes:
        cached = self._key_cache
        if cached and cached[:4] == (date, region, service, access_key):
            return cached[4]
        key = hmac.new(f"AWS4{secret}".encode(), date.encode(), hashlib.sha256).digest()
        for part in (region, service, "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        self._key_cache = (date, region, service, access_key, key)
        return key

    def sign(
        self, method: str, host: str, path: str, query: str, headers: dict[str, str], payload_hash: str, *, region: str, service: str = "s3"
    ) -> None:
        """Add x-amz-date, x-amz-content-sha256 (and the session token) and Authorization to `headers`."""
        creds = self._credentials()
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())  # a quarter of datetime.now().strftime's cost
        date = amz_date[:8]
        headers["host"] = host
        headers["x-amz-date"] = amz_date
        headers["x-amz-content-sha256"] = payload_hash
        if creds.token:
            headers["x-amz-security-token"] = creds.token
        signed = sorted((name.lower(), " ".join(str(value).split())) for name, value in headers.items())
        signed_names = ";".join(name for name, _ in signed)
        canonical = "\n".join(
            [
                method,
                path,
                query,
                "".join(f"{name}:{value}\n" for name, value in signed),
                signed_names,
                payload_hash,
            ]
        )
        scope = f"{date}/{region}/{service}/aws4_request"
        to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        key = self._signing_key(date, region, service, creds.secret_key, creds.access_key)
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["Authorization"] = f"AWS4-HMAC-SHA256 Credential={creds.access_key}/{scope}, SignedHeaders={signed_names}, Signature={signature}"
        headers.pop("host")  # http.client sends Host itself


@dataclass(frozen=True)
class PreparedRequest:
    """A signed request, ready to send: where to, the request target and the headers."""

    method: str
    address: BucketAddress
    path: str
    query: str
    headers: dict[str, str]

    @property
    def url(self) -> str:
        return self.address.url(self.path, self.query)


class S3HttpClient:
    """GET/PUT objects and parts over keep-alive `http.client` connections, one per thread.

    Where requests go (endpoint, addressing, region), through which proxy and
    with which TLS trust comes from `resolution`: botocore's own answer for
    the store's boto3 client (see `s3_resolve.py`).
    """

    def __init__(
        self,
        *,
        resolution: S3Resolution,
        credentials: Callable[[], Credentials],
        timeout: float = 60.0,
        translate: Callable[[Exception, str], MigrateError],
    ):
        self.resolution = resolution
        self.timeout = timeout
        self._translate = translate
        self.signer = SigV4Signer(credentials)
        # Keep-alive connections, one pool per thread. Not a threading.local: CPython 3.11 can deadlock
        # when the garbage collector frees a threading.local while other threads run (its dealloc takes
        # an interpreter lock while holding the GIL); a Dask worker hung that way, every thread in take_gil.
        self._pools: dict[int, dict[tuple[str, str], http.client.HTTPConnection]] = {}
        self._pools_lock = threading.Lock()

    @functools.cached_property
    def _ssl(self) -> ssl.SSLContext:
        """The TLS context, made on the first HTTPS connection: loading the trust store costs ~26 ms of CPU,
        which a plain-HTTP endpoint (and `migrate --help`) should not pay. Two threads racing here build two
        equal contexts; one is kept."""
        verify = self.resolution.verify
        if verify is False:
            return ssl._create_unverified_context()  # the user turned verification off (verify=False), as in botocore
        # A CA bundle replaces the system's trust store, as it does for botocore (urllib3 `ca_certs`).
        return ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)

    # -- connections -------------------------------------------------------
    def _pool(self) -> dict[tuple[str, str], http.client.HTTPConnection]:
        """This thread's connections (a thread that reuses a finished thread's id inherits its idle ones)."""
        ident = threading.get_ident()
        pool = self._pools.get(ident)
        if pool is None:
            with self._pools_lock:
                pool = self._pools.setdefault(ident, {})
        return pool

    def close(self) -> None:
        """Close every thread's connections."""
        with self._pools_lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            for conn in list(pool.values()):
                conn.close()

    def _connection(self, address: BucketAddress) -> http.client.HTTPConnection:
        pool = self._pool()
        slot = (address.scheme, address.host)
        conn = pool.get(slot)
        if conn is None:
            conn = self._open(address)
            pool[slot] = conn
        return conn

    def _open(self, address: BucketAddress) -> http.client.HTTPConnection:
        proxy = self.resolution.proxy_for(address.url("/"))
        https = address.scheme == "https"
        if proxy is None:
            if https:
                return http.client.HTTPSConnection(address.host, timeout=self.timeout, context=self._ssl)
            return http.client.HTTPConnection(address.host, timeout=self.timeout)
        parsed = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        proxy_headers: dict[str, str] = {}
        if parsed.username:
            credentials = f"{urllib.parse.unquote(parsed.username)}:{urllib.parse.unquote(parsed.password or '')}"
            proxy_headers["Proxy-Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode("ascii")
        proxy_host = parsed.hostname or ""
        proxy_port = parsed.port or (443 if parsed.scheme == "https" else 8080)
        if https:
            # HTTPS through a proxy: CONNECT tunnel, TLS with the real host inside it.
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(proxy_host, proxy_port, timeout=self.timeout, context=self._ssl)
            conn.set_tunnel(address.host, headers=proxy_headers or None)
            return conn
        conn = _ForwardingConnection(proxy_host, proxy_port, timeout=self.timeout)
        conn.proxy_headers = proxy_headers
        return conn

    def _drop(self, address: BucketAddress) -> None:
        pool = self._pool()
        conn = pool.pop((address.scheme, address.host), None)
        if conn is not None:
            conn.close()

    def prepare(
        self,
        method: str,
        bucket: str,
        key: str,
        *,
        query: Mapping[str, str] | None = None,
        headers: Mapping[str, str],
        payload_hash: str,
        address: BucketAddress | None = None,
    ) -> PreparedRequest:
        """Address and sign one request (nothing is sent): what `_request` sends, and what tests compare with botocore's."""
        address = address or self.resolution.address(bucket)
        path = f"{address.prefix}/{_uri_encode(key, keep_slash=True)}"
        query_string = "&".join(
            f"{_uri_encode(k, keep_slash=False)}={_uri_encode(v, keep_slash=False)}" for k, v in sorted((query or {}).items())
        )
        signed = dict(headers)
        self.signer.sign(method, address.host, path, query_string, signed, payload_hash, region=address.region, service=address.service)
        return PreparedRequest(method, address, path, query_string, signed)

    def _request(
        self, method: str, bucket: str, key: str, *, query: Mapping[str, str] | None = None, headers: dict[str, str], body: Any = None, payload_hash: str, what: str
    ) -> tuple[http.client.HTTPResponse, BucketAddress]:
        _check_header_text(headers, what)
        prepared = self.prepare(method, bucket, key, query=query, headers=headers, payload_hash=payload_hash)
        response = self._send(prepared, body, what)
        if response.status >= 300:
            payload = self._error_body(response, prepared.address, what)
            region = response.getheader("x-amz-bucket-region")
            if response.status in (301, 400) and region and region != prepared.address.region:
                # The bucket is in another region (301 PermanentRedirect, or a
                # 400 naming the right region): resolve it there and resend once,
                # as botocore's S3RegionRedirectorv2 does.
                address = self.resolution.redirect(bucket, region)
                prepared = self.prepare(method, bucket, key, query=query, headers=headers, payload_hash=payload_hash, address=address)
                response = self._send(prepared, body, what)
                if response.status < 300:
                    return response, prepared.address
                payload = self._error_body(response, prepared.address, what)
            raise self._translate(_client_error(response, payload, method), what)
        return response, prepared.address

    def _error_body(self, response: http.client.HTTPResponse, address: BucketAddress, what: str) -> bytes:
        """Read an error answer's body; leave the connection reusable only when that is safe."""
        return self._read_body(response, address, f"{what}: S3 error answer cut off (HTTP {response.status}")

    def _read_body(self, response: http.client.HTTPResponse, address: BucketAddress, cut_off: str) -> bytes:
        """A whole (small) answer body; the connection is reused only when that is safe."""
        try:
            payload = response.read()
        except (OSError, http.client.HTTPException) as err:
            # A truncated body is a connection fault like any other: retried, never "unexpected IncompleteRead".
            self._drop(address)
            raise TransientError(f"{cut_off}, {type(err).__name__})") from err
        if response.will_close:
            self._drop(address)
        return payload

    def _send(self, prepared: PreparedRequest, body: Any, what: str) -> http.client.HTTPResponse:
        address = prepared.address
        target = f"{prepared.path}?{prepared.query}" if prepared.query else prepared.path
        conn = self._connection(address)
        headers = prepared.headers
        if isinstance(conn, _ForwardingConnection):
            target = prepared.url  # a plain-HTTP proxy takes the absolute URL
            headers = {**headers, **conn.proxy_headers}
        reused = conn.sock is not None
        try:
            # http.client's request + getresponse at a fraction of the CPU (see http_exchange.py).
            return exchange(conn, prepared.method, target, host=address.host, headers=headers, body=body)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as err:
            self._drop(address)
            if not reused:
                raise TransientError(f"{what}: connection problem talking to S3 ({type(err).__name__})") from err
            # A kept-alive connection the server had already closed: not a
            # fault of this request, so one fresh try does not count as an attempt.
            conn = self._connection(address)
            try:
                return exchange(conn, prepared.method, target, host=address.host, headers=headers, body=body)
            except (OSError, http.client.HTTPException) as again:
                self._drop(address)
                raise TransientError(f"{what}: connection problem talking to S3 ({type(again).__name__})") from again
        except ssl.SSLCertVerificationError as err:
            self._drop(address)
            raise TransientError(
                f"{what}: the TLS certificate of {address.host} is not trusted ({err.verify_message}); "
                "set AWS_CA_BUNDLE (or ca_bundle in the profile) to the CA that signed it"
            ) from err
        except (OSError, http.client.HTTPException) as err:
            self._drop(address)
            raise TransientError(f"{what}: connection problem talking to S3 ({type(err).__name__})") from err

    # -- the data path -----------------------------------------------------
    def get(self, bucket: str, key: str, *, offset: int = 0, length: int | None = None) -> tuple[dict[str, Any], Iterator[bytes]]:
        """GET an object or a range: (headers as a dict like boto3's response, chunk iterator)."""
        what = f"s3://{bucket}/{key}"
        headers: dict[str, str] = {}
        byte_range = range_header(offset, length)
        if byte_range:
            headers["Range"] = byte_range
        response, address = self._request("GET", bucket, key, headers=headers, payload_hash=EMPTY_SHA256, what=what)

        expected = int(response.getheader("Content-Length") or -1)

        def chunks() -> Iterator[bytes]:
            received, complete = 0, False
            try:
                while True:
                    chunk = response.read(1024 * 1024)
                    if not chunk:
                        complete = expected < 0 or received == expected
                        return
                    received += len(chunk)
                    yield chunk
            except (OSError, http.client.HTTPException) as err:
                raise TransientError(f"{what}: body cut off after {received} bytes ({type(err).__name__})") from err
            finally:
                # Only a connection whose response was read to its announced
                # end can carry the next request.
                if not complete or response.will_close:
                    self._drop(address)

        return _response_fields(response), chunks()

    def get_into(self, bucket: str, key: str, buffer: memoryview, *, offset: int) -> tuple[dict[str, Any], Iterator[memoryview]]:
        """GET the range of `len(buffer)` bytes at `offset` straight into `buffer` (`readinto`: no chunk objects, no copy).

        Yields each filled slice of `buffer`. A range answer longer than the
        buffer is an IntegrityError before any byte is read; a body cut off is
        a TransientError, as in `get`.
        """
        what = f"s3://{bucket}/{key}"
        size = len(buffer)
        headers = {"Range": range_header(offset, size) or f"bytes={offset}-{offset + size - 1}"}
        response, address = self._request("GET", bucket, key, headers=headers, payload_hash=EMPTY_SHA256, what=what)
        expected = int(response.getheader("Content-Length") or -1)
        if expected > size:
            self._drop(address)
            raise IntegrityError(f"{what}: range at {offset} returned more than {size} bytes")

        def filled() -> Iterator[memoryview]:
            received, complete = 0, False
            try:
                while received < size:
                    count = response.readinto(buffer[received : min(size, received + _READ_SLICE)])
                    if not count:
                        break
                    yield buffer[received : received + count]
                    received += count
                if received == size and response.read(1):
                    raise IntegrityError(f"{what}: range at {offset} returned more than {size} bytes")
                complete = expected < 0 or received == expected
            except (OSError, http.client.HTTPException) as err:
                raise TransientError(f"{what}: body cut off after {received} bytes ({type(err).__name__})") from err
            finally:
                if not complete or response.will_close:
                    self._drop(address)

        return _response_fields(response), filled()

    def list_objects_v2(self, bucket: str, *, prefix: str, max_keys: int, token: str | None) -> tuple[list[dict[str, Any]], str | None]:
        """One ListObjectsV2 page: boto3-style `Contents` entries and the next continuation token (None on the last page).

        Keys are asked for URL-encoded (`encoding-type=url`, as botocore does,
        so that keys XML cannot carry survive) and decoded here.
        """
        what = f"s3://{bucket}/{prefix}"
        query = {"list-type": "2", "prefix": prefix, "max-keys": str(max_keys), "encoding-type": "url"}
        if token:
            query["continuation-token"] = token
        response, address = self._request("GET", bucket, "", query=query, headers={}, payload_hash=EMPTY_SHA256, what=what)
        return _listing_page(self._read_body(response, address, f"{what}: listing cut off ("), what)

    def head(self, bucket: str, key: str) -> dict[str, Any]:
        """HEAD an object, stored checksums included: boto3-style fields. Raises ObjectNotFound when absent."""
        what = f"s3://{bucket}/{key}"
        response, address = self._request("HEAD", bucket, key, headers={"x-amz-checksum-mode": "ENABLED"}, payload_hash=EMPTY_SHA256, what=what)
        response.read()
        if response.will_close:
            self._drop(address)
        return _response_fields(response)

    def put(
        self,
        bucket: str,
        key: str,
        body: bytes | bytearray | memoryview,
        *,
        headers: dict[str, str],
        payload_sha256: str | None,
        query: Mapping[str, str] | None = None,
    ) -> str:
        """PUT a body (an object, or a part with `query`); returns the ETag, unquoted."""
        what = f"s3://{bucket}/{key}" + (f" part {query['partNumber']}" if query and "partNumber" in query else "")
        headers = {**headers, "Content-Length": str(len(body))}
        # The payload hash is the body's real SHA-256 when we have it: the
        # signature then covers the bytes too.
        https = self.resolution.address(bucket).scheme == "https"
        payload_hash = payload_sha256 or (UNSIGNED_PAYLOAD if https else hashlib.sha256(body).hexdigest())
        response, address = self._request("PUT", bucket, key, query=query, headers=headers, body=body, payload_hash=payload_hash, what=what)
        response.read()
        if response.will_close:
            self._drop(address)
        return (response.getheader("ETag") or "").strip('"')


class _ForwardingConnection(http.client.HTTPConnection):
    """A connection to a plain-HTTP proxy that forwards absolute-URL requests (http:// endpoints only).

    `proxy_headers` (Proxy-Authorization) go with every request, unsigned (`S3HttpClient._send`).
    """

    proxy_headers: dict[str, str] = {}


def _check_header_text(headers: Mapping[str, str], what: str) -> None:
    """S3 headers are US-ASCII: name a header that is not before it is sent (http.client would send Latin-1 and break the signature)."""
    for name, value in headers.items():
        try:
            str(value).encode("ascii")
        except UnicodeEncodeError:
            raise ObjectError(
                f"{what}: the {name} value {str(value)!r} is not US-ASCII, which S3 headers must be; change it at the source or in the plan's metadata rule"
            ) from None


def _client_error(response: http.client.HTTPResponse, payload: bytes, operation: str) -> botocore.exceptions.ClientError:
    """An S3 error answer in botocore's ClientError shape, so one table translates both paths."""
    error: dict[str, str] = {"Code": str(response.status), "Message": response.reason}
    if payload:
        try:
            root = ElementTree.fromstring(payload)
            # Every field of the answer, as botocore keeps them (ArgumentName, ArgumentValue, Region, ...).
            error.update({child.tag: child.text or "" for child in root if len(child) == 0})
        except ElementTree.ParseError:
            pass
    elif response.status == 404:
        error["Code"] = "NoSuchKey"
    return botocore.exceptions.ClientError({"Error": error, "ResponseMetadata": {"HTTPStatusCode": response.status}}, operation)


def _listing_page(payload: bytes, what: str) -> tuple[list[dict[str, Any]], str | None]:
    """A ListObjectsV2 answer as (Contents entries like botocore's, next continuation token or None)."""
    try:
        root = ElementTree.fromstring(payload)
    except ElementTree.ParseError as err:
        raise TransientError(f"{what}: the listing answer is not XML ({err})") from err
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    encoded = root.findtext(f"{ns}EncodingType") == "url"
    contents = []
    for item in root.iter(f"{ns}Contents"):
        key = item.findtext(f"{ns}Key") or ""
        modified = item.findtext(f"{ns}LastModified")
        contents.append(
            {
                "Key": urllib.parse.unquote_plus(key) if encoded else key,
                "Size": int(item.findtext(f"{ns}Size") or 0),
                "ETag": item.findtext(f"{ns}ETag"),
                "LastModified": datetime.fromisoformat(modified).astimezone(timezone.utc) if modified else None,
                "StorageClass": item.findtext(f"{ns}StorageClass"),
            }
        )
    truncated = (root.findtext(f"{ns}IsTruncated") or "").strip().lower() == "true"
    return contents, (root.findtext(f"{ns}NextContinuationToken") or None) if truncated else None


def _response_fields(response: http.client.HTTPResponse) -> dict[str, Any]:
    """The GET response headers as the boto3-style fields `S3Store` reads."""
    # One pass over the headers (each `getheader` walks them all), repeated names joined as `getheader` does.
    headers: dict[str, str] = {}
    metadata: dict[str, str] = {}
    for name, value in response.getheaders():
        lowered = name.lower()
        headers[lowered] = f"{headers[lowered]}, {value}" if lowered in headers else value
        if lowered.startswith("x-amz-meta-"):
            metadata[lowered[len("x-amz-meta-") :]] = value
    get = headers.get
    last_modified = get("last-modified")
    fields: dict[str, Any] = {
        "ContentLength": int(get("content-length") or 0),
        "ETag": get("etag"),
        "ContentType": get("content-type"),
        "CacheControl": get("cache-control"),
        "ContentDisposition": get("content-disposition"),
        "ContentEncoding": get("content-encoding"),
        "ContentLanguage": get("content-language"),
        "ExpiresString": get("expires"),  # the text as sent, like botocore's ExpiresString
        "LastModified": parsedate_to_datetime(last_modified) if last_modified else None,
        "Metadata": metadata,
        "StorageClass": get("x-amz-storage-class"),
        "ServerSideEncryption": get("x-amz-server-side-encryption"),
        "SSEKMSKeyId": get("x-amz-server-side-encryption-aws-kms-key-id"),
    }
    for algorithm in ("sha256", "crc64nvme", "crc32", "crc32c", "sha1"):
        value = get(f"x-amz-checksum-{algorithm}")
        if value:
            fields[f"Checksum{algorithm.upper()}"] = value
    return fields
