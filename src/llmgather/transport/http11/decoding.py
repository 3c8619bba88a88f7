"""Compressed answers (gzip, deflate) decoded as their bytes arrive."""

from __future__ import annotations

import zlib


class DecodeError(Exception):
    pass


class Decoder:
    """A gzip or deflate body decoded as it arrives."""

    __slots__ = ("_inflate", "_raw_fallback")

    def __init__(self, wbits: int, raw_fallback: bool) -> None:
        self._inflate = zlib.decompressobj(wbits)
        self._raw_fallback = raw_fallback

    @classmethod
    def for_encoding(cls, encoding: str) -> Decoder | None:
        encoding = encoding.strip().lower()
        if encoding in ("gzip", "x-gzip"):
            return cls(16 + zlib.MAX_WBITS, raw_fallback=False)
        if encoding == "deflate":
            # "deflate" should be zlib-wrapped; some servers send it raw.
            return cls(zlib.MAX_WBITS, raw_fallback=True)
        return None  # identity, or an encoding not asked for: handed over as it came

    def decode(self, data: bytes) -> bytes:
        try:
            return self._inflate.decompress(data)
        except zlib.error:
            if not self._raw_fallback:
                raise DecodeError from None
            self._raw_fallback = False
            self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
            return self.decode(data)

    def flush(self) -> bytes:
        try:
            rest = self._inflate.flush()
        except zlib.error:
            raise DecodeError from None
        if not self._inflate.eof:
            raise DecodeError  # the compressed stream stopped short of its end
        return rest
