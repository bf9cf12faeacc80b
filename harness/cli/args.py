"""What several commands parse alike: argument types, the kernel choice, the machine's options."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from harness.build import images, initramfs
from harness.core import sizes
from harness.core.errors import InfraError
from harness.target.machine import free_port
from harness.target.options import MAX_SMP, TRANSPORTS, TargetOptions
from harness.target.protocol import Completed

DEFAULT_TIMEOUT = 300.0
DEFAULT_MEMORY = "2G"
DEFAULT_BOOT_TIMEOUT = 120.0
ACCELS = ("auto", "kvm", "tcg")


def put_spec(spec: str) -> tuple[Path, str]:
    src, sep, dest = spec.partition(":")
    if not sep or not src or not dest:
        raise argparse.ArgumentTypeError(f"expected SRC:DEST, got {spec!r}")
    if not Path(src).is_file():
        raise argparse.ArgumentTypeError(f"{src}: no such file")
    try:
        initramfs.guest_path(dest)
    except InfraError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return Path(src), dest


def existing_file(text: str) -> Path:
    if not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"{text}: no such file")
    return Path(text)


@dataclass(frozen=True)
class Smp:
    """--smp N or --smp N,threads=T, as QEMU's -smp takes them."""

    cpus: int
    threads: int = 1


def smp(text: str) -> Smp:
    count, _, rest = text.partition(",")
    threads = 1
    if rest:
        key, _, value = rest.partition("=")
        if key != "threads" or not value.isdigit() or int(value) < 1:
            raise argparse.ArgumentTypeError(
                f"{text!r}: expected N or N,threads=T (threads per core)"
            )
        threads = int(value)
    try:
        cpus = int(count)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {count!r}") from None
    if not 1 <= cpus <= MAX_SMP:
        raise argparse.ArgumentTypeError(f"must be 1 to {MAX_SMP} (CONFIG_NR_CPUS), got {cpus}")
    if cpus % threads:
        raise argparse.ArgumentTypeError(f"{cpus} CPUs are not whole cores of {threads} threads")
    return Smp(cpus, threads)


def memory(text: str) -> str:
    try:
        sizes.qemu(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text}")
    return value


def size(text: str) -> int:
    """A byte count with an optional K/M/G/... suffix (as mkkernel_pool= takes)."""
    try:
        return sizes.kernel(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_kernel_choice(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("kernel (default: Debian linux-source-6.12 + the series)")
    group.add_argument("--kernel", type=Path, metavar="BZIMAGE", help="boot this prebuilt bzImage")
    group.add_argument(
        "--kernel-tree",
        type=Path,
        metavar="PATH",
        help="build this kernel source tree (out of tree unless --in-tree)",
    )
    group.add_argument(
        "--in-tree",
        action="store_true",
        help="build --kernel-tree in place instead of in the cache",
    )
    group.add_argument(
        "--build-dir",
        type=Path,
        metavar="DIR",
        help="output directory (O=) for --kernel-tree builds",
    )
    group.add_argument(
        "--debug-kernel",
        action="store_true",
        help="the debug build: KASAN, lockdep, atomic-sleep checks, debug info "
        "(images/linux/debug/; default from MKH_DEBUG_KERNEL=1)",
    )


def add_machine(parser: argparse.ArgumentParser) -> None:
    add_kernel_choice(parser)
    group = parser.add_argument_group("machine")
    group.add_argument(
        "--smp",
        type=smp,
        default=Smp(4),
        metavar="N[,threads=T]",
        help=f"number of CPUs, 1 to {MAX_SMP} (default 4), and SMT threads per core",
    )
    group.add_argument(
        "--memory", type=memory, help=f"guest memory, QEMU syntax (default {DEFAULT_MEMORY})"
    )
    group.add_argument("--append", default="", help="extra kernel command line")
    group.add_argument(
        "--accel",
        choices=ACCELS,
        default="auto",
        help="accelerator (default: KVM if it works, else TCG)",
    )
    group.add_argument(
        "--put",
        type=put_spec,
        action="append",
        default=[],
        metavar="SRC:DEST",
        help="copy host file SRC to guest path DEST before the command",
    )
    group.add_argument(
        "--artifacts",
        type=Path,
        metavar="DIR",
        help="keep this run's logs in DIR (default: the cache's runs/)",
    )
    group.add_argument(
        "--gdb",
        action="store_true",
        help="start QEMU's gdbstub and print the gdb command line that attaches to it",
    )
    group.add_argument(
        "--transport",
        choices=TRANSPORTS,
        default=os.environ.get("MKH_TRANSPORT", "console"),
        help="run commands through the shell on ttyS0 (default, or $MKH_TRANSPORT) or over "
        "SSH, where stdout and stderr stay apart; the consoles are logged and crash-checked "
        "either way",
    )
    group.add_argument(
        "--lg-env",
        type=Path,
        metavar="LAB_YAML",
        help="boot on the lab machine of this labgrid environment instead of QEMU "
        "(implies --transport ssh; see docs/lab.md)",
    )
    group.add_argument(
        "--boot-timeout",
        type=seconds,
        metavar="S",
        help=f"seconds the guest may take to reach its shell (default {DEFAULT_BOOT_TIMEOUT:g}; "
        "on a lab machine its mkh_boot_timeout)",
    )


def add_command(parser: argparse.ArgumentParser) -> None:
    """The command to run (after --) and the seconds it may take."""
    parser.add_argument(
        "--timeout",
        type=seconds,
        default=DEFAULT_TIMEOUT,
        metavar="S",
        help=f"seconds the command may run (default {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument(
        "command",
        nargs=argparse.REMAINDER,
        help="after --: the command (one argument: a shell command line)",
    )


def kernel_choice(args: argparse.Namespace) -> images.KernelChoice:
    """--kernel/--kernel-tree, else $MKH_KERNEL/$MKH_KERNEL_TREE, else the default build."""
    return images.kernel_choice(
        args.kernel, args.kernel_tree, args.in_tree, args.build_dir, args.debug_kernel
    )


def target_options(args: argparse.Namespace) -> TargetOptions:
    if args.lg_env is not None and not args.lg_env.is_file():
        raise InfraError(f"--lg-env {args.lg_env}: no such file")
    if args.transport not in TRANSPORTS:
        raise InfraError(
            f"MKH_TRANSPORT={args.transport} is not a transport (one of {', '.join(TRANSPORTS)})"
        )
    return TargetOptions(
        smp=args.smp.cpus,
        threads=args.smp.threads,
        memory=args.memory or DEFAULT_MEMORY,
        append=args.append,
        accel=args.accel,
        # A lab machine's own setting (mkh_boot_timeout) unless given.
        boot_timeout=args.boot_timeout or (0.0 if args.lg_env else DEFAULT_BOOT_TIMEOUT),
        put=list(args.put),
        gdb_port=free_port() if args.gdb else None,
        transport="ssh" if args.lg_env else args.transport,
        lab_env=args.lg_env,
    )


def command_line(args: argparse.Namespace) -> str:
    """One argument is a shell command line; several are an argv, quoted exactly."""
    words = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not words or not "".join(words).strip():
        script = " --script FILE or" if "script" in args else ""
        raise InfraError(f"nothing to run: give{script} -- COMMAND...")
    if len(words) == 1:
        return str(words[0])
    return shlex.join(words)


def print_output(ran: Completed) -> None:
    """A command's output on stdout; over SSH its stderr on stderr."""
    sys.stdout.write(ran.output if ran.stdout is None else ran.stdout)
    sys.stdout.flush()
    if ran.stderr:
        sys.stderr.write(ran.stderr)
        sys.stderr.flush()


def report(problems: list[str]) -> int:
    """Each problem on stderr; status 1 if there is any."""
    for problem in problems:
        sys.stderr.write(f"mkh: {problem}\n")
    return 1 if problems else 0
