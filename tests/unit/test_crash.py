from pathlib import Path

import pytest

from harness.crash import EXCERPT_LINES, Detector, classify

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
        ("oops-null-deref.log", "bug", "BUG: kernel NULL pointer dereference"),
        ("warning.log", "warning", "WARNING: CPU: 0 PID: 1 at kernel/cpu.c:1234"),
        ("gpf.log", "general-protection-fault", "general protection fault"),
        ("kasan.log", "kasan", "BUG: KASAN: slab-use-after-free"),
        ("soft-lockup.log", "soft-lockup", "soft lockup - CPU#3 stuck"),
        ("hung-task.log", "hung-task", "INFO: task sh:101 blocked"),
        ("rcu-stall.log", "rcu-stall", "self-detected stall on CPU"),
        ("bug-at.log", "bug", "kernel BUG at mm/slub.c:440!"),
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
    crash = detect("oops-null-deref.log").crash
    assert crash is not None
    text = crash.text()
    assert "mkh-guest: ready" in text  # context before the first crash line
    assert "Call Trace:" in text and "end trace" in text
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


def test_printk_caller_prefix_and_subsystem_tags_are_allowed() -> None:
    assert classify("[    4.2][    T1] WARNING: CPU: 0 PID: 1 at a.c:1 f+0x0/0x1") == "warning"
    assert classify("[   48.0] watchdog: BUG: soft lockup - CPU#0 stuck for 22s!") == (
        "soft-lockup"
    )
    assert classify("Kernel panic - not syncing: VFS: Unable to mount root fs") == "panic"
