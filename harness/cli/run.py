"""`mkh run` and `mkh shell`: boot a target, run a command or attach to a console, tear it down."""

from __future__ import annotations

import argparse

from harness.cli import args as common
from harness.core.errors import InfraError
from harness.core.paths import EXAMPLE_DTS
from harness.multikernel.mk import MKCON
from harness.pipeline import session
from harness.pipeline.run import RunRequest, run
from harness.pipeline.shell import UART, InstanceRequest, ShellRequest, shell


def cmd_run(args: argparse.Namespace) -> int:
    if args.script and args.command:
        raise InfraError("give either --script FILE or a command after --, not both")
    kernel = common.kernel_choice(args)
    options = common.target_options(args)
    if args.script:
        options.put.append((args.script, "/run/mkh/script"))
        line = "sh /run/mkh/script"
    else:
        line = common.command_line(args)
    ran = run(RunRequest(kernel, options, line, args.timeout, args.artifacts), common.print_output)
    return ran.status


def cmd_shell(args: argparse.Namespace) -> int:
    if args.session:
        if args.instance:
            raise InfraError("--instance spawns in a new guest; it does not go with a session")
        session.attach(args.session)
        return 0
    if args.instance_console is not None and not args.instance:
        raise InfraError("--instance-console goes with --instance")
    instance = None
    if args.instance:
        instance = InstanceRequest(
            args.instance, args.dtb, args.instance_console, size_memory=args.memory is None
        )
    request = ShellRequest(
        common.kernel_choice(args), common.target_options(args), args.artifacts, instance
    )
    shell(request)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    one = sub.add_parser("run", help="boot a guest, run a command in it, tear it down")
    common.add_machine(one)
    one.add_argument(
        "--script", type=common.existing_file, metavar="FILE", help="run this shell script"
    )
    common.add_command(one)
    one.set_defaults(func=cmd_run)

    one = sub.add_parser("shell", help="interactive shell on the guest console")
    one.add_argument(
        "session", nargs="?", help="attach to this session (`mkh up`) instead of booting a guest"
    )
    common.add_machine(one)
    one.add_argument(
        "--instance",
        metavar="NAME",
        help="spawn this multikernel instance and attach to its console",
    )
    one.add_argument(
        "--dtb",
        type=common.existing_file,
        default=EXAMPLE_DTS,
        metavar="FILE",
        help="the multikernel device tree (.dts or .dtb) for --instance "
        "(default: the usage.rst example)",
    )
    one.add_argument(
        "--instance-console",
        choices=(UART, MKCON),
        help="the instance's console: a UART of QEMU's (faster), or mkcon, its console over "
        "shared memory reached through the host (needs --transport ssh; a lab's only one); "
        "default: a UART where there is one",
    )
    one.set_defaults(func=cmd_shell)
