"""The x86 boot protocol header of a bzImage: is a file a kernel, and which version.

See Documentation/arch/x86/boot.rst: the real-mode header carries the magic
"HdrS" at offset 0x202, the protocol version at 0x206, and at 0x20e the offset
(minus 0x200) of a NUL-terminated version string such as
"6.12.117 (mkh@mkh) #1 SMP ...".
"""

from __future__ import annotations

import struct
from pathlib import Path

from harness.core.errors import InfraError

MAGIC_OFFSET = 0x202
MAGIC = b"HdrS"
PROTOCOL_OFFSET = 0x206
VERSION_POINTER_OFFSET = 0x20E
HEADER_BYTES = 0x4000  # the setup sectors hold the version string


def _header(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            return handle.read(HEADER_BYTES)
    except OSError as exc:
        raise InfraError(f"cannot read {path}: {exc.strerror}") from exc


def check(path: Path) -> None:
    """InfraError unless `path` is a readable file with an x86 boot protocol header."""
    if not path.is_file():
        raise InfraError(f"{path}: no such file")
    head = _header(path)
    if head[MAGIC_OFFSET : MAGIC_OFFSET + len(MAGIC)] != MAGIC:
        raise InfraError(f'{path} is not a bzImage (no "HdrS" boot header at {MAGIC_OFFSET:#x})')


def version(path: Path) -> str | None:
    """The kernel release the header names (e.g. "6.12.117"), None if it names none."""
    head = _header(path)
    if head[MAGIC_OFFSET : MAGIC_OFFSET + len(MAGIC)] != MAGIC:
        return None
    (protocol,) = struct.unpack_from("<H", head, PROTOCOL_OFFSET)
    (pointer,) = struct.unpack_from("<H", head, VERSION_POINTER_OFFSET)
    if protocol < 0x200 or pointer == 0:
        return None
    text = head[pointer + 0x200 :].partition(b"\0")[0].decode(errors="replace")
    return text.split(" ", 1)[0] or None
