"""`mkh run` and `mkh shell`: boot a target, run a command or attach to a console, tear it down."""

from __future__ import annotations

import argparse

from harness.build import images
from harness.cli import args as common
from harness.core.errors import HarnessError, InfraError
from harness.core.paths import EXAMPLE_DTS
from harness.core.progress import note
from harness.core.rundir import RunDir
from harness.multikernel import dtb
from harness.multikernel import pool as pool_sizing
from harness.multikernel.mk import MKCON, Multikernel
from harness.pipeline import session
from harness.report import result_json
from harness.target import interactive
from harness.target.base import Target
from harness.target.factory import make_target
from harness.target.options import TargetOptions

UART = "uart"


def check_pool(options: TargetOptions) -> None:
    """A multikernel pool must leave the guest kernel some of its memory (QEMU's --memory)."""
    if options.lab_env is not None:
        return  # a lab machine has the memory it has
    pool_sizing.check_fits(options.append, options.memory)


def cmd_run(args: argparse.Namespace) -> int:
    if args.script and args.command:
        raise InfraError("give either --script FILE or a command after --, not both")
    choice = common.kernel_choice(args)
    options = common.target_options(args)
    check_pool(options)
    if args.script:
        options.put.append((args.script, "/run/mkh/script"))
        line = "sh /run/mkh/script"
    else:
        line = common.command_line(args)
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
    common.print_output(ran)
    return ran.status


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


def cmd_shell(args: argparse.Namespace) -> int:
    if args.session:
        if args.instance:
            raise InfraError("--instance spawns in a new guest; it does not go with a session")
        session.attach(args.session)
        return 0
    choice = common.kernel_choice(args)
    options = common.target_options(args)
    console = _instance_console(args, options)
    instances = _instance_setup(args, options) if args.instance else []
    check_pool(options)
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


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = sub.add_parser("run", help="boot a guest, run a command in it, tear it down")
    common.add_machine(run)
    run.add_argument(
        "--script", type=common.existing_file, metavar="FILE", help="run this shell script"
    )
    common.add_command(run)
    run.set_defaults(func=cmd_run)

    shell = sub.add_parser("shell", help="interactive shell on the guest console")
    shell.add_argument(
        "session", nargs="?", help="attach to this session (`mkh up`) instead of booting a guest"
    )
    common.add_machine(shell)
    shell.add_argument(
        "--instance",
        metavar="NAME",
        help="spawn this multikernel instance and attach to its console",
    )
    shell.add_argument(
        "--dtb",
        type=common.existing_file,
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
