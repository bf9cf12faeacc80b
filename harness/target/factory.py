"""The one place that chooses a target: a lab machine when options name one, else QEMU."""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.build.images import Images
from harness.core.errors import InfraError
from harness.core.rundir import RunDir
from harness.target.base import Target
from harness.target.options import TargetOptions
from harness.target.qemu import QemuTarget

if TYPE_CHECKING:
    from harness.target.labgrid import Lab


def make_target(
    images: Images, options: TargetOptions, run: RunDir, lab: Lab | None = None
) -> Target:
    """The target `options` ask for: on a lab machine (`lab`, or that of `lab_env`), else QEMU.

    The lab's modules (and labgrid) are imported only for a lab run.  A `lab`
    given is the caller's to close; one made from `lab_env` closes with the target.
    """
    if lab is None and options.lab_env is None:
        return QemuTarget(images, options, run)
    if options.transport != "ssh" or options.gdb_port is not None:
        raise InfraError("a lab machine is driven over SSH, without gdb: --transport ssh, no --gdb")
    from harness.target.lab import LabTarget

    owns = lab is None
    if lab is None:
        from harness.target.labgrid import Lab

        assert options.lab_env is not None
        lab = Lab(options.lab_env)
    put = list(options.put)
    return LabTarget(images, lab, run, options.append, put, owns, options.boot_timeout or None)
