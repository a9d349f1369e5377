"""Decoding Loki push requests, for the gateway's `/loki/api/v1/push` and `/api/logs`.

`decode_push(body, content_type, content_encoding)` accepts what promtail, Grafana Alloy
and Fluent Bit send: snappy-compressed protobuf `logproto.PushRequest`
(`application/x-protobuf`), JSON (`application/json`), either optionally gzip- or
deflate-compressed by `Content-Encoding`. It raises `PushDecodeError` whose `status` is
the HTTP answer Loki gives (415 for an unknown content type, 400 for a bad body).
"""

from __future__ import annotations

import gzip
import zlib

import cramjam

from clymene.logs import loki_pb

PUSH_PATHS = ("/loki/api/v1/push", "/api/logs")


class PushDecodeError(ValueError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def decode_push(body: bytes, content_type: str, content_encoding: str = "",
                max_size: int = 100 << 20) -> list[loki_pb.Stream]:
    encoding = (content_encoding or "").strip().lower()
    try:
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        elif encoding not in ("", "identity", "snappy"):
            raise PushDecodeError(415, f"unsupported Content-Encoding {encoding!r}")
    except (OSError, zlib.error, EOFError) as exc:
        raise PushDecodeError(400, f"cannot decompress the body: {exc}") from None
    if len(body) > max_size:
        raise PushDecodeError(413, f"body larger than {max_size} bytes")
    ctype = (content_type or "").split(";")[0].strip().lower()
    try:
        if ctype == "application/json":
            return loki_pb.decode_push_json(body)
        if ctype in ("application/x-protobuf", ""):
            return loki_pb.decode_push_request(loki_pb.decompress(body))
    except (ValueError, UnicodeDecodeError, cramjam.DecompressionError) as exc:
        raise PushDecodeError(400, f"cannot decode the push request: {exc}") from None
    raise PushDecodeError(415, f"unsupported Content-Type {content_type!r}")
