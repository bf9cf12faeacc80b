"""Stand-ins the unit tests share."""

import struct
from pathlib import Path


def fake_bzimage(path: Path, release: str = "6.12.0-fake") -> Path:
    """A file with an x86 boot protocol header naming `release`."""
    head = bytearray(0x400)
    head[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", head, 0x206, 0x20F)  # boot protocol 2.15
    struct.pack_into("<H", head, 0x20E, 0x100)
    text = f"{release} (fake@fake) #1".encode()
    head[0x300 : 0x300 + len(text)] = text
    path.write_bytes(bytes(head) + b"\0" * 1024)
    return path
