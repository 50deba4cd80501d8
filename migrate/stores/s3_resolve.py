"""Where and how to send an S3 request, as botocore itself decides it.

The lean data path (`s3_http.py`) must talk to exactly the server boto3 talks
to, the way boto3 does. Rather than re-implementing botocore's rules
(endpoint rulesets per partition -- `amazonaws.com.cn`, GovCloud, FIPS --,
virtual vs path addressing and the dotted-bucket exception,
`AWS_ENDPOINT_URL[_S3]`, the profile's `endpoint_url`, `s3.addressing_style`,
region from env/profile), we ask the store's own boto3 client: a HeadObject
for a placeholder key is prepared and signed by botocore and caught in its
`before-send` event, never sent. Its URL gives scheme, host and the path
prefix before the key; its Authorization header gives the signing region.
Proxies and TLS verification come from the same client's HTTP session
(botocore resolves `HTTPS_PROXY`/`NO_PROXY`, `AWS_CA_BUNDLE` and the
profile's `ca_bundle` there). One `S3Resolution` per store; both paths share it.

A 301 `PermanentRedirect` (bucket in another region) is answered by
re-resolving for the region S3 names in `x-amz-bucket-region`, as botocore's
`S3RegionRedirectorv2` does.
"""

from __future__ import annotations

import re
import threading
import urllib.parse
from dataclasses import dataclass
from typing import Any, Callable

from botocore.awsrequest import AWSResponse

PLACEHOLDER_KEY = "migrate-resolve-placeholder"
_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([^/]+)/([^/]+)/aws4_request")


@dataclass(frozen=True)
class BucketAddress:
    """Where one bucket's objects are: `{scheme}://{host}{prefix}/{encoded key}`, signed for `region`."""

    scheme: str
    host: str  # netloc: host[:port]
    prefix: str  # path before "/<key>": "" (virtual-hosted) or "/<bucket>" (path style)
    region: str
    service: str = "s3"

    def url(self, path: str, query: str = "") -> str:
        return f"{self.scheme}://{self.host}{path}" + (f"?{query}" if query else "")


class _EmptyBody:
    """The body of the stand-in answer to a captured request."""

    def stream(self, **_: Any) -> Any:
        return iter((b"",))


class S3Resolution:
    """Endpoint, region, addressing, proxy and TLS settings of one boto3 S3 client, per bucket (cached)."""

    def __init__(self, client: Any, *, client_for_region: Callable[[str], Any]):
        self._client = client
        self._client_for_region = client_for_region
        self._regional: dict[str, Any] = {}
        self._addresses: dict[str, BucketAddress] = {}
        self._lock = threading.Lock()
        self._capture = threading.local()
        client.meta.events.register_first("before-send.s3", self._before_send)
        http_session = getattr(getattr(client, "_endpoint", None), "http_session", None)
        # botocore's URLLib3Session keeps what it resolved: `verify` (True,
        # False or a CA bundle path) and the proxy configuration.
        self.verify: bool | str = getattr(http_session, "_verify", True)
        self._proxy_config = getattr(http_session, "_proxy_config", None)

    def _before_send(self, request: Any, **_: Any) -> AWSResponse | None:
        sink = getattr(self._capture, "sink", None)
        if sink is None:
            return None  # a real request of the boto3 path
        sink.append(request)
        return AWSResponse(request.url, 200, {}, _EmptyBody())

    def prepared(self, client: Any, operation: str, **params: Any) -> Any:
        """The request botocore would send for `operation` (signed, not sent)."""
        sink: list[Any] = []
        self._capture.sink = sink
        try:
            getattr(client, operation)(**params)
        except Exception:  # noqa: BLE001 - the fake answer may not parse; the request was caught already
            pass
        finally:
            self._capture.sink = None
        if not sink:
            raise RuntimeError(f"botocore sent no {operation} request to capture")
        return sink[-1]

    def _resolve(self, client: Any, bucket: str) -> BucketAddress:
        request = self.prepared(client, "head_object", Bucket=bucket, Key=PLACEHOLDER_KEY)
        url = urllib.parse.urlsplit(request.url)
        suffix = "/" + PLACEHOLDER_KEY
        assert url.path.endswith(suffix), url.path
        found = _SCOPE.search(str(request.headers.get("Authorization", "")))
        region = found.group(1) if found else (client.meta.region_name or "us-east-1")
        return BucketAddress(url.scheme, url.netloc, url.path[: -len(suffix)], region, found.group(2) if found else "s3")

    def address(self, bucket: str) -> BucketAddress:
        with self._lock:
            known = self._addresses.get(bucket)
        if known is not None:
            return known
        address = self._resolve(self._client, bucket)
        with self._lock:
            self._addresses.setdefault(bucket, address)
        return address

    def redirect(self, bucket: str, region: str) -> BucketAddress:
        """The bucket lives in `region` (S3 said so in a 301): resolve it there from now on."""
        with self._lock:
            client = self._regional.get(region)
            if client is None:
                client = self._regional[region] = self._client_for_region(region)
                client.meta.events.register_first("before-send.s3", self._before_send)
        address = self._resolve(client, bucket)
        with self._lock:
            self._addresses[bucket] = address
        return address

    def proxy_for(self, url: str) -> str | None:
        """The proxy botocore would use for `url` (HTTPS_PROXY/HTTP_PROXY, NO_PROXY, Config(proxies=)); None for direct."""
        if self._proxy_config is None:
            return None
        proxy = self._proxy_config.proxy_url_for(url)
        return str(proxy) if proxy else None
