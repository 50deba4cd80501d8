"""Secrets stay masked where a failure's natural message would carry them.

Three real failures, each with the secret in what a server or a library
answers: a key echoed back in an error body, a database URL with a password
that cannot connect, a signed URL (with its token) in an error. After each,
nothing `migrate` printed (output and -v logs) or wrote (manifest, journal,
reports) holds the secret, and the masked form shows the message did get
through.
"""

from __future__ import annotations

import http.client
import json
import re
import secrets
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest

from migrate.cli import main
from migrate.redact import MASK, redact, register_secret
from migrate.stack.process import free_port
from tests.plan_files import write_supabase_plan


class AnsweringProxy:
    """Forwards to `upstream` (or answers alone without one); a rule (method, path regex) -> (status, body(headers)) answers instead.

    A tiny stand-in for a server whose error bodies echo what the client sent.
    """

    def __init__(self, upstream: str | None, rules: list[tuple[str, str, int, Callable[[Any], dict[str, Any]]]]):
        self.rules, self.answered = rules, 0
        target = httpx.URL(upstream) if upstream else None
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # quiet
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                for method, pattern, status, answer in proxy.rules:
                    if method == self.command and re.search(pattern, self.path):
                        proxy.answered += 1
                        payload = json.dumps(answer(self.headers)).encode()
                        self.send_response(status)
                        self.send_header("Content-Type", "application/json")
                        self.send_header("Content-Length", str(len(payload)))
                        self.end_headers()
                        self.wfile.write(payload)
                        return
                assert target is not None, f"no rule for {self.command} {self.path}"
                upstream_conn = http.client.HTTPConnection(target.host, target.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
                upstream_conn.request(self.command, self.path, body=body, headers=headers)
                response = upstream_conn.getresponse()
                data = response.read()
                self.send_response(response.status)
                for name, value in response.getheaders():
                    if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                upstream_conn.close()

            do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "AnsweringProxy":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _plan(path: Path, *, bucket: str, dest: str, endpoint: str, database_url: bool = False) -> Path:
    return write_supabase_plan(
        path, name=f"redact-{dest}", bucket=bucket, dest=dest, endpoint=endpoint, database_url=database_url, extra="transfer: {max_attempts: 2}\n"
    )


@pytest.fixture
def world(seaweed: Any, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., int]]:
    """`migrate(*args)`: run the CLI in-process (with -v) on `tmp_path/plan.yaml`, state and reports under tmp_path."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweed.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweed.secret_key)

    def migrate(*args: str) -> int:
        extra = ["--no-progress"] if args[0] in ("run", "verify") else []
        return main(["-v", *args, str(tmp_path / "plan.yaml"), "--state-dir", str(tmp_path / "state"), "--reports-dir", str(tmp_path / "reports"), *extra])

    yield migrate


def _assert_nowhere(secret: str, tmp_path: Path, printed: str) -> None:
    assert secret not in printed
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), f"the secret is in {path}"


def test_a_key_echoed_back_by_the_server_is_masked(
    world: Callable[..., int], seaweed: Any, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    key = "sb-" + secrets.token_urlsafe(24)
    # Like a gateway that quotes the rejected credential back.
    rules = [(m, ".*", 401, lambda headers: {"statusCode": "401", "error": "Unauthorized", "message": f"invalid apikey {headers['apikey']}"}) for m in ("GET", "POST")]
    with AnsweringProxy(None, rules) as server:
        monkeypatch.setenv("SUPABASE_URL", server.url)
        monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", key)
        _plan(tmp_path / "plan.yaml", bucket="photos", dest=s3_bucket, endpoint=seaweed.endpoint_url)
        code = world("plan")
        assert server.answered >= 1
    captured = capsys.readouterr()
    assert code == 4
    lines = captured.err.strip().splitlines()
    assert lines[-1].startswith("migrate: ") and f"(invalid apikey {MASK})" in lines[-1], captured.err
    _assert_nowhere(key, tmp_path, captured.out + captured.err)


def test_a_database_password_is_masked_when_the_catalog_cannot_connect(
    world: Callable[..., int], supabase_server: Any, supabase_bucket: str, seaweed: Any, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    password = "pw-" + secrets.token_urlsafe(18)
    port = free_port()  # nobody listens there
    monkeypatch.setenv("SUPABASE_URL", supabase_server.url)
    monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", supabase_server.service_key)
    monkeypatch.setenv("SUPABASE_DB_URL", f"postgresql://postgres:{password}@127.0.0.1:{port}/postgres")
    _plan(tmp_path / "plan.yaml", bucket=supabase_bucket, dest=s3_bucket, endpoint=seaweed.endpoint_url, database_url=True)
    assert world("plan") == 4
    assert world("run") == 4
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.startswith("migrate: ")]
    assert len(lines) == 2 and all(f"127.0.0.1:{port}" in line and "cannot connect" in line for line in lines), captured.err
    _assert_nowhere(password, tmp_path, captured.out + captured.err)


def test_a_signed_url_in_an_error_is_masked_everywhere(
    world: Callable[..., int], supabase_server: Any, supabase_http: httpx.Client, supabase_bucket: str, seaweed: Any, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key in ("fine.txt", "victim.bin"):
        assert supabase_http.post(f"/object/{supabase_bucket}/{key}", content=key.encode() * 10).status_code == 200
    # A signed URL's token is a JWT: never a registered secret, masked by its shape.
    token = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9." + secrets.token_urlsafe(40) + "." + secrets.token_urlsafe(32)
    signed = f"{supabase_server.url}/storage/v1/object/sign/{supabase_bucket}/victim.bin?token={token}"
    rules = [("GET", "/object/authenticated/.*/victim.bin", 500, lambda headers: {"statusCode": "500", "error": "InternalError", "message": f"upstream fetch of {signed} failed"})]
    with AnsweringProxy(supabase_server.url, rules) as proxy:
        monkeypatch.setenv("SUPABASE_URL", proxy.url)
        monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", supabase_server.service_key)
        _plan(tmp_path / "plan.yaml", bucket=supabase_bucket, dest=s3_bucket, endpoint=seaweed.endpoint_url)
        assert world("run") == 3
        ran = capsys.readouterr()
        assert world("status", "--failed") == 0
        listing = capsys.readouterr()
        # Fast mode: the missing object's row quotes the failure the journal recorded.
        assert world("verify") == 3
        verified = capsys.readouterr()
        assert proxy.answered == 2  # run's two attempts
    failed = [line for line in listing.out.splitlines() if "victim.bin" in line]
    assert len(failed) == 1 and f"/object/sign/{supabase_bucket}/victim.bin?token={MASK}" in failed[0], listing.out
    assert f"token={MASK}" in ran.err
    printed = "".join(part.out + part.err for part in (ran, listing, verified))
    assert "retrying" in printed  # the -v log saw the error too
    _assert_nowhere(token, tmp_path, printed)
    _assert_nowhere(token.split(".")[1], tmp_path, printed)


def test_redact_masks_known_and_credential_shaped_secrets() -> None:
    known = f"known-{uuid.uuid4().hex}"
    register_secret(known)
    text = redact(f"a {known} b postgresql://u:pw123@h/db c ?token=abc.def&x=1 apikey: zzz9 eyJabcdef.ghijklm.nopqrst")
    assert text == f"a {MASK} b postgresql://u:{MASK}@h/db c ?token={MASK}&x=1 apikey: {MASK} {MASK}"
