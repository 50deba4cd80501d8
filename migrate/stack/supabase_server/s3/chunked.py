"""`aws-chunked` request bodies (SigV4 streaming uploads): `<hex-size>[;chunk-signature=...]\\r\\n<data>\\r\\n`
... a zero-size chunk, then optional trailers (e.g. x-amz-checksum-crc32) and a blank line.

AWS: sigv4-streaming.html and sigv4-streaming-trailers.html. Upstream checks
each chunk signature (signature-v4-stream.ts); this server takes the framing
off and does not re-check them (the request itself was verified).
"""

from __future__ import annotations

from typing import Iterator

from migrate.stack.supabase_server.wire import BodyReader, MalformedBody

CHUNK = 1024 * 1024


class AwsChunkedBody:
    """The payload of an aws-chunked body, read through the HTTP body."""

    def __init__(self, body: BodyReader):
        self._body = body
        self._buffer = b""

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
            try:
                size = int(header.split(b";", 1)[0].strip(), 16)
            except ValueError as err:
                raise MalformedBody(f"aws-chunked: bad chunk size line {header[:40]!r}") from err
            if size == 0:
                while self._line():  # trailers up to the blank line
                    pass
                return
            while size:
                if not self._buffer and not self._fill():
                    raise MalformedBody("aws-chunked: the body ended inside a chunk")
                piece, self._buffer = self._buffer[:size], self._buffer[size:]
                size -= len(piece)
                yield piece
            if self._line() != b"":
                raise MalformedBody("aws-chunked: a chunk is not followed by CRLF")
