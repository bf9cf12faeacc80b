"""mkh: build a multikernel Linux, boot it in QEMU or on a lab machine, drive and check it."""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import signal
import sys
from collections.abc import Iterator, Sequence
from typing import NoReturn

from harness.cli import bench, dtb, kernel, run, session, suite
from harness.core.errors import EXIT_INFRA, HarnessError, Interrupted, KernelCrash, exit_code
from harness.report import result_json

# The command groups, in the order `mkh --help` lists them.
GROUPS = (kernel, run, session, bench, dtb, suite)


class _Parser(argparse.ArgumentParser):
    """Usage errors are bad input like any other: one line and status 125."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_INFRA, f"mkh: error: {message} (see {self.prog} --help)\n")


def version() -> str:
    """`mkh VERSION (commit COMMIT[, with changes])`, the commit unless outside a git checkout."""
    try:
        number = importlib.metadata.version("mkh")
    except importlib.metadata.PackageNotFoundError:
        number = "unknown"
    commit = result_json.harness_commit()
    if commit is None:
        return f"mkh {number}"
    dirty = ", with changes" if commit["dirty"] else ""
    return f"mkh {number} (commit {commit['commit']}{dirty})"


def parser() -> argparse.ArgumentParser:
    top = _Parser(prog="mkh", description=__doc__)
    top.add_argument("--version", action="version", version=version())
    # A metavar, so that the list shows only the commands with help (not _bisect-step).
    sub = top.add_subparsers(dest="verb", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.register(sub)
    return top


# Signals that end mkh like Ctrl-C: the clean-up runs and the status is 128 + the signal.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _interrupt(signum: int, frame: object) -> None:
    # Later signals must not cut the clean-up (stopping QEMU, keeping logs) short.
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    raise Interrupted(signum)


@contextlib.contextmanager
def _stop_signals_interrupt() -> Iterator[None]:
    saved = {sig: signal.signal(sig, _interrupt) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _notes(exc: BaseException) -> list[str]:
    return list(getattr(exc, "__notes__", []))


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        with _stop_signals_interrupt():
            return int(args.func(args))
    except KernelCrash as exc:
        sys.stderr.write(f"mkh: {exc}\n--- console excerpt ({exc.console}) ---\n{exc.excerpt}\n")
        for extra in _notes(exc):
            sys.stderr.write(f"mkh: {extra}\n")
        return exit_code(exc)
    except HarnessError as exc:
        sys.stderr.write(f"mkh: error: {exc}\n")
        tail = getattr(exc, "tail", "")
        if tail:
            sys.stderr.write(f"--- console tail ---\n{tail[-1500:]}\n")
        for extra in _notes(exc):
            sys.stderr.write(f"mkh: {extra}\n")
        return exit_code(exc)
    except KeyboardInterrupt as exc:
        stopped = exc if isinstance(exc, Interrupted) else Interrupted(signal.SIGINT)
        # After a hang-up the terminal may be gone: the status still tells.
        with contextlib.suppress(OSError):
            sys.stderr.write(
                "; ".join([f"mkh: interrupted by {stopped.signal.name}", *_notes(exc)]) + "\n"
            )
        return exit_code(stopped)
