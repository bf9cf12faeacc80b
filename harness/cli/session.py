"""`mkh up`, `mkh exec` and `mkh down`: a guest that stays up between commands (a session)."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli import args as common
from harness.core.progress import note
from harness.pipeline import session


def cmd_up(args: argparse.Namespace) -> int:
    request = session.SessionRequest(
        args.name,
        common.kernel_choice(args),
        common.target_options(args),
        args.artifacts,
        args.idle_timeout,
    )
    run_dir = session.start(request)
    print(run_dir)
    note(
        f"session {args.name} is up: 'mkh exec {args.name} -- CMD', 'mkh shell {args.name}', "
        f"'mkh down {args.name}' (it ends itself after {args.idle_timeout:.0f} s unused)"
    )
    return 0


def cmd_exec(args: argparse.Namespace) -> int:
    ran = session.run(args.session, common.command_line(args), args.timeout)
    common.print_output(ran)
    return ran.status


def cmd_kexec(args: argparse.Namespace) -> int:
    note(f"session {args.session}: kexec of its host kernel, the instances running on ...")
    run_dir = session.kexec(args.session, args.kernel, args.initrd, args.append)
    note(f"session {args.session}: the new host kernel answers (logs: {run_dir})")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    note(f"session {args.session} is down (logs: {session.down(args.session)})")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    up = sub.add_parser("up", help="boot a guest that stays up (a session) and return")
    up.add_argument("--name", default="default", help="the session's name (default: default)")
    up.add_argument(
        "--idle-timeout",
        type=common.seconds,
        default=session.DEFAULT_IDLE,
        metavar="S",
        help=f"take the guest down after S seconds without a request "
        f"(default {session.DEFAULT_IDLE:g})",
    )
    common.add_machine(up)
    up.set_defaults(func=cmd_up)

    ex = sub.add_parser("exec", help="run a command in a session's guest")
    ex.add_argument("session", help="the session's name (`mkh up --name`)")
    common.add_command(ex)
    ex.set_defaults(func=cmd_exec)

    kx = sub.add_parser(
        "kexec", help="replace a session's host kernel by kexec, its instances running on"
    )
    kx.add_argument("session", help="the session's name")
    kx.add_argument(
        "--kernel", type=Path, metavar="BZIMAGE", help="the next kernel (default: the same)"
    )
    kx.add_argument("--initrd", type=Path, metavar="FILE", help="its initramfs (default: the same)")
    kx.add_argument(
        "--append",
        metavar="ARGS",
        help="its command line after the harness's parameters (default: the same)",
    )
    kx.set_defaults(func=cmd_kexec)

    down = sub.add_parser("down", help="take a session's guest down")
    down.add_argument("session", help="the session's name")
    down.set_defaults(func=cmd_down)
