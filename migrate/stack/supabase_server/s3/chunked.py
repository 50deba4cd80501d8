"""`aws-chunked` request bodies (SigV4 streaming uploads): `<hex-size>[;chunk-signature=...]\\r\\n<data>\\r\\n`
... a zero-size chunk, then optional trailers (e.g. x-amz-checksum-crc32) and a blank line.

AWS: sigv4-streaming.html and sigv4-streaming-trailers.html. With a verifier
each chunk's `chunk-signature` is checked once its data has arrived, before
the next byte is handed on, as upstream's signature-v4-stream.ts does; a bad
one raises SignatureError and the upload is dropped, never committed. A
trailer's own signature (x-amz-trailer-signature) is not checked.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Iterator

from migrate.stack.supabase_server.wire import BodyReader, MalformedBody

if TYPE_CHECKING:
    from migrate.stack.supabase_server.s3.sigv4 import ChunkVerifier

CHUNK = 1024 * 1024


class AwsChunkedBody:
    """The payload of an aws-chunked body, read through the HTTP body."""

    def __init__(self, body: BodyReader, *, verifier: "ChunkVerifier | None" = None):
        self._body = body
        self._buffer = b""
        self._verifier = verifier

    def _fill(self) -> bool:
        data = self._body.read(CHUNK)
        self._buffer += data
        return bool(data)

    def _line(self) -> bytes:
        while b"\r\n" not in self._buffer:
            if len(self._buffer) > 64 * 1024 or not self._fill():
                raise MalformedBody("aws-chunked: a chunk header line never ends")
        line, _, self._buffer = self._buffer.partition(b"\r\n")
        return line

    def chunks(self) -> Iterator[bytes]:
        """The payload bytes, chunk by chunk."""
        while True:
            header = self._line()
            size_field, _, extension = header.partition(b";")
            try:
                size = int(size_field.strip(), 16)
            except ValueError as err:
                raise MalformedBody(f"aws-chunked: bad chunk size line {header[:40]!r}") from err
            name, _, value = extension.decode("latin-1").partition("=")
            signature = value.strip() if name.strip() == "chunk-signature" else None
            digest = hashlib.sha256()
            held: list[bytes] = []  # with a verifier: the chunk, until its signature is checked
            remaining = size
            while remaining:
                if not self._buffer and not self._fill():
                    raise MalformedBody("aws-chunked: the body ended inside a chunk")
                piece, self._buffer = self._buffer[:remaining], self._buffer[remaining:]
                remaining -= len(piece)
                if self._verifier is None:
                    yield piece
                else:
                    digest.update(piece)
                    held.append(piece)
            if self._verifier is not None:
                self._verifier.check(digest.hexdigest(), signature)
                if held:
                    yield b"".join(held)
            if size == 0:
                while self._line():  # trailers up to the blank line
                    pass
                return
            if self._line() != b"":
                raise MalformedBody("aws-chunked: a chunk is not followed by CRLF")
