"""`mkh shell` from its request: boot the target and attach to its console, or to an instance's."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from harness.build.images import KernelChoice
from harness.core.errors import InfraError
from harness.core.progress import note
from harness.core.rundir import RunDir
from harness.multikernel import dtb
from harness.multikernel import pool as pool_sizing
from harness.multikernel.mk import MKCON, Multikernel
from harness.pipeline.prepare import images_for
from harness.report import result_json
from harness.target import interactive
from harness.target.base import Target
from harness.target.factory import make_target
from harness.target.options import TargetOptions
from harness.target.shell import Shell

UART = "uart"


@dataclass(frozen=True)
class InstanceRequest:
    """A multikernel instance to spawn and attach to instead of the host's console."""

    name: str
    dtb: Path  # the device tree (.dts or .dtb) that describes it
    console: str | None = None  # UART, MKCON, or None: a UART where there is one
    # Size the guest's memory for the pool the instances need (no memory was asked for).
    size_memory: bool = True


@dataclass(frozen=True)
class ShellRequest:
    kernel: KernelChoice
    options: TargetOptions
    artifacts: Path | None = None
    instance: InstanceRequest | None = None


def instance_console(wanted: str | None, options: TargetOptions) -> str | None:
    """The console an instance gets; None: a UART if one is free."""
    if options.lab_env is not None:
        if wanted == UART:
            raise InfraError("a lab machine has no UART for an instance: --instance-console mkcon")
        return MKCON
    if wanted == MKCON and options.transport != "ssh":
        raise InfraError(
            "--instance-console mkcon reaches the instance through SSH: --transport ssh"
        )
    return None if wanted == UART else wanted


def instance_setup(
    wanted: InstanceRequest, options: TargetOptions
) -> tuple[list[dtb.Instance], TargetOptions]:
    """The DTB's instances, and `options` with the pool (and memory) sized for them unless given."""
    blob = dtb.load(wanted.dtb)
    on_lab = options.lab_env is not None  # its CPUs and pool are its own
    problems = dtb.check(blob, dtb.Budget(cpus=None if on_lab else options.smp))
    if problems:
        raise InfraError("; ".join(str(p) for p in problems))
    instances = dtb.parse(blob)[0]
    if wanted.name not in {inst.name for inst in instances}:
        names = ", ".join(inst.name for inst in instances)
        raise InfraError(f"{wanted.dtb} has no instance {wanted.name!r} (it has {names})")
    if on_lab or "mkkernel_pool=" in options.append:
        return instances, options
    pool = pool_sizing.size(sum(inst.memory for inst in instances))
    sized = dataclasses.replace(
        options, append=f"{options.append} {pool_sizing.append(pool)}".strip()
    )
    if wanted.size_memory:
        sized.memory = pool_sizing.guest_memory(pool)
    return instances, sized


@contextlib.contextmanager
def _booted(request: ShellRequest, options: TargetOptions) -> Iterator[tuple[RunDir, Target]]:
    """The booted target, its run directory, and result.json when it is torn down."""
    built = images_for(request.kernel, options)
    with (
        RunDir(request.artifacts) as run,
        result_json.recorded(run, built, request.kernel, "mkh shell"),
        make_target(built, options, run) as target,
    ):
        yield run, target


def _attach(shell: Shell, target: Target, run: RunDir) -> None:
    note(f"attached to {shell.console.name}; leave with Ctrl-] (logs: {run.path})")
    interactive.attach(shell, target.health)


def _host(request: ShellRequest) -> None:
    """The host's login shell over SSH, else its console shell."""
    with _booted(request, request.options) as (run, target):
        if target.ssh is not None:
            note(f"logged in over SSH; leave with exit or Ctrl-] (logs: {run.path})")
            interactive.attach_ssh(target.ssh, target.health)
        elif target.host_shell is not None:
            _attach(target.host_shell, target, run)
        else:
            raise InfraError("the target has neither SSH nor a console shell to attach to")


def _instance(request: ShellRequest, wanted: InstanceRequest) -> None:
    """Spawn the instance on its console and attach to it."""
    console = instance_console(wanted.console, request.options)
    instances, options = instance_setup(wanted, request.options)
    inst = next(i for i in instances if i.name == wanted.name)
    with _booted(request, options) as (run, target):
        mk = Multikernel(target, target.instances)
        outcome = mk.upload(dtb.to_dtb(instances))
        if not outcome.ok:
            raise InfraError(f"uploading {wanted.dtb} failed: {outcome.output.strip()}")
        _attach(mk.spawn(inst, console=console), target, run)
        if options.lab_env is not None:
            # The lab machine goes on running the kernel under test: stop
            # the instance, or the next kexec would start a kernel beside it.
            mk.halt(inst.id, force=True)


def shell(request: ShellRequest) -> None:
    """Boot, attach the terminal until the user leaves, then finish and tear down."""
    if request.instance is None:
        _host(request)
    else:
        _instance(request, request.instance)
