"""Every kernel's crash is caught on its own log stream: LKDTM in the host and in an instance."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from harness.core.errors import GuestTimeout, KernelCrash
from harness.multikernel.dtb import Instance
from harness.multikernel.mk import Multikernel
from harness.target import logsync
from harness.target.base import Target
from harness.target.shell import Shell
from tests.conftest import clocksource_settled, qemu_only

pytestmark = pytest.mark.qemu
Boot = Callable[..., Target]

DIRECT = "/sys/kernel/debug/provoke-crash/DIRECT"
WEB = Instance("web-server", 1, (1,), 0x20000000)
# LKDTM action -> the kinds the detector may name.
ACTIONS = {
    "WARNING": {"warning"},
    "BUG": {"bug"},
    # A NULL dereference: "BUG: kernel NULL pointer dereference", or on the
    # debug build a general protection fault (KASAN checks the shadow first).
    "EXCEPTION": {"bug", "general-protection-fault"},
    "SOFTLOCKUP": {"soft-lockup"},
    "HUNG_TASK": {"hung-task"},
}


def provoke(guest: Target, shell: Shell, action: str) -> KernelCrash:
    """Trigger an LKDTM action in the kernel behind `shell`; the crash the harness raised."""
    # Short detector periods, so the lockups show within seconds.
    sysctl = "/proc/sys/kernel"
    shell.check(f"echo 1 > {sysctl}/watchdog_thresh; echo 1 > {sysctl}/hung_task_timeout_secs")
    clocksource_settled(shell)
    assert qemu_only(guest).machine is not None
    with pytest.raises(KernelCrash) as info:
        # In the background: the lockups never return, and the crash must be
        # caught from the log stream alone, whatever the shell does.
        shell.run(f"echo {action} > {DIRECT} &")
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            qemu_only(guest).machine.check_crashes()
            time.sleep(0.2)
    return info.value


@pytest.mark.parametrize("action", list(ACTIONS))
def test_a_crash_in_the_host_is_caught_on_its_log(boot: Boot, action: str) -> None:
    guest = boot(smp=2)
    crash = provoke(guest, qemu_only(guest).shell, action)
    assert crash.console == "kmsg" and crash.kind in ACTIONS[action]
    assert "kernel log of the host" in str(crash)
    # The shell's own UART stays free of kernel messages.
    assert "lkdtm" not in guest.run_dir.console_log("ttyS0").read_text()
    lockup = action in ("SOFTLOCKUP", "HUNG_TASK")  # reported again and again
    assert qemu_only(guest).shell.take_crash(watch=not lockup) is not None
    assert guest.check("echo alive-$((6 * 7))") == "alive-42\n"  # on its other CPU


@pytest.mark.parametrize("action", list(ACTIONS))
def test_a_crash_in_an_instance_is_caught_on_its_log(boot: Boot, action: str) -> None:
    guest = boot(smp=2, memory="2G", append="mkkernel_pool=1G")
    shell = Multikernel(guest, guest.instances).spawn(WEB)
    crash = provoke(guest, shell, action)
    assert crash.console == "kmsg1" and crash.kind in ACTIONS[action]
    assert "kernel log of the ttyS1 instance" in str(crash)
    assert "lkdtm" not in guest.run_dir.console_log("ttyS1").read_text()
    assert qemu_only(guest).machine is not None
    assert qemu_only(guest).machine.consoles["kmsg"].crash is None  # the host saw nothing of it
    shell.take_crash(watch=action not in ("SOFTLOCKUP", "HUNG_TASK"))
    assert guest.check("echo host-alive") == "host-alive\n"


def test_a_crash_printed_after_the_last_command_fails_teardown(boot: Boot) -> None:
    guest = boot(smp=2)
    guest.check(f"(sleep 1; echo WARNING > {DIRECT}) > /dev/null 2>&1 &")
    time.sleep(4)  # printed by now; nothing has checked for crashes since the command
    with pytest.raises(KernelCrash) as info:
        guest.finish()
    assert (info.value.console, info.value.kind) == ("kmsg", "warning")
    qemu_only(guest).shell.take_crash()


def test_every_command_waits_for_its_kernel_log(
    boot: Boot, monkeypatch: pytest.MonkeyPatch
) -> None:
    guest = boot(smp=2)
    assert qemu_only(guest).machine is not None
    clocksource_settled(guest)  # no late boot message fills the unread log
    log = qemu_only(guest).machine.consoles["kmsg"]
    monkeypatch.setattr(logsync, "LOG_SYNC_TIMEOUT", 3.0)
    log.drive()  # nobody reads the host's kernel log for now
    with pytest.raises(GuestTimeout, match="in the kernel log"):
        guest.run("echo mkh-flushed-$((6 * 7)) > /dev/kmsg")
    log.watch()
    guest.check("true")
    # The message came through in-kernel, before the marker that ended its step.
    text = guest.run_dir.console_log("kmsg").read_text()
    assert text.index("mkh-flushed-42") < text.rindex("-done")
