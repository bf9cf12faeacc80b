"""Configure and build a kernel, reusing a cached bzImage when nothing changed."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from harness.build import gcov, kconfig
from harness.build.source import KernelSource
from harness.core import atomic, hostcmd
from harness.core.errors import InfraError
from harness.core.lock import locked
from harness.core.paths import LINUX_RECIPE_DIR, cache_dir
from harness.core.progress import Counted, note, step

# Bump when the way a kernel is configured or built changes.
RECIPE = "kernel-2"
ARCH = "x86_64"
REQUIRES = "# mkh: requires "
# In a build directory: how many objects its last build made.
OBJECT_COUNT = ".mkh-objects"
# Fixed build identity so ccache hits and builds are reproducible.
BUILD_ENV = {
    "KBUILD_BUILD_TIMESTAMP": "1970-01-01",
    "KBUILD_BUILD_USER": "mkh",
    "KBUILD_BUILD_HOST": "mkh",
}


@dataclass(frozen=True)
class Companions:
    """The files that belong with a bzImage: its vmlinux (for gdb) and System.map."""

    vmlinux: Path | None
    system_map: Path | None


def companions(bzimage: Path) -> Companions:
    """vmlinux and System.map next to `bzimage` (the cache) or at the top of its build tree."""
    found: dict[str, Path | None] = {}
    for name in ("vmlinux", "System.map"):
        places = [bzimage.parent / name]
        if bzimage.parent.name == "boot" and len(bzimage.parents) > 3:
            places.append(bzimage.parents[3] / name)  # <tree>/arch/x86/boot/bzImage
        found[name] = next((p for p in places if p.is_file()), None)
    return Companions(found["vmlinux"], found["System.map"])


@dataclass(frozen=True)
class BuiltKernel:
    bzimage: Path
    config: Path
    version: str
    origin: str
    reused: bool


def fragments(tree: Path | None = None, variants: tuple[str, ...] = ()) -> list[Path]:
    """The config fragments, images/linux/*.config in name order, then each variant's.

    A variant's fragments are images/linux/<variant>/*.config (debug/,
    coverage/).  A fragment whose first line is `# mkh: requires PATH`
    applies only to trees that have PATH (the series' fragment needs the
    series).
    """
    extra = [f for v in variants for f in sorted((LINUX_RECIPE_DIR / v).glob("*.config"))]
    every = [*sorted(LINUX_RECIPE_DIR.glob("*.config")), *extra]
    return [frag for frag in every if tree is None or fits(frag, tree)]


def requirement(frag: Path) -> str | None:
    """The path (relative to a kernel tree) a fragment needs, if it names one."""
    first = frag.read_text().partition("\n")[0]
    return first.removeprefix(REQUIRES).strip() if first.startswith(REQUIRES) else None


def fits(frag: Path, tree: Path) -> bool:
    needs = requirement(frag)
    return needs is None or (tree / needs).exists()


def toolchain_id() -> str:
    """First line of `gcc --version` and `ld --version`."""
    gcc = hostcmd.output(["gcc", "--version"]).splitlines()[0]
    ld = hostcmd.output(["ld", "--version"]).splitlines()[0]
    return f"{gcc} | {ld}"


def cache_key(source: KernelSource) -> str:
    assert source.fingerprint is not None
    digest = hashlib.sha256()
    for part in (RECIPE, source.fingerprint, toolchain_id()):
        digest.update(part.encode() + b"\0")
    for frag in fragments(source.path, source.variants):
        digest.update(frag.name.encode() + b"\0" + frag.read_bytes() + b"\0")
    return digest.hexdigest()[:20]


def _make(source: KernelSource, out: Path | None) -> list[str]:
    cmd = ["make", "-C", str(source.path), f"ARCH={ARCH}"]
    if out is not None:
        cmd.append(f"O={out}")
    if shutil.which("ccache"):
        cmd.append("CC=ccache gcc")
    return cmd


def _build_env() -> dict[str, str]:
    env = dict(BUILD_ENV)
    env["CCACHE_DIR"] = os.environ.get("CCACHE_DIR") or str(cache_dir("ccache"))
    return env


def configure(source: KernelSource, out: Path | None, log: Path) -> Path:
    """tinyconfig + fragments + olddefconfig; every fragment option must survive."""
    chosen = fragments(source.path, source.variants)
    for frag in sorted(set(fragments(variants=source.variants)) - set(chosen)):
        note(f"{source.path} has no {requirement(frag)}; not applying {frag.name}")
    wanted = kconfig.merge_fragments(chosen)
    make = _make(source, out)
    config = (out or source.path) / ".config"
    with step("Configuring (tinyconfig + images/linux/*.config)") as st:
        hostcmd.run_logged(
            [*make, "tinyconfig"], log, env=_build_env(), step=st, what="make tinyconfig"
        )
        with config.open("a") as handle:
            handle.write(kconfig.render(wanted))
        hostcmd.run_logged(
            [*make, "olddefconfig"], log, env=_build_env(), step=st, what="make olddefconfig"
        )
    lost = kconfig.missing(wanted, config.read_text())
    if lost:
        raise InfraError("config options were dropped by Kconfig:\n  " + "\n  ".join(lost), config)
    return config


def compile_kernel(source: KernelSource, out: Path | None, log: Path) -> Path:
    jobs = str(os.cpu_count() or 1)
    where = out or source.path
    # How many objects the last build here made: the figure progress counts towards.
    count = where / OBJECT_COUNT
    expected = int(count.read_text()) if count.is_file() and count.read_text().isdigit() else None
    with step(f"Building Linux {source.version} (log: {log})") as st:
        counted = Counted(st, expected)
        hostcmd.run_logged(
            [*_make(source, out), f"-j{jobs}", "bzImage"],
            log,
            env=_build_env(),
            step=counted,
            what="kernel build",
        )
    if counted.done:
        count.write_text(f"{max(counted.done, expected or 0)}\n")
    return where / "arch" / "x86" / "boot" / "bzImage"


def _tree_clean(tree: Path) -> bool:
    return not (tree / ".config").exists() and not (tree / "include" / "config").exists()


def build(
    source: KernelSource, build_dir: Path | None = None, in_tree: bool = False
) -> BuiltKernel:
    """Build `source`.  Sources with a fingerprint reuse a cached bzImage by content hash.

    A process that finds another one building the same image waits for it and
    then reuses what it built.
    """
    if source.fingerprint is None:
        return _build_in(source, build_dir, in_tree, None)
    key = cache_key(source)
    stored = cache_dir("images") / f"kernel-{key}"
    with locked(stored, f"the kernel image {stored.name}"):
        info = stored / "info.json"
        if info.exists():
            meta = json.loads(info.read_text())
            return BuiltKernel(
                stored / "bzImage", stored / "config", meta["version"], meta["origin"], reused=True
            )
        return _build_in(source, build_dir, in_tree, stored)


def _build_in(
    source: KernelSource, build_dir: Path | None, in_tree: bool, stored: Path | None
) -> BuiltKernel:
    """Configure and compile holding the build directory's lock; keep the result in `stored`."""
    out: Path | None
    if in_tree:
        out = None
    else:
        name = hashlib.sha256(os.fsencode(source.path)).hexdigest()[:12]
        variant = "".join(f"-{v}" for v in source.variants)
        out = (
            build_dir.resolve()
            if build_dir
            else cache_dir("build") / f"{source.path.name}-{name}{variant}"
        )
        out.mkdir(parents=True, exist_ok=True)
        if not _tree_clean(source.path):
            raise InfraError(
                f"{source.path} has been configured in place; run 'make mrproper' there "
                "or build it in place with --in-tree"
            )
    where = out or source.path
    with locked(where, f"the kernel build directory {where}"):
        log = where / "mkh-build.log"
        log.unlink(missing_ok=True)
        note(f"building {source.origin}")
        configure(source, out, log)
        bzimage = compile_kernel(source, out, log)
        config = where / ".config"
        kept = gcov.keep(where, source.path) if gcov.profiled(config) else None
        if stored is None:
            return BuiltKernel(bzimage, config, source.version, source.origin, reused=False)
        with atomic.new_dir(stored) as scratch:
            shutil.copyfile(bzimage, scratch / "bzImage")
            shutil.copyfile(config, scratch / "config")
            for name in ("vmlinux", "System.map"):
                shutil.copyfile(where / name, scratch / name)
            if kept is not None:
                shutil.copytree(kept, scratch / gcov.IMAGE_NOTES)
            meta = {
                "version": source.version,
                "origin": source.origin,
                "key": stored.name.removeprefix("kernel-"),
            }
            (scratch / "info.json").write_text(json.dumps(meta, indent=1))
    return BuiltKernel(
        stored / "bzImage", stored / "config", source.version, source.origin, reused=False
    )
