"""mkh: build a multikernel Linux, boot it in QEMU or on a lab machine, drive and check it."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.metadata
import json
import os
import shlex
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NoReturn

from harness.bench import density, measure
from harness.build import images, initramfs, series, source
from harness.core import sizes
from harness.core.errors import EXIT_INFRA, HarnessError, InfraError, Interrupted, KernelCrash
from harness.core.paths import IMAGES_DIR
from harness.core.progress import note
from harness.core.rundir import RunDir
from harness.multikernel import dtb
from harness.multikernel import pool as pool_sizing
from harness.multikernel.mk import MKCON, Multikernel
from harness.pipeline import session
from harness.report import bench as bench_report
from harness.report import result_json
from harness.target import interactive
from harness.target.base import Target
from harness.target.factory import make_target
from harness.target.machine import free_port
from harness.target.options import TRANSPORTS, TargetOptions
from harness.target.protocol import Completed

DEFAULT_TIMEOUT = 300.0
DEFAULT_MEMORY = "2G"
DEFAULT_BOOT_TIMEOUT = 120.0
EXAMPLE_DTS = IMAGES_DIR / "multikernel" / "example.dts"
# CONFIG_NR_CPUS of images/linux/base.config: the guest kernel uses no more CPUs.
MAX_SMP = 16
UART = "uart"


class _Parser(argparse.ArgumentParser):
    """Usage errors are bad input like any other: one line and status 125."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_INFRA, f"mkh: error: {message} (see {self.prog} --help)\n")


def _put(spec: str) -> tuple[Path, str]:
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


def _file(text: str) -> Path:
    if not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"{text}: no such file")
    return Path(text)


def _smp(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 1 <= value <= MAX_SMP:
        raise argparse.ArgumentTypeError(f"must be 1 to {MAX_SMP} (CONFIG_NR_CPUS), got {value}")
    return value


def _memory(text: str) -> str:
    try:
        sizes.qemu(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def _add_kernel_choice(parser: argparse.ArgumentParser) -> None:
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


def _add_machine(parser: argparse.ArgumentParser) -> None:
    _add_kernel_choice(parser)
    group = parser.add_argument_group("machine")
    group.add_argument(
        "--smp", type=_smp, default=4, help=f"number of CPUs, 1 to {MAX_SMP} (default 4)"
    )
    group.add_argument(
        "--memory", type=_memory, help=f"guest memory, QEMU syntax (default {DEFAULT_MEMORY})"
    )
    group.add_argument("--append", default="", help="extra kernel command line")
    group.add_argument(
        "--accel",
        choices=("auto", "kvm", "tcg"),
        default="auto",
        help="accelerator (default: KVM if it works, else TCG)",
    )
    group.add_argument(
        "--put",
        type=_put,
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
        type=_seconds,
        metavar="S",
        help=f"seconds the guest may take to reach its shell (default {DEFAULT_BOOT_TIMEOUT:g}; "
        "on a lab machine its mkh_boot_timeout)",
    )


def _choice(args: argparse.Namespace) -> images.KernelChoice:
    """--kernel/--kernel-tree, else $MKH_KERNEL/$MKH_KERNEL_TREE, else the default build."""
    return images.kernel_choice(
        args.kernel, args.kernel_tree, args.in_tree, args.build_dir, args.debug_kernel
    )


def _options(args: argparse.Namespace) -> TargetOptions:
    if args.lg_env is not None and not args.lg_env.is_file():
        raise InfraError(f"--lg-env {args.lg_env}: no such file")
    if args.transport not in TRANSPORTS:
        raise InfraError(
            f"MKH_TRANSPORT={args.transport} is not a transport (one of {', '.join(TRANSPORTS)})"
        )
    return TargetOptions(
        smp=args.smp,
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


def _check_pool(options: TargetOptions) -> None:
    """A multikernel pool must leave the guest kernel some of its memory (QEMU's --memory)."""
    if options.lab_env is not None:
        return  # a lab machine has the memory it has
    pool_sizing.check_fits(options.append, options.memory)


def cmd_build(args: argparse.Namespace) -> int:
    built = images.resolve(_choice(args))
    print(f"kernel: {built.kernel}")
    print(f"initramfs: {built.initrd}")
    print(f"source: {built.description}")
    return 0


def _command_line(args: argparse.Namespace) -> str:
    """One argument is a shell command line; several are an argv, quoted exactly."""
    words = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not words or not "".join(words).strip():
        script = " --script FILE or" if "script" in args else ""
        raise InfraError(f"nothing to run: give{script} -- COMMAND...")
    if len(words) == 1:
        return str(words[0])
    return shlex.join(words)


def cmd_run(args: argparse.Namespace) -> int:
    if args.script and args.command:
        raise InfraError("give either --script FILE or a command after --, not both")
    choice = _choice(args)
    options = _options(args)
    _check_pool(options)
    if args.script:
        options.put.append((args.script, "/run/mkh/script"))
        line = "sh /run/mkh/script"
    else:
        line = _command_line(args)
    built = images.resolve(choice)
    with RunDir(args.artifacts) as run:
        return _run_in(run, make_target(built, options, run), line, args.timeout, choice)


def _run_in(
    run: RunDir, guest: Target, line: str, timeout: float, choice: images.KernelChoice
) -> int:
    with result_json.recorded(run, guest.images, choice, f"mkh run: {line}") as status:
        try:
            guest.boot()
            ran = guest.run(line, timeout=timeout)
            guest.finish()
        except (HarnessError, KeyboardInterrupt) as exc:
            exc.add_note(f"artifacts: {run.path}")
            raise
        finally:
            guest.close()
        status.value = ran.status
    _print(ran)
    return ran.status


def _print(ran: Completed) -> None:
    """A command's output on stdout; over SSH its stderr on stderr."""
    sys.stdout.write(ran.output if ran.stdout is None else ran.stdout)
    sys.stdout.flush()
    if ran.stderr:
        sys.stderr.write(ran.stderr)
        sys.stderr.flush()


def _instance_setup(args: argparse.Namespace, options: TargetOptions) -> list[dtb.Instance]:
    """The DTB's instances; sizes the pool and memory for them unless given."""
    blob = dtb.load(args.dtb)
    on_lab = options.lab_env is not None  # its CPUs and pool are its own
    problems = dtb.check(blob, dtb.Target(cpus=None if on_lab else options.smp))
    if problems:
        raise InfraError("; ".join(str(p) for p in problems))
    instances = dtb.parse(blob)[0]
    if args.instance not in {inst.name for inst in instances}:
        names = ", ".join(inst.name for inst in instances)
        raise InfraError(f"{args.dtb} has no instance {args.instance!r} (it has {names})")
    if not on_lab and "mkkernel_pool=" not in options.append:
        pool = pool_sizing.size(sum(inst.memory for inst in instances))
        options.append = f"{options.append} {pool_sizing.append(pool)}".strip()
        if args.memory is None:
            options.memory = pool_sizing.guest_memory(pool)
    return instances


def cmd_up(args: argparse.Namespace) -> int:
    session.paths(args.name)  # a bad name is refused before anything is built
    choice = _choice(args)
    options = _options(args)
    _check_pool(options)
    built = images.resolve(choice)
    run_dir = session.start(args.name, built, options, choice, args.artifacts, args.idle_timeout)
    print(run_dir)
    note(
        f"session {args.name} is up: 'mkh exec {args.name} -- CMD', 'mkh shell {args.name}', "
        f"'mkh down {args.name}' (it ends itself after {args.idle_timeout:.0f} s unused)"
    )
    return 0


def cmd_exec(args: argparse.Namespace) -> int:
    ran = session.run(args.session, _command_line(args), args.timeout)
    _print(ran)
    return ran.status


def cmd_down(args: argparse.Namespace) -> int:
    note(f"session {args.session} is down (logs: {session.down(args.session)})")
    return 0


def cmd_shell(args: argparse.Namespace) -> int:
    if args.session:
        if args.instance:
            raise InfraError("--instance spawns in a new guest; it does not go with a session")
        session.attach(args.session)
        return 0
    choice = _choice(args)
    options = _options(args)
    console = _instance_console(args, options)
    instances = _instance_setup(args, options) if args.instance else []
    _check_pool(options)
    built = images.resolve(choice)
    with (
        RunDir(args.artifacts) as run,
        result_json.recorded(run, built, choice, "mkh shell"),
        make_target(built, options, run) as guest,
    ):
        if args.instance:
            mk = Multikernel(guest, guest.instances)
            outcome = mk.upload(dtb.to_dtb(instances))
            if not outcome.ok:
                raise InfraError(f"uploading {args.dtb} failed: {outcome.output.strip()}")
            inst = next(i for i in instances if i.name == args.instance)
            shell = mk.spawn(inst, console=console)
        elif guest.ssh is not None:
            note(f"logged in over SSH; leave with exit or Ctrl-] (logs: {run.path})")
            interactive.attach_ssh(guest.ssh, guest.health)
            return 0
        elif guest.host_shell is not None:
            shell = guest.host_shell
        else:
            raise InfraError("the target has neither SSH nor a console shell to attach to")
        note(f"attached to {shell.console.name}; leave with Ctrl-] (logs: {run.path})")
        interactive.attach(shell, guest.health)
        if args.instance and options.lab_env is not None:
            # The lab machine goes on running the kernel under test: stop
            # the instance, or the next kexec would start a kernel beside it.
            mk.halt(inst.id, force=True)
    return 0


def _instance_console(args: argparse.Namespace, options: TargetOptions) -> str | None:
    """The console `mkh shell --instance` gives the instance; None: a UART if one is free."""
    choice = args.instance_console
    if choice is not None and not args.instance:
        raise InfraError("--instance-console goes with --instance")
    if options.lab_env is not None:
        if choice == UART:
            raise InfraError("a lab machine has no UART for an instance: --instance-console mkcon")
        return MKCON
    if choice == MKCON and options.transport != "ssh":
        raise InfraError(
            "--instance-console mkcon reaches the instance through SSH: --transport ssh"
        )
    return None if choice == UART else choice


def cmd_kernel_tree(args: argparse.Namespace) -> int:
    tree = source.make_kernel_tree(args.dir, with_series=not args.no_series)
    print(tree)
    note(
        f"edit the series as commits on branch 'series' in {tree}; build it with "
        f"'mkh build --kernel-tree {tree}'; write it back with 'mkh export-patches {tree}'"
    )
    return 0


def cmd_export_patches(args: argparse.Namespace) -> int:
    written = source.export_patches(args.dir, args.base)
    for patch in written:
        print(patch)
    note(f"wrote {len(written)} patches and the series file")
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text}")
    return value


def _size(text: str) -> int:
    """A byte count with an optional K/M/G/... suffix (as mkkernel_pool= takes)."""
    try:
        return sizes.kernel(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _report(problems: list[str] | list[dtb.Problem]) -> int:
    for problem in problems:
        sys.stderr.write(f"mkh: {problem}\n")
    return 1 if problems else 0


def cmd_dtb(args: argparse.Namespace) -> int:
    try:
        blob = dtb.load(args.file)
        target = dtb.Target(cpus=args.cpus, pool_free=args.pool)
        problems = dtb.check(blob, target)
    except dtb.DtsError as exc:
        sys.stderr.write(f"mkh: {exc}\n")
        return 1
    except dtb.DtbError as exc:
        sys.stderr.write(f"mkh: {args.file}: {exc} (EINVAL)\n")
        return 1
    if args.action == "compile":
        if problems:
            return _report(problems)
        out = args.output or args.file.with_suffix(".dtb")
        out.write_bytes(blob)
        print(out)
        return 0
    if args.action == "show":
        for inst in dtb.parse(blob)[0]:
            print(f"# instances/{inst.name}/device_tree_source")
            print(dtb.instance_dts(inst))
    return _report(problems)


def cmd_series_check(args: argparse.Namespace) -> int:
    problems = series.check(args.dir, args.base, build=not args.no_build)
    if not problems:
        note("every patch is checkpatch --strict clean" + ("" if args.no_build else " and builds"))
    return _report(problems)


BENCHMARKS = {
    "spawn": "exec call to instance shell vs QEMU start to host shell",
    "cycles": "ping, halt and start again, per cycle, with the pool's free bytes",
    "ipi": "ping round trip to an instance vs an IPI round trip inside the host",
    "density": "an instance on every CPU but the host's, over their consoles over shared "
    "memory: start time, memory, host latency, smallest instance memory",
}
# --runs when not given (density is one run and takes none).
BENCH_RUNS = {"spawn": 3, "cycles": 10, "ipi": 200, "density": 1}
BENCH_RUNS_MEANING = {
    "spawn": "runs to take the median of",
    "cycles": "cycles",
    "ipi": "pings",
}
DTB_ACTIONS = {
    "compile": "check a .dts and write it as a DTB",
    "check": "check a .dts or .dtb as the kernel would (EINVAL with the reason)",
    "show": "print each instance's device tree source as the kernel shows it",
}


def _bench_checks(args: argparse.Namespace) -> int:
    """The instance memory of `bench spawn|density`, refused before anything is built."""
    if args.what == "density":
        memory = density.DEFAULT_MEMORY if args.memory is None else args.memory
        cpus = density.DEFAULT_CPUS if args.cpus is None else args.cpus
        if not 2 <= cpus <= MAX_SMP:
            raise InfraError(f"--cpus {cpus}: 2 to {MAX_SMP} (the host keeps CPU 0)")
        if memory < density.SMALLEST_FLOOR:
            floor = density.SMALLEST_FLOOR >> 20
            raise InfraError(f"--memory {memory}: below {floor}M, where the search stops")
        instances = [dtb.Instance(f"dense{n}", n, (n,), memory) for n in range(1, cpus)]
        target = dtb.Target(cpus=cpus)
    else:
        memory = measure.SPAWN_INSTANCE.memory if args.memory is None else args.memory
        instances = [dataclasses.replace(measure.SPAWN_INSTANCE, memory=memory)]
        target = dtb.Target(cpus=measure.SPAWN_SMP, pool_free=measure.SPAWN_POOL)
    problems = dtb.check(dtb.to_dtb(instances), target)
    if problems:
        raise InfraError(f"--memory {memory}: " + "; ".join(str(p) for p in problems))
    return memory


def cmd_bench(args: argparse.Namespace) -> int:
    memory = _bench_checks(args)
    built = images.resolve(_choice(args))
    runs = args.runs or BENCH_RUNS[args.what]
    if args.what == "density":
        cpus = density.DEFAULT_CPUS if args.cpus is None else args.cpus
        measured = density.run(built, cpus, memory, args.accel)
        print(bench_report.density_table(measured))
        if args.json is not None:
            args.json.write_text(json.dumps(bench_report.density_json(measured), indent=1) + "\n")
            note(f"wrote {args.json}")
    elif args.what == "ipi":
        print(bench_report.ipi_table(measure.ipi(built, runs, args.accel)))
    elif args.what == "cycles":
        print(bench_report.cycles_table(measure.cycles(built, runs, args.accel)))
    else:
        samples = measure.spawn(built, runs, args.accel, memory)
        print(bench_report.spawn_table(samples))
        if args.json is not None:
            figures = bench_report.spawn_json(samples, memory)
            args.json.write_text(json.dumps(figures, indent=1) + "\n")
            note(f"wrote {args.json}")
    return 0


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
    sub = top.add_subparsers(dest="verb", required=True)

    build = sub.add_parser("build", help="build (or reuse) the kernel and initramfs")
    _add_kernel_choice(build)
    build.set_defaults(func=cmd_build)

    run = sub.add_parser("run", help="boot a guest, run a command in it, tear it down")
    _add_machine(run)
    run.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_TIMEOUT,
        metavar="S",
        help=f"seconds the command may run (default {DEFAULT_TIMEOUT:g})",
    )
    run.add_argument("--script", type=_file, metavar="FILE", help="run this shell script")
    run.add_argument(
        "command",
        nargs=argparse.REMAINDER,
        help="after --: the command (one argument: a shell command line)",
    )
    run.set_defaults(func=cmd_run)

    shell = sub.add_parser("shell", help="interactive shell on the guest console")
    shell.add_argument(
        "session", nargs="?", help="attach to this session (`mkh up`) instead of booting a guest"
    )
    _add_machine(shell)
    shell.add_argument(
        "--instance",
        metavar="NAME",
        help="spawn this multikernel instance and attach to its console",
    )
    shell.add_argument(
        "--dtb",
        type=_file,
        default=EXAMPLE_DTS,
        metavar="FILE",
        help="the multikernel device tree (.dts or .dtb) for --instance "
        "(default: the usage.rst example)",
    )
    shell.add_argument(
        "--instance-console",
        choices=(UART, MKCON),
        help="the instance's console: a UART of QEMU's (faster), or mkcon, its console over "
        "shared memory reached through the host (needs --transport ssh; a lab's only one); "
        "default: a UART where there is one",
    )
    shell.set_defaults(func=cmd_shell)

    up = sub.add_parser("up", help="boot a guest that stays up (a session) and return")
    up.add_argument("--name", default="default", help="the session's name (default: default)")
    up.add_argument(
        "--idle-timeout",
        type=_seconds,
        default=session.DEFAULT_IDLE,
        metavar="S",
        help=f"take the guest down after S seconds without a request "
        f"(default {session.DEFAULT_IDLE:g})",
    )
    _add_machine(up)
    up.set_defaults(func=cmd_up)

    ex = sub.add_parser("exec", help="run a command in a session's guest")
    ex.add_argument("session", help="the session's name (`mkh up --name`)")
    ex.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_TIMEOUT,
        metavar="S",
        help=f"seconds the command may run (default {DEFAULT_TIMEOUT:g})",
    )
    ex.add_argument(
        "command",
        nargs=argparse.REMAINDER,
        help="after --: the command (one argument: a shell command line)",
    )
    ex.set_defaults(func=cmd_exec)

    dn = sub.add_parser("down", help="take a session's guest down")
    dn.add_argument("session", help="the session's name")
    dn.set_defaults(func=cmd_down)

    bn = sub.add_parser("bench", help="benchmarks (ratios measured in one run)")
    benches = bn.add_subparsers(dest="what", required=True, metavar="BENCHMARK")
    for what, about in BENCHMARKS.items():
        one = benches.add_parser(what, help=about, description=about)
        one.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto")
        _add_kernel_choice(one)
        one.set_defaults(func=cmd_bench, runs=None, memory=None, cpus=None, json=None)
        if what != "density":
            one.add_argument(
                "--runs",
                type=_positive,
                help=f"{BENCH_RUNS_MEANING[what]} (default {BENCH_RUNS[what]})",
            )
        if what in ("spawn", "density"):
            one.add_argument(
                "--json", type=Path, metavar="FILE", help="also write the figures as JSON"
            )
    benches.choices["spawn"].add_argument(
        "--memory",
        type=_size,
        metavar="SIZE",
        help="the instance's memory (default 512M, the usage.rst web-server)",
    )
    benches.choices["density"].add_argument(
        "--memory",
        type=_size,
        metavar="SIZE",
        help=f"each instance's memory, where the search for the smallest starts "
        f"(default {density.DEFAULT_MEMORY >> 20}M)",
    )
    benches.choices["density"].add_argument(
        "--cpus",
        type=_positive,
        help=f"the guest's CPUs, one instance on each but CPU 0 (default {density.DEFAULT_CPUS})",
    )

    dt = sub.add_parser("dtb", help="compile, check or show a multikernel device tree")
    actions = dt.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, about in DTB_ACTIONS.items():
        one = actions.add_parser(action, help=about, description=about)
        one.add_argument("file", type=Path, help="a .dts file or a .dtb")
        one.add_argument("--cpus", type=int, help="check CPU ids against this many CPUs")
        one.add_argument(
            "--pool",
            type=_size,
            metavar="SIZE",
            help="check memory against this much free pool (e.g. 2G)",
        )
        one.set_defaults(func=cmd_dtb, output=None)
    actions.choices["compile"].add_argument(
        "-o", "--output", type=Path, help="where to write the DTB (default: FILE.dtb)"
    )

    tree = sub.add_parser("kernel-tree", help="clone the kernel with the series as git commits")
    tree.add_argument("dir", type=Path, help="where to create the tree")
    tree.add_argument(
        "--no-series", action="store_true", help="leave the series out: the stock Debian source"
    )
    tree.set_defaults(func=cmd_kernel_tree)

    check = sub.add_parser(
        "series-check", help="checkpatch --strict and build every commit of a kernel tree"
    )
    check.add_argument("dir", type=Path, help="the kernel tree (from mkh kernel-tree)")
    check.add_argument(
        "--base",
        default=source.BASE_TAG,
        help=f"check commits after this revision (default {source.BASE_TAG})",
    )
    check.add_argument("--no-build", action="store_true", help="only run checkpatch")
    check.set_defaults(func=cmd_series_check)

    export = sub.add_parser("export-patches", help="write a tree's commits back as the series")
    export.add_argument("dir", type=Path, help="the kernel tree (from mkh kernel-tree)")
    export.add_argument(
        "--base",
        default=source.BASE_TAG,
        help=f"export commits after this revision (default {source.BASE_TAG})",
    )
    export.set_defaults(func=cmd_export_patches)
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
        return exc.exit_code
    except HarnessError as exc:
        sys.stderr.write(f"mkh: error: {exc}\n")
        tail = getattr(exc, "tail", "")
        if tail:
            sys.stderr.write(f"--- console tail ---\n{tail[-1500:]}\n")
        for extra in _notes(exc):
            sys.stderr.write(f"mkh: {extra}\n")
        return exc.exit_code
    except KeyboardInterrupt as exc:
        stopped = exc if isinstance(exc, Interrupted) else Interrupted(signal.SIGINT)
        # After a hang-up the terminal may be gone: the status still tells.
        with contextlib.suppress(OSError):
            sys.stderr.write(
                "; ".join([f"mkh: interrupted by {stopped.signal.name}", *_notes(exc)]) + "\n"
            )
        return stopped.exit_code
