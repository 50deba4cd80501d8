"""The lean data path goes where boto3 goes, the way boto3 goes (migrate/stores/s3_resolve.py).

Part one is differential and offline: for a matrix of AWS settings (regions
in the aws, aws-cn and aws-us-gov partitions, dotted bucket names,
addressing styles, endpoint variables, a profile in a temporary
AWS_CONFIG_FILE) the request the lean client would send has the host, path,
query, signing scope and signed headers botocore itself sends (botocore's
request is caught in its `before-send` event and never sent).

Part two sends real requests to SeaweedFS through local helpers started on
127.0.0.1 by the test: a TLS terminator with a self-signed CA passed by
AWS_CA_BUNDLE, an HTTP CONNECT proxy named by HTTPS_PROXY, and a front that
answers 301 PermanentRedirect (with x-amz-bucket-region) to requests signed
for the wrong region.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import http.client
import ipaddress
import select
import socket
import socketserver
import ssl
import threading
import urllib.parse
from pathlib import Path
from typing import Any, Iterator

import pytest

from migrate.errors import TransientError
from migrate.stack.seaweed import SeaweedServer
from migrate.stores.s3 import S3Location, S3Store, _NO_SETTINGS
from migrate.stores.s3_http import EMPTY_SHA256

CREDS = {"access_key_id": "AKIDEXAMPLE", "secret_access_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}
# Headers botocore adds that carry no request semantics (SDK bookkeeping), and
# Content-Length, which the lean client signs as well.
_BOOKKEEPING = {"amz-sdk-invocation-id", "amz-sdk-request", "content-length", "user-agent", "expect"}


@pytest.fixture
def clean_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No AWS settings from the machine: an empty config file the test can fill."""
    for name in list(__import__("os").environ):
        if name.startswith("AWS_") or name.lower() in ("https_proxy", "http_proxy", "no_proxy", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
    config = tmp_path / "aws-config"
    config.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    return config


def _scope(authorization: str) -> tuple[str, str, list[str]]:
    credential = authorization.split("Credential=")[1].split(",")[0]
    _, _, region, service, _ = credential.split("/")
    signed = authorization.split("SignedHeaders=")[1].split(",")[0].split(";")
    return region, service, signed


def _header(request: Any, name: str) -> str:
    value = request.headers.get(name)
    return value.decode() if isinstance(value, bytes) else str(value)


# (id, environment, config file text, plan location fields, bucket, expected host)
MATRIX = [
    ("us-west-2 virtual", {}, "", {"region": "us-west-2"}, "assets", "assets.s3.us-west-2.amazonaws.com"),
    ("dotted bucket: path style", {}, "", {"region": "us-west-2"}, "media.example.com", "s3.us-west-2.amazonaws.com"),
    ("china partition", {}, "", {"region": "cn-north-1"}, "assets", "assets.s3.cn-north-1.amazonaws.com.cn"),
    ("china, dotted", {}, "", {"region": "cn-northwest-1"}, "a.b", "s3.cn-northwest-1.amazonaws.com.cn"),
    ("govcloud", {}, "", {"region": "us-gov-west-1"}, "assets", "assets.s3.us-gov-west-1.amazonaws.com"),
    ("region from AWS_DEFAULT_REGION, none in plan", {"AWS_DEFAULT_REGION": "ap-southeast-2"}, "", {}, "assets", "assets.s3.ap-southeast-2.amazonaws.com"),
    ("region from the profile", {}, "[default]\nregion = eu-central-1\n", {}, "assets", "assets.s3.eu-central-1.amazonaws.com"),
    ("path style from the profile", {}, "[default]\nregion = eu-west-1\ns3 =\n  addressing_style = path\n", {}, "assets", "s3.eu-west-1.amazonaws.com"),
    ("AWS_ENDPOINT_URL_S3", {"AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9555", "AWS_REGION": "eu-west-2"}, "", {}, "assets", "127.0.0.1:9555"),
    ("AWS_ENDPOINT_URL", {"AWS_ENDPOINT_URL": "https://10.1.2.3:8443"}, "", {"region": "us-east-2"}, "assets", "10.1.2.3:8443"),
    (
        "profile endpoint_url, virtual style",
        {"AWS_PROFILE": "minio"},
        "[profile minio]\nregion = us-east-1\nendpoint_url = https://storage.internal:9000\ns3 =\n  addressing_style = virtual\n",
        {},
        "assets",
        "assets.storage.internal:9000",
    ),
    ("plan endpoint: path style", {}, "", {"endpoint_url": "http://127.0.0.1:8333", "region": "us-east-1"}, "assets", "127.0.0.1:8333"),
]


@pytest.mark.parametrize(("env", "config_text", "fields", "bucket", "host"), [m[1:] for m in MATRIX], ids=[m[0] for m in MATRIX])
def test_lean_requests_equal_botocores(
    clean_aws_env: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], config_text: str, fields: dict[str, str], bucket: str, host: str
) -> None:
    clean_aws_env.write_text(config_text)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    store = S3Store(S3Location(**fields, **CREDS))
    assert store.http is not None
    key = "photos/2024//Zürich café+1 #2.jpg"
    cases = [
        ("HEAD", "head_object", {}, {"x-amz-checksum-mode": "ENABLED"}, {"ChecksumMode": "ENABLED"}),
        ("GET", "get_object", {}, {"Range": "bytes=5-9"}, {"Range": "bytes=5-9"}),
        (
            "PUT",
            "put_object",
            {},
            {"Content-MD5": "eHh4", "Cache-Control": "max-age=public, max-age=86400", "x-amz-meta-city": "=?UTF-8?B?WsO8cmljaA==?="},
            {"Body": b"x", "ContentMD5": "eHh4", "CacheControl": "max-age=public, max-age=86400", "Metadata": {"city": "=?UTF-8?B?WsO8cmljaA==?="}},
        ),
        ("PUT", "upload_part", {"partNumber": "7", "uploadId": "abc/def=="}, {"Content-MD5": "eHh4"}, {"Body": b"x", "ContentMD5": "eHh4", "UploadId": "abc/def==", "PartNumber": 7}),
    ]
    for method, operation, query, lean_headers, boto_params in cases:
        theirs = store.resolution.prepared(store.client, operation, Bucket=bucket, Key=key, **boto_params)
        ours = store.http.prepare(method, bucket, key, query=query, headers=lean_headers, payload_hash=EMPTY_SHA256)
        their_url, our_url = urllib.parse.urlsplit(theirs.url), urllib.parse.urlsplit(ours.url)
        assert theirs.method == method
        assert (our_url.scheme, our_url.netloc, our_url.path) == (their_url.scheme, their_url.netloc, their_url.path), operation
        assert their_url.netloc == host
        assert urllib.parse.parse_qs(our_url.query) == urllib.parse.parse_qs(their_url.query), operation
        their_region, their_service, their_signed = _scope(_header(theirs, "Authorization"))
        our_region, our_service, our_signed = _scope(ours.headers["Authorization"])
        assert (our_region, our_service) == (their_region, their_service), operation
        assert set(our_signed) - _BOOKKEEPING == set(their_signed) - _BOOKKEEPING, operation
        for name in set(their_signed) - _BOOKKEEPING - {"host", "x-amz-date", "x-amz-content-sha256"}:
            assert {k.lower(): v for k, v in ours.headers.items()}[name] == _header(theirs, name), name


# -- real requests -----------------------------------------------------------------------------


def _make_ca_and_server_cert(directory: Path) -> tuple[Path, Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "migrate test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])).issuer_name(ca_name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return ca_path, cert_path, key_path


def _pipe(a: socket.socket, b: socket.socket) -> None:
    sockets = [a, b]
    try:
        while True:
            readable, _, _ = select.select(sockets, [], [], 30)
            if not readable:
                return
            for sock in readable:
                data = sock.recv(65536)
                if not data:
                    return
                (b if sock is a else a).sendall(data)
    except OSError:
        return
    finally:
        a.close()
        b.close()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@contextlib.contextmanager
def _serving(server: socketserver.BaseServer) -> Iterator[int]:
    """Serve on a thread; yield the port; stop and close it after."""
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield int(server.server_address[1])  # type: ignore[index]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def tls_endpoint(seaweed: SeaweedServer, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """https://127.0.0.1:<port> terminating TLS (self-signed CA) in front of SeaweedFS; (url, CA file)."""
    ca_path, cert_path, key_path = _make_ca_and_server_cert(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    backend = urllib.parse.urlsplit(seaweed.endpoint_url)

    class Terminator(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            try:
                client = context.wrap_socket(self.request, server_side=True)
            except (ssl.SSLError, OSError):
                return  # a client that does not trust us hangs up: expected in the negative case
            upstream = socket.create_connection((backend.hostname, backend.port))
            _pipe(client, upstream)

    with _serving(_Server(("127.0.0.1", 0), Terminator)) as port:
        yield f"https://127.0.0.1:{port}", ca_path


@pytest.fixture
def connect_proxy() -> Iterator[tuple[str, list[str]]]:
    """An HTTP CONNECT proxy on 127.0.0.1; (url, targets it tunnelled to)."""
    tunnels: list[str] = []

    class Proxy(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            request_line = self.rfile.readline().decode("latin-1")
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            method, target, _ = request_line.split(" ", 2)
            if method != "CONNECT":
                self.wfile.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                return
            host, port = target.rsplit(":", 1)
            tunnels.append(target)
            upstream = socket.create_connection((host, int(port)))
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self.wfile.flush()
            _pipe(self.connection, upstream)

    with _serving(_Server(("127.0.0.1", 0), Proxy)) as port:
        yield f"http://127.0.0.1:{port}", tunnels


def _store(endpoint: str, seaweed: SeaweedServer, **fields: Any) -> S3Store:
    return S3Store(
        S3Location(endpoint_url=endpoint, access_key_id=seaweed.access_key, secret_access_key=seaweed.secret_key, **fields), timeout=20
    )


def _round_trip(store: S3Store, bucket: str, key: str) -> None:
    body = b"bytes through " + key.encode()
    store.put_object(bucket, key, body, content_md5=hashlib.md5(body).digest(), **_NO_SETTINGS)  # lean PUT
    info, chunks = store.open(bucket, key)  # lean GET
    assert b"".join(chunks) == body and info.size == len(body)
    listed = [i.key for page in store.iter_objects(bucket) for i in page]  # lean listing
    assert key in listed
    store.check_bucket(bucket)  # boto3 (HeadBucket)


def test_https_endpoint_with_a_private_ca_from_aws_ca_bundle(
    clean_aws_env: Path, monkeypatch: pytest.MonkeyPatch, seaweed: SeaweedServer, s3_bucket: str, tls_endpoint: tuple[str, Path]
) -> None:
    url, ca = tls_endpoint
    untrusted = _store(url, seaweed)
    with pytest.raises(TransientError, match="TLS certificate of 127.0.0.1:.* is not trusted.*AWS_CA_BUNDLE"):
        untrusted.http.head(s3_bucket, "x")  # type: ignore[union-attr]
    monkeypatch.setenv("AWS_CA_BUNDLE", str(ca))
    store = _store(url, seaweed)
    assert store.resolution.verify == str(ca)
    _round_trip(store, s3_bucket, "tls/ok.txt")


def test_profile_ca_bundle_is_honoured(
    clean_aws_env: Path, seaweed: SeaweedServer, s3_bucket: str, tls_endpoint: tuple[str, Path]
) -> None:
    url, ca = tls_endpoint
    clean_aws_env.write_text(f"[default]\nca_bundle = {ca}\n")
    _round_trip(_store(url, seaweed), s3_bucket, "tls/profile.txt")


def test_https_proxy_carries_both_paths_and_no_proxy_bypasses_it(
    clean_aws_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    seaweed: SeaweedServer,
    s3_bucket: str,
    tls_endpoint: tuple[str, Path],
    connect_proxy: tuple[str, list[str]],
) -> None:
    url, ca = tls_endpoint
    proxy, tunnels = connect_proxy
    monkeypatch.setenv("AWS_CA_BUNDLE", str(ca))
    monkeypatch.setenv("HTTPS_PROXY", proxy)
    store = _store(url, seaweed, region="us-east-1")
    store.http.put(s3_bucket, "proxied.txt", b"via proxy", headers={}, payload_sha256=None)  # type: ignore[union-attr]
    lean_tunnels = len(tunnels)
    assert lean_tunnels >= 1 and set(tunnels) == {urllib.parse.urlsplit(url).netloc}
    _round_trip(store, s3_bucket, "proxied/2.txt")
    assert len(tunnels) > lean_tunnels  # boto3's HeadBucket went through it as well
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    before = len(tunnels)
    _round_trip(_store(url, seaweed), s3_bucket, "direct.txt")
    assert len(tunnels) == before


def _relay(handler: Any, host: str, port: int, path: str, payload: bytes) -> None:
    """Send the handler's request to host:port and its answer back (a minimal reverse/forward proxy step)."""
    conn = http.client.HTTPConnection(host, port, timeout=20)
    headers = {k: v for k, v in handler.headers.items() if k.lower() not in ("proxy-connection", "proxy-authorization")}
    conn.request(handler.command, path, body=payload or None, headers=headers)
    answer = conn.getresponse()
    data = answer.read()
    handler.send_response(answer.status)
    for name, value in answer.getheaders():
        if name.lower() not in ("transfer-encoding", "connection", "content-length"):
            handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(data)) if handler.command != "HEAD" else answer.getheader("Content-Length") or "0")
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(data)
    conn.close()


@pytest.fixture
def region_front(seaweed: SeaweedServer) -> Iterator[tuple[str, list[tuple[str, int]]]]:
    """http://127.0.0.1:<port> in front of SeaweedFS: 301 PermanentRedirect unless signed for eu-west-1; (url, [(region, status)])."""
    backend = urllib.parse.urlsplit(seaweed.endpoint_url)
    seen: list[tuple[str, int]] = []
    body = b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>PermanentRedirect</Code><Message>The bucket you are attempting to access must be addressed using the specified endpoint.</Message></Error>'

    import http.server

    class Front(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            payload = self.rfile.read(length) if length else b""
            region = self.headers.get("Authorization", "").split("Credential=")[-1].split("/")[2] if "Credential=" in self.headers.get("Authorization", "") else ""
            if region != "eu-west-1":
                seen.append((region, 301))
                self.send_response(301)
                self.send_header("x-amz-bucket-region", "eu-west-1")
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body) if self.command != "HEAD" else 0))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)
                return
            seen.append((region, 200))
            _relay(self, backend.hostname or "127.0.0.1", backend.port or 80, self.path, payload)

        do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _any

    with _serving(http.server.ThreadingHTTPServer(("127.0.0.1", 0), Front)) as port:
        yield f"http://127.0.0.1:{port}", seen


def test_a_301_permanent_redirect_is_followed_to_the_named_region(
    clean_aws_env: Path, seaweed: SeaweedServer, s3_bucket: str, region_front: tuple[str, list[tuple[str, int]]]
) -> None:
    url, seen = region_front
    store = _store(url, seaweed, region="us-east-1")
    body = b"redirected"
    store.put_object(s3_bucket, "moved.txt", body, content_md5=hashlib.md5(body).digest(), **_NO_SETTINGS)
    assert seen[:2] == [("us-east-1", 301), ("eu-west-1", 200)]
    assert store.resolution.address(s3_bucket).region == "eu-west-1"
    info, chunks = store.open(s3_bucket, "moved.txt")
    assert b"".join(chunks) == body
    assert seen[2] == ("eu-west-1", 200)  # remembered: no second redirect


@pytest.fixture
def http_forward_proxy() -> Iterator[tuple[str, list[str]]]:
    """A plain-HTTP forward proxy (absolute-form requests) on 127.0.0.1; (url, URLs it forwarded)."""
    import http.server

    forwarded: list[str] = []

    class Forward(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _any(self) -> None:
            target = urllib.parse.urlsplit(self.path)  # absolute form: http://host:port/path?query
            forwarded.append(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            payload = self.rfile.read(length) if length else b""
            path = target.path + (f"?{target.query}" if target.query else "")
            _relay(self, target.hostname or "", target.port or 80, path, payload)

        do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _any

    with _serving(http.server.ThreadingHTTPServer(("127.0.0.1", 0), Forward)) as port:
        yield f"http://127.0.0.1:{port}", forwarded


def test_http_proxy_forwards_both_paths_for_an_http_endpoint(
    clean_aws_env: Path, monkeypatch: pytest.MonkeyPatch, seaweed: SeaweedServer, s3_bucket: str, http_forward_proxy: tuple[str, list[str]]
) -> None:
    proxy, forwarded = http_forward_proxy
    monkeypatch.setenv("HTTP_PROXY", proxy)
    store = _store(seaweed.endpoint_url, seaweed)
    _round_trip(store, s3_bucket, "forwarded.txt")
    methods_seen = {url.split("?")[0] for url in forwarded}
    assert f"{seaweed.endpoint_url}/{s3_bucket}/forwarded.txt" in methods_seen  # lean PUT and GET
    assert any(url.split("?")[0].rstrip("/") == f"{seaweed.endpoint_url}/{s3_bucket}" and "list-type=2" in url for url in forwarded)  # lean listing
    assert any(url.rstrip("/") == f"{seaweed.endpoint_url}/{s3_bucket}" for url in forwarded)  # boto3's HeadBucket
