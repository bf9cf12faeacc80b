"""The kernel source: Debian's linux-source-6.12 as a git tree carrying our series.

The pristine source is downloaded with `apt-get download` into the cache,
extracted once and committed as the tag `mkh-base` of a git repository.  The
harness builds from that repository with the series applied as commits; a
developer gets an editable clone with `mkh kernel-tree` and writes the series
back with `mkh export-patches`.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from harness.core import atomic, hostcmd
from harness.core.errors import InfraError
from harness.core.lock import locked
from harness.core.paths import PATCHES_DIR, cache_dir
from harness.core.progress import step

DEB_PACKAGE = "linux-source-6.12"
BASE_TAG = "mkh-base"
SERIES_MARKER = "mkh-series"  # in .git: the digest of the series applied to the shared tree
GIT_ENV = {
    "GIT_AUTHOR_NAME": "mkh",
    "GIT_AUTHOR_EMAIL": "mkh@localhost",
    "GIT_COMMITTER_NAME": "mkh",
    "GIT_COMMITTER_EMAIL": "mkh@localhost",
}


@dataclass(frozen=True)
class KernelSource:
    """A kernel tree ready to configure and build."""

    path: Path
    version: str  # upstream version from the Makefile, e.g. 6.12.117
    origin: str  # where it came from, for people
    fingerprint: str | None  # content identity for caching; None if unknown
    variants: tuple[str, ...] = ()  # build variants (images/linux/<variant>/*.config too)


def series_patches() -> list[Path]:
    """The patches named in images/linux/patches/series, in order."""
    series = PATCHES_DIR / "series"
    if not series.exists():
        return []
    patches = []
    for raw in series.read_text().splitlines():
        name = raw.split("#", 1)[0].strip()
        if not name:
            continue
        patch = PATCHES_DIR / name
        if not patch.is_file():
            raise InfraError(f"{series} names {name}, which does not exist")
        patches.append(patch)
    return patches


def series_digest() -> str:
    digest = hashlib.sha256()
    for patch in series_patches():
        digest.update(patch.name.encode() + b"\0" + patch.read_bytes() + b"\0")
    return digest.hexdigest()


def makefile_version(tree: Path) -> str:
    """VERSION.PATCHLEVEL.SUBLEVEL from a tree's top-level Makefile."""
    try:
        text = (tree / "Makefile").read_text(errors="replace")
    except OSError as exc:
        raise InfraError(f"{tree} is not a kernel tree: {exc.strerror}") from exc
    fields = {}
    for key in ("VERSION", "PATCHLEVEL", "SUBLEVEL"):
        match = re.search(rf"^{key} = (\d+)", text, re.M)
        if not match:
            raise InfraError(f"{tree}/Makefile has no {key}: not a kernel tree")
        fields[key] = match.group(1)
    return "{VERSION}.{PATCHLEVEL}.{SUBLEVEL}".format(**fields)


def git(tree: Path, *args: str) -> str:
    return hostcmd.output(["git", "-C", str(tree), *args])


def _dpkg_newer(a: str, b: str) -> bool:
    return subprocess.run(["dpkg", "--compare-versions", a, "gt", b], check=False).returncode == 0


def _deb_version(deb: Path) -> str:
    return deb.name.split("_")[1]


def fetch_deb() -> Path:
    """The linux-source .deb: the newest one in the cache, else downloaded now."""
    downloads = cache_dir("downloads")
    pattern = f"{DEB_PACKAGE}_*_all.deb"
    with locked(downloads, f"the {DEB_PACKAGE} download"):
        debs = sorted(downloads.glob(pattern))
        if not debs:
            _download(downloads)
            debs = sorted(downloads.glob(pattern))
            if not debs:
                raise InfraError(f"apt-get download left no {DEB_PACKAGE} package in {downloads}")
    newest = debs[0]
    for deb in debs[1:]:
        if _dpkg_newer(_deb_version(deb), _deb_version(newest)):
            newest = deb
    return newest


def _download(downloads: Path) -> None:
    """`apt-get download` into a scratch directory, then move the package into `downloads`."""
    with (
        tempfile.TemporaryDirectory(dir=downloads, prefix=".download-") as tmp,
        step(f"Downloading {DEB_PACKAGE} (apt-get download)") as st,
    ):
        hostcmd.run_logged(
            ["apt-get", "download", DEB_PACKAGE],
            downloads / "download.log",
            cwd=Path(tmp),
            step=st,
            what="apt-get download",
        )
        for deb in Path(tmp).glob("*.deb"):
            os.replace(deb, downloads / deb.name)


def _extract(deb: Path, dest: Path) -> None:
    """Unpack the source tarball inside the .deb into dest and commit it as mkh-base."""
    log = dest.with_name(dest.name + ".log")
    log.unlink(missing_ok=True)
    with atomic.new_dir(dest) as work:
        _unpack(deb, work, log)
        _commit_base(deb, work, log)


def _unpack(deb: Path, work: Path, log: Path) -> None:
    with (
        step(f"Extracting {deb.name}") as st,
        tempfile.TemporaryDirectory(dir=work.parent, prefix=".unpack-") as tmp,
    ):
        unpacked = Path(tmp)
        tarball = f"./usr/src/{DEB_PACKAGE}.tar.xz"
        hostcmd.run_logged(
            [
                "sh",
                "-c",
                f'dpkg-deb --fsys-tarfile "$0" | tar -x -C "$1" "{tarball}"',
                deb,
                unpacked,
            ],
            log,
            what="dpkg-deb",
        )
        hostcmd.run_logged(
            ["tar", "-xvJf", unpacked / tarball, "-C", work, "--strip-components=1"],
            log,
            step=st,
            what="tar",
        )


def _commit_base(deb: Path, work: Path, log: Path) -> None:
    with step("Committing the pristine source to git") as st:
        env = dict(GIT_ENV)
        hostcmd.run_logged(["git", "init", "-q"], log, cwd=work, env=env)
        st.update("git add")
        hostcmd.run_logged(["git", "add", "-A", "-f"], log, cwd=work, env=env)
        message = f"Linux {makefile_version(work)} from Debian {DEB_PACKAGE} {_deb_version(deb)}"
        st.update("git commit")
        hostcmd.run_logged(["git", "commit", "-q", "-m", message], log, cwd=work, env=env)
        if _drop_debian_ignore(work / ".gitignore"):
            hostcmd.run_logged(
                ["git", "commit", "-q", "-a", "-m", IGNORE_FIX], log, cwd=work, env=env
            )
        hostcmd.run_logged(["git", "tag", BASE_TAG], log, cwd=work, env=env)


IGNORE_FIX = """gitignore: stop ignoring the whole tree

Debian's linux-source adds "/*" to .gitignore for its packaging, which hides
every new file a patch adds.  Drop it so the series can add files."""


def _drop_debian_ignore(gitignore: Path) -> bool:
    """Remove Debian's top-level "/*" rule; True if the file changed."""
    if not gitignore.exists():
        return False
    lines = gitignore.read_text().splitlines(keepends=True)
    kept = [line for line in lines if line.strip() not in ("/*", "!/debian/")]
    if kept == lines:
        return False
    gitignore.write_text("".join(kept))
    return True


def base_repo() -> tuple[Path, str]:
    """The git repository holding pristine Debian source, and the Debian version."""
    deb = fetch_deb()
    debver = _deb_version(deb)
    dest = cache_dir("linux") / re.sub(r"[^A-Za-z0-9.+-]", "-", f"{DEB_PACKAGE}_{debver}")
    # The tree appears complete or not at all, so only its creation needs the lock.
    if not (dest / ".git").is_dir():
        with locked(dest, f"the kernel source tree {dest}"):
            if not (dest / ".git").is_dir():
                _extract(deb, dest)
    return dest, debver


def apply_series(tree: Path, log: Path) -> None:
    """Reset `tree` to mkh-base and apply the series with `git am`."""
    patches = series_patches()
    # A run interrupted in the middle of `git am` leaves its state behind.
    subprocess.run(["git", "-C", str(tree), "am", "--abort"], capture_output=True, check=False)
    hostcmd.run_logged(["git", "checkout", "-q", "-f", "--detach", BASE_TAG], log, cwd=tree)
    hostcmd.run_logged(["git", "clean", "-q", "-f", "-d"], log, cwd=tree)
    for patch in patches:
        try:
            hostcmd.run_logged(
                ["git", "am", "-q", "--committer-date-is-author-date", patch],
                log,
                cwd=tree,
                env=GIT_ENV,
                what=f"applying {patch.name}",
            )
        except InfraError:
            subprocess.run(["git", "-C", str(tree), "am", "--abort"], check=False)
            raise


def _series_applied(tree: Path, digest: str) -> bool:
    marker = tree / ".git" / SERIES_MARKER
    if not marker.exists() or marker.read_text() != digest:
        return False
    return not git(tree, "status", "--porcelain", "--untracked-files=no").strip()


@contextmanager
def default_source() -> Iterator[KernelSource]:
    """Debian's linux-source with the series applied, reusing the last application.

    The tree is shared by every mkh using the cache: the body holds it (a shared
    lock) so nobody switches it to another series underneath a build, and
    switching it takes the lock exclusively.
    """
    tree, debver = base_repo()
    digest = series_digest()
    what = f"the kernel source tree {tree}"
    while True:
        with locked(tree, what, shared=True):
            if _series_applied(tree, digest):
                version = makefile_version(tree)
                count = len(series_patches())
                origin = f"Debian {DEB_PACKAGE} {debver} (Linux {version}) + {count} patches"
                yield KernelSource(tree, version, origin, f"debian:{debver}:series:{digest}")
                return
        with locked(tree, what):
            # Another process may have applied it (or switched it) while this one waited.
            if not _series_applied(tree, digest):
                with step(f"Applying the series ({len(series_patches())} patches)"):
                    apply_series(tree, tree.with_name(tree.name + ".log"))
                (tree / ".git" / SERIES_MARKER).write_text(digest)


def user_source(tree: Path) -> KernelSource:
    """A developer's own tree, built as it is."""
    tree = tree.resolve()
    version = makefile_version(tree)
    origin = f"tree {tree} (Linux {version})"
    if (tree / ".git").exists():
        head = subprocess.run(
            ["git", "-C", str(tree), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        if head:
            origin += f" at {head}"
    return KernelSource(tree, version, origin, None)


def make_kernel_tree(dest: Path, with_series: bool = True) -> Path:
    """Clone the pristine repository to `dest` and apply the series as editable commits.

    Without the series the clone is the stock Debian source (branch 'series'
    then starts empty).
    """
    dest = dest.resolve()
    if dest.exists() and any(dest.iterdir()):
        raise InfraError(f"{dest} already exists and is not empty; remove it or pick another path")
    repo, _ = base_repo()
    log = Path(str(dest) + ".log")
    log.unlink(missing_ok=True)
    with step(f"Cloning the kernel tree to {dest}"):
        with locked(repo, f"the kernel source tree {repo}", shared=True):
            hostcmd.run_logged(["git", "clone", "-q", "--no-checkout", repo, dest], log)
        hostcmd.run_logged(["git", "checkout", "-q", "-b", "series", BASE_TAG], log, cwd=dest)
    patches = series_patches() if with_series else []
    with step(f"Applying the series ({len(patches)} patches)"):
        for patch in patches:
            hostcmd.run_logged(
                ["git", "am", "-q", patch],
                log,
                cwd=dest,
                env=GIT_ENV,
                what=f"applying {patch.name}",
            )
    return dest


def export_patches(tree: Path, base: str = BASE_TAG) -> list[Path]:
    """Write the commits base..HEAD of `tree` as the series; returns the new patch files."""
    tree = tree.resolve()
    staging = Path(tempfile.mkdtemp(dir=cache_dir("export")))
    hostcmd.output(
        [
            "git",
            "-C",
            str(tree),
            "format-patch",
            "-q",
            "--zero-commit",
            "--no-signature",
            "--no-numbered",
            "-o",
            str(staging),
            f"{base}..HEAD",
        ]
    )
    produced = sorted(staging.glob("*.patch"))
    for old in PATCHES_DIR.glob("*.patch"):
        old.unlink()
    written = []
    for patch in produced:
        target = PATCHES_DIR / patch.name
        shutil.copyfile(patch, target)
        written.append(target)
    lines = "".join(p.name + "\n" for p in written)
    (PATCHES_DIR / "series").write_text(lines)
    shutil.rmtree(staging)
    return written
