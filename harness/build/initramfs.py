"""The guest initramfs: static busybox, guest/init and the static helpers in guest/.

Archives are reproducible: entries sorted, owned by root, with a fixed mtime,
and gzip without a timestamp.  Extra files for a single run (`--put`) go into
a second, uncompressed archive appended to the cached one; the kernel unpacks
both.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path, PurePosixPath

from harness.core import atomic, hostcmd
from harness.core.errors import InfraError
from harness.core.lock import locked
from harness.core.paths import GUEST_DIR, cache_dir
from harness.core.progress import step

RECIPE = "initramfs-1"
# Where the guest finds a kernel and an initramfs to load into instances.
BOOT_KERNEL = "/boot/bzImage"
BOOT_INITRAMFS = "/boot/initramfs.cpio.gz"
BUSYBOX = Path("/bin/busybox")
DIRS = (
    "bin",
    "sbin",
    "usr/bin",
    "usr/sbin",
    "proc",
    "sys",
    "dev",
    "tmp",
    "run",
    "root",
    "etc",
    "mnt",
    "boot",
)


def _helpers() -> list[Path]:
    return sorted(GUEST_DIR.glob("*.c"))


def _require_static_busybox() -> None:
    if not BUSYBOX.exists():
        raise InfraError(f"{BUSYBOX} is missing: install busybox-static")
    headers = hostcmd.output(["readelf", "-l", str(BUSYBOX)])
    if "INTERP" in headers:
        raise InfraError(f"{BUSYBOX} is dynamically linked: install busybox-static")


def cache_key() -> str:
    digest = hashlib.sha256(RECIPE.encode())
    digest.update(BUSYBOX.read_bytes())
    digest.update(hostcmd.output(["gcc", "--version"]).encode())
    for path in sorted(GUEST_DIR.rglob("*")):
        if path.is_file():
            name = str(path.relative_to(GUEST_DIR)).encode()
            digest.update(name + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:20]


def pack(staging: Path) -> bytes:
    """A newc cpio archive of `staging`, with normalised owners and times."""
    for path in sorted(staging.rglob("*"), reverse=True):
        os.utime(path, (0, 0), follow_symlinks=False)
    names = sorted(str(p.relative_to(staging)) for p in staging.rglob("*"))
    done = subprocess.run(
        ["cpio", "--quiet", "-o", "-H", "newc", "--reproducible", "-R", "0:0"],
        input="\n".join(names).encode() + b"\n",
        cwd=staging,
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        raise InfraError(f"cpio failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout


def _install_busybox(root: Path) -> None:
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    for applet in hostcmd.output([str(BUSYBOX), "--list-full"]).split():
        link = root / applet
        if applet == "bin/busybox" or link.exists():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(root / "bin" / "busybox", link.parent))


def _compile(source: Path, out: Path, log: Path) -> None:
    hostcmd.run_logged(
        ["gcc", "-static", "-O2", "-Wall", "-Wextra", "-Werror", "-o", out, source],
        log,
        what=f"compiling guest/{source.name}",
    )


def _compile_helpers(root: Path, log: Path) -> None:
    for source in _helpers():
        _compile(source, root / "bin" / source.stem, log)


def helper(name: str) -> Path:
    """One static helper of guest/ (`mkctl`) on its own, cached: for a machine's own OS."""
    source = GUEST_DIR / f"{name}.c"
    target = cache_dir("images") / f"{name}-{cache_key()}"
    with locked(target, f"the helper {target.name}"):
        if not target.exists():
            with atomic.new_file(target, mode=0o755) as scratch:
                _compile(source, scratch, target.with_suffix(".log"))
    return target


def build() -> Path:
    """The cached base initramfs (gzip-compressed cpio)."""
    _require_static_busybox()
    key = cache_key()
    target = cache_dir("images") / f"initramfs-{key}.cpio.gz"
    with locked(target, f"the initramfs {target.name}"):
        if not target.exists():
            _build(target)
    return target


def _build(target: Path) -> None:
    log = target.with_suffix(".log")
    log.unlink(missing_ok=True)
    with step("Building the initramfs"), tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in DIRS:
            (root / name).mkdir(parents=True, exist_ok=True)
        _install_busybox(root)
        _compile_helpers(root, log)
        shutil.copytree(GUEST_DIR / "rootfs", root, symlinks=True, dirs_exist_ok=True)
        shutil.copy2(GUEST_DIR / "init", root / "init")
        (root / "init").chmod(0o755)
        archive = gzip.compress(pack(root), compresslevel=9, mtime=0)
    atomic.write_bytes(target, archive)


def with_boot_files(base: Path, kernel: Path) -> Path:
    """`base` plus /boot/bzImage (`kernel`) and /boot/initramfs.cpio.gz (`base`).

    The guest then carries a kernel and an initramfs to load into instances.
    Cached per kernel and base.
    """
    digest = hashlib.sha256(kernel.read_bytes()).hexdigest()[:16]
    target = cache_dir("images") / f"{base.name.split('.')[0]}-boot-{digest}.img"
    with locked(target, f"the boot image {target.name}"):
        if not target.exists():
            with atomic.new_file(target) as scratch:
                with_files(base, [(kernel, BOOT_KERNEL), (base, BOOT_INITRAMFS)], scratch)
    return target


def guest_path(dest: str) -> PurePosixPath:
    """Validate an absolute guest path for a file put into the image."""
    path = PurePosixPath(dest)
    if not path.is_absolute() or ".." in path.parts or path == PurePosixPath("/"):
        raise InfraError(f"guest path must be absolute and plain: {dest!r}")
    return path


def with_files(base: Path, files: list[tuple[Path, str]], out: Path) -> Path:
    """Write `base` plus an archive of `files` (host path, guest path) to `out`."""
    if not files:
        return base
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for src, dest in files:
            if not src.is_file():
                raise InfraError(f"--put source {src} is not a readable file")
            target = root / guest_path(dest).relative_to("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)
            target.chmod(src.stat().st_mode & 0o7777)
        extra = pack(root)
    head = base.read_bytes()
    with out.open("wb") as handle:
        handle.write(head)
        # The kernel finds an appended uncompressed archive only at a 4-byte
        # boundary; it skips the zero padding in between.
        handle.write(b"\0" * (-len(head) % 4))
        handle.write(extra)
    return out
