"""Hostile files for tests of the decoders and of every service and command that reads mask files: zips built in
memory and then damaged the way attackers do (encryption flags, unknown compression methods, flipped bytes)."""

from __future__ import annotations

import io
import struct
import zipfile

ENCRYPTED = 0x1
"""The general-purpose flag bit that marks a zip member as encrypted."""


def zip_of(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A zip archive of `members` (name -> bytes)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def patch_zip_headers(data: bytes, *, flags: int = 0, method: int | None = None) -> bytes:
    """`data` (a zip) with `flags` or-ed into, and `method` written over, every local and central header
    (`flags=ENCRYPTED`: an encrypted-looking archive)."""
    out = bytearray(data)
    for signature, flags_at, method_at in ((b"PK\x03\x04", 6, 8), (b"PK\x01\x02", 8, 10)):
        at = out.find(signature)
        while at != -1:
            struct.pack_into(
                "<H", out, at + flags_at, struct.unpack_from("<H", out, at + flags_at)[0] | flags
            )
            if method is not None:
                struct.pack_into("<H", out, at + method_at, method)
            at = out.find(signature, at + 4)
    return bytes(out)


def flip_byte(data: bytes, marker: bytes, offset: int) -> bytes:
    """`data` with the byte `offset` past the first `marker` inverted (a corrupt member, a bad CRC)."""
    out = bytearray(data)
    out[out.find(marker) + offset] ^= 0xFF
    return bytes(out)
