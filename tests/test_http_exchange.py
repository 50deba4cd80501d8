"""`exchange` and `LeanResponse` (stores/http_exchange.py) do what `http.client` does, leaner.

Each answer is sent by a real socket server on 127.0.0.1, byte for byte as
written here, and read twice: once by the standard library's response class
and once by ours; status, headers, keep-alive and body must agree. Requests
`exchange` writes must be the bytes `http.client` writes, an answer left
unread must never be read as the next one, and the S3 client (against
SeaweedFS) and the Supabase REST reader must use all this.
"""

from __future__ import annotations

import hashlib
import http.client
import socket
import threading
import time
from typing import Any, Iterator

import pytest

from migrate.stores.http_exchange import LeanResponse, exchange
from migrate.stores.s3 import S3Location, S3Store
from migrate.stores.s3_write import _NO_SETTINGS
from migrate.stores.supabase_http import RestReader

HEAD_AND_BODY = [
    # Repeated names (x-amz-meta-* may come twice), mixed case, a value with colons, trailing spaces.
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: \"abc\"\r\nX-Amz-Meta-A: 1\r\nx-amz-meta-a: 2\r\n"
    b"Last-Modified: Tue, 01 Dec 2026 19:17:00 GMT  \r\nX-Url: http://h:1/p\r\n\r\nhello",
    # A folded (obs-fold) header line, and a line without a colon in the middle of the block.
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Folded: one\r\n  two\r\nnot a header\r\nX-After: yes\r\n\r\nok",
    # Chunked body.
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    # HTTP/1.0 without keep-alive, no length: the body runs to the close.
    b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close",
    # Connection: close on 1.1; 204 has no body.
    b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n",
    # 100 Continue first, then the answer.
    b"HTTP/1.1 100 Continue\r\nX-Interim: 1\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nnah",
]


def _serve_once(payload: bytes, *, pieces: int = 1) -> tuple[int, threading.Thread]:
    """Answer one request with `payload`; in `pieces` sends a little apart (the head then arrives in parts)."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def answer() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.recv(65536)  # the request
            size = -(-len(payload) // pieces)
            for start in range(0, len(payload), size):
                conn.sendall(payload[start : start + size])
                if pieces > 1:
                    time.sleep(0.02)
        listener.close()

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    return port, thread


def _read(payload: bytes, response_class: type[http.client.HTTPResponse], method: str = "GET", *, pieces: int = 1) -> dict[str, Any]:
    port, thread = _serve_once(payload, pieces=pieces)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.response_class = response_class
    conn.request(method, "/x")
    response = conn.getresponse()
    seen = {
        "status": response.status,
        "reason": response.reason,
        "version": response.version,
        "headers": [(name, " ".join(value.split())) for name, value in response.getheaders()],
        "meta_a": response.getheader("x-amz-meta-a"),
        "etag": response.getheader("ETAG"),
        "absent": response.getheader("x-absent", "default"),
        "will_close": response.will_close,
        "length": response.length,
        "body": response.read(),
    }
    conn.close()
    thread.join(timeout=10)
    return seen


@pytest.mark.parametrize("pieces", [1, 7], ids=["whole", "in-pieces"])
@pytest.mark.parametrize("payload", HEAD_AND_BODY, ids=["repeated", "folded", "chunked", "http10", "close-204", "continue"])
def test_lean_response_reads_what_http_client_reads(payload: bytes, pieces: int) -> None:
    """Whole: the head is in the reader's buffer at once (read in one piece); in pieces: read line by line."""
    assert _read(payload, LeanResponse, pieces=pieces) == _read(payload, http.client.HTTPResponse, pieces=pieces)


def test_head_answer_has_no_body() -> None:
    payload = b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nETag: \"e\"\r\n\r\n"
    ours = _read(payload, LeanResponse, method="HEAD")
    assert ours == _read(payload, http.client.HTTPResponse, method="HEAD")
    assert ours["length"] == 0 and ours["body"] == b""


@pytest.mark.parametrize("pieces", [1, 5])
def test_too_many_headers_refused_like_http_client(pieces: int) -> None:
    def head(count: int) -> bytes:
        return b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(count)) + b"Content-Length: 0\r\n\r\n"

    for response_class in (LeanResponse, http.client.HTTPResponse):
        with pytest.raises(http.client.HTTPException, match="more than 100 headers"):
            _read(head(99), response_class, pieces=pieces)
        assert len(_read(head(98), response_class, pieces=pieces)["headers"]) == 99  # the most http.client takes


@pytest.fixture
def lean_store(seaweed: Any) -> Iterator[S3Store]:
    location = S3Location(
        endpoint_url=seaweed.endpoint_url, region="us-east-1", access_key_id=seaweed.access_key, secret_access_key=seaweed.secret_key
    )
    store = S3Store(location)
    yield store
    store.close()


def test_s3_lean_path_exchanges_through_lean_response(lean_store: S3Store, s3_bucket: str) -> None:
    assert lean_store.http is not None
    settings = {**_NO_SETTINGS, "metadata": {"a": "1"}}
    lean_store.put_object(s3_bucket, "k", b"bytes", content_md5=hashlib.md5(b"bytes").digest(), **settings)
    info, chunks = lean_store.open(s3_bucket, "k")
    assert b"".join(chunks) == b"bytes" and info.user_metadata == {"a": "1"} and info.size == 5
    connections = [conn for pool in lean_store.http._pools.values() for conn in pool.values()]
    assert connections and all(type(getattr(conn, "_migrate_last_response", None)) is LeanResponse for conn in connections)


class RecordingServer:
    """Answers each request on 127.0.0.1 with the next canned answer; keeps every request's bytes and counts connections."""

    def __init__(self, answers: list[bytes], *, answers_per_connection: int | None = None):
        self.answers = list(answers)
        # Hang up after this many answers on a connection, saying nothing (no `Connection: close`): a keep-alive timeout.
        self.answers_per_connection = answers_per_connection
        self.requests: list[bytes] = []
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.answers:
            try:
                conn, _ = self.listener.accept()
            except OSError:  # closed by the test
                return
            self.connections += 1
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn: socket.socket) -> None:
        with conn:
            pending = b""
            answered = 0
            while self.answers:
                while b"\r\n\r\n" not in pending:
                    data = conn.recv(65536)
                    if not data:
                        return
                    pending += data
                head, _, pending = pending.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0)
                while len(pending) < length:
                    pending += conn.recv(65536)
                self.requests.append(head + b"\r\n\r\n" + pending[:length])
                pending = pending[length:]
                conn.sendall(self.answers.pop(0))
                answered += 1
                if answered == self.answers_per_connection:
                    return

    def close(self) -> None:
        self.listener.close()


def test_exchange_writes_the_request_http_client_writes() -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    server = RecordingServer([answer, answer, answer, answer])
    headers = {"Content-Type": "image/png", "x-amz-meta-a": "b c", "Content-Length": "5"}
    stdlib = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    stdlib.request("PUT", "/b/k%20x", body=b"hello", headers=headers)
    stdlib.getresponse().read()
    stdlib.request("GET", "/b/k", headers={"Range": "bytes=0-1"})
    stdlib.getresponse().read()
    ours = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    host = f"127.0.0.1:{server.port}"
    exchange(ours, "PUT", "/b/k%20x", host=host, headers=headers, body=bytearray(b"hello")).read()
    exchange(ours, "GET", "/b/k", host=host, headers={"Range": "bytes=0-1"}).read()
    server.close()
    assert server.requests[2:] == server.requests[:2]
    assert server.connections == 2  # each client kept its connection alive


def test_an_answer_left_unread_is_never_read_as_the_next_one() -> None:
    # The first body holds what looks like an answer: read from the same connection it would pass for one.
    lure = b"HTTP/1.1 200 OK\r\nETag: \"forged\"\r\nContent-Length: 0\r\n\r\n"
    first = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (len(lure) + 4) + b"abcd" + lure
    second = b"HTTP/1.1 200 OK\r\nETag: \"real\"\r\nContent-Length: 0\r\n\r\n"
    server = RecordingServer([first, second])
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    host = f"127.0.0.1:{server.port}"
    response = exchange(conn, "GET", "/b/k", host=host, headers={})
    assert response.read(4) == b"abcd"  # the rest stays unread
    again = exchange(conn, "PUT", "/b/k", host=host, headers={"Content-Length": "1"}, body=b"x")
    assert again.getheader("ETag") == '"real"'
    assert server.connections == 2
    server.close()


@pytest.mark.parametrize("name, value", [("X-Ok", "line\r\nInjected: yes"), ("Bad Name:", "v"), ("X-Lf", "a\nb")])
def test_exchange_refuses_the_headers_http_client_refuses(name: str, value: str) -> None:
    with pytest.raises(ValueError):  # what http.client does (nothing is sent: no connection yet)
        conn = http.client.HTTPConnection("127.0.0.1", 9)
        conn.putrequest("GET", "/")
        conn.putheader(name, value)
    server = RecordingServer([b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"])
    with pytest.raises(ValueError):
        exchange(http.client.HTTPConnection("127.0.0.1", server.port, timeout=10), "GET", "/", host="h", headers={name: value})
    assert server.requests == []
    server.close()


SUPABASE_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nETag: \"e\"\r\n\r\nabc"


def _supabase_reader(server: RecordingServer) -> RestReader:
    return RestReader(f"http://127.0.0.1:{server.port}/storage/v1", {"apikey": "sb_secret_x"}, timeout=10, connect_timeout=10)


def _read_through(reader: RestReader) -> None:
    reply = reader.get("/object/authenticated/b/k", headers={"Accept-Encoding": "identity", "Range": "bytes=0-2"})
    assert type(reply._response) is LeanResponse
    assert reply.read() == b"abc" and reply.headers.get("etag") == '"e"'
    reply.close()


def test_supabase_reader_exchanges_through_lean_response_with_the_request_http_client_writes() -> None:
    server = RecordingServer([SUPABASE_ANSWER] * 4)
    stdlib = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    for _ in range(2):  # http.client adds `Accept-Encoding: identity` itself when none is given
        stdlib.request("GET", "/storage/v1/object/authenticated/b/k", headers={"apikey": "sb_secret_x", "Range": "bytes=0-2"})
        stdlib.getresponse().read()
    reader = _supabase_reader(server)
    for _ in range(2):
        _read_through(reader)
    reader.close()
    server.close()
    assert server.requests[2:] == server.requests[:2]  # one Accept-Encoding, the Host with its port
    assert server.connections == 2  # each client kept its connection alive


def test_supabase_reader_reconnects_once_when_its_kept_alive_connection_was_closed() -> None:
    server = RecordingServer([SUPABASE_ANSWER] * 2, answers_per_connection=1)
    reader = _supabase_reader(server)
    _read_through(reader)  # its connection goes back to the idle list; the server has hung up on it
    time.sleep(0.1)
    _read_through(reader)  # the dead connection is replaced without an error
    reader.close()
    server.close()
    assert server.connections == 2 and len(server.requests) == 2


def test_a_header_block_with_no_headers_ends_at_once_and_the_next_answer_is_read_whole() -> None:
    """A 100 Continue has no headers: its blank line ends its block (the next answer's head was taken for its headers)."""
    import io

    from migrate.stores.http_exchange import read_headers

    reader = io.BufferedReader(io.BytesIO(b"\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
    assert len(read_headers(reader)) == 0
    assert reader.read() == b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def test_a_refused_header_value_is_not_echoed_in_the_error() -> None:
    """The value may be a key read with a stray newline (apikey, Authorization): the message names the header only."""
    conn = http.client.HTTPConnection("127.0.0.1", 9)  # never connected: the header is refused first
    with pytest.raises(ValueError) as refused:
        exchange(conn, "GET", "/", host="h", headers={"apikey": "sb_secret_abcdef\nX: y"})
    assert "sb_secret_abcdef" not in str(refused.value) and "apikey" in str(refused.value)
