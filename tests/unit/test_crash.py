from pathlib import Path

import pytest

from harness.target.crash import EXCERPT_LINES, Detector, classify

FIXTURES = Path(__file__).parent / "fixtures"


def detect(name: str, chunk: int = 0) -> Detector:
    """Feed a fixture to a detector, whole or in chunks of `chunk` characters."""
    text = (FIXTURES / name).read_text()
    detector = Detector("ttyS0")
    if chunk:
        for start in range(0, len(text), chunk):
            detector.feed(text[start : start + chunk])
    else:
        detector.feed(text)
    detector.flush()
    return detector


@pytest.mark.parametrize(
    ("fixture", "kind", "line_part"),
    [
        ("sysrq-panic.log", "panic", "Kernel panic - not syncing: sysrq triggered crash"),
        # Recorded from the guest kernel by tests/qemu/test_crashes.py (LKDTM),
        # from the host's log stream and from a spawned kernel's.
        *(
            (f"lkdtm-{action}-{where}.log", kind, line)
            for where in ("host", "instance")
            for action, kind, line in (
                ("warning", "warning", "at drivers/misc/lkdtm/bugs.c:112 lkdtm_WARNING"),
                ("bug", "bug", "kernel BUG at drivers/misc/lkdtm/bugs.c:105!"),
                ("exception", "bug", "BUG: kernel NULL pointer dereference"),
                ("softlockup", "soft-lockup", "BUG: soft lockup - CPU#"),
                ("hung_task", "hung-task", "blocked for more than 1 seconds"),
            )
        ),
        # The debug build (KASAN) turns the NULL dereference into a GPF.
        ("lkdtm-exception-kasan-host.log", "general-protection-fault", "general protection fault"),
        # Written by hand in the kernel's format (recording them needs a
        # KASAN report LKDTM does not give here, or a stalled RCU grace period).
        ("kasan.log", "kasan", "BUG: KASAN: slab-use-after-free"),
        ("rcu-stall.log", "rcu-stall", "self-detected stall on CPU"),
    ],
)
def test_each_signature_is_found_with_its_kind(fixture: str, kind: str, line_part: str) -> None:
    crash = detect(fixture).crash
    assert crash is not None
    assert crash.kind == kind
    assert line_part in crash.line
    assert crash.console == "ttyS0"


@pytest.mark.parametrize("fixture", ["boot-clean.log", "kmsg-clean.log"])
def test_recorded_clean_logs_have_no_crash(fixture: str) -> None:
    assert detect(fixture).crash is None


def test_lines_split_across_reads_are_joined() -> None:
    whole = detect("sysrq-panic.log").crash
    split = detect("sysrq-panic.log", chunk=7).crash
    assert whole is not None and split is not None
    assert split.line == whole.line
    assert split.excerpt == whole.excerpt


def test_excerpt_keeps_context_and_the_trace_that_follows() -> None:
    crash = detect("lkdtm-exception-host.log").crash
    assert crash is not None
    text = crash.text()
    assert "lkdtm: Performing direct entry EXCEPTION" in text  # context before the crash
    assert "Call Trace:" in text and "lkdtm_EXCEPTION" in text
    assert len(crash.excerpt) <= EXCERPT_LINES


def test_only_the_first_crash_is_kept() -> None:
    detector = Detector("kmsg")
    detector.feed("WARNING: CPU: 1 PID: 3 at a.c:1 f+0x1/0x2\nKernel panic - not syncing: x\n")
    assert detector.crash is not None and detector.crash.kind == "warning"


def test_unterminated_last_line_counts_once_the_stream_ends() -> None:
    detector = Detector("ttyS1")
    assert detector.feed("[ 1.0] Kernel panic - not syncing: boom") is None
    crash = detector.flush()
    assert crash is not None and crash.kind == "panic"


def test_ordinary_messages_are_not_crashes() -> None:
    for line in (
        "[    0.1] smpboot: CPU 1 is now offline",
        "[    0.2] Run /init as init process",
        "mkh-guest:0 # echo BUGS are fun",
        "[    0.3] x86/fpu: Supporting XSAVE feature 0x001: 'x87 floating point registers'",
    ):
        assert classify(line) is None, line


def test_escape_sequences_do_not_hide_a_signature() -> None:
    detector = Detector("ttyS0")
    detector.feed("\x1b[6nKernel panic - not syncing: Attempted to kill init!\r\n")
    assert detector.crash is not None and detector.crash.kind == "panic"


def test_a_typed_command_mentioning_a_signature_is_not_a_crash() -> None:
    detector = Detector("ttyS0")
    detector.feed("mkh-guest:0 # echo 'Kernel panic - not syncing: no' > /tmp/x\r\n")
    detector.feed("mkh-guest:0 # grep 'WARNING: CPU: 0 PID: 1 at ' /tmp/log\r\n")
    detector.feed("mkh-guest:0 # grep 'kernel BUG at ' /tmp/log\r\n")
    detector.feed(
        "mkh-guest:0 # echo 'BUG: soft lockup - CPU#0 stuck' 'general protection fault'\r\n"
    )
    assert detector.crash is None


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        ("[    7.1] UBSAN: array-index-out-of-bounds in drivers/misc/lkdtm/bugs.c:402:16", "ubsan"),
        ("[    7.1] BUG: KFENCE: out-of-bounds read in lkdtm_READ_AFTER_FREE+0x4c/0xd0", "kfence"),
        ("[    7.1] WARNING: possible circular locking dependency detected", "lockdep"),
        ("[    7.1] WARNING: inconsistent lock state", "lockdep"),
        ("[    7.1] WARNING: possible recursive locking detected", "lockdep"),
        ("[    7.1] BUG: scheduling while atomic: sh/41/0x00000002", "atomic-sleep"),
        (
            "[    7.1] BUG: sleeping function called from invalid context at kernel/sched/c.c:1",
            "atomic-sleep",
        ),
        ("[    7.1] NMI watchdog: Watchdog detected hard LOCKUP on cpu 1", "hard-lockup"),
        ("[    7.1] watchdog: Watchdog detected hard LOCKUP on cpu 2", "hard-lockup"),
    ],
)
def test_debug_kernel_signatures(line: str, kind: str) -> None:
    assert classify(line) == kind


def test_a_stream_whose_crashes_are_no_longer_watched_reports_none() -> None:
    detector = Detector("kmsg1", enabled=False)
    detector.feed("[    9.0] INFO: task sh:37 blocked for more than 2 seconds.\n")
    assert detector.crash is None


def test_printk_caller_prefix_and_subsystem_tags_are_allowed() -> None:
    assert classify("[    4.2][    T1] WARNING: CPU: 0 PID: 1 at a.c:1 f+0x0/0x1") == "warning"
    assert classify("[   48.0] watchdog: BUG: soft lockup - CPU#0 stuck for 22s!") == (
        "soft-lockup"
    )
    assert classify("Kernel panic - not syncing: VFS: Unable to mount root fs") == "panic"
