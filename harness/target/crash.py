"""Recognise kernel crash signatures in a console stream."""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

# A kernel line starts with optional printk prefixes ("[    1.234567]",
# "[    T1]") and an optional "subsystem: " tag; anchoring the signatures there
# keeps a typed command that merely mentions one (echoed on the shared
# console) from counting as a crash.
_PREFIX = r"^(?:\[[^\]]*\]\s*)*(?:<\d>)?(?:[\w.-]+: )?"

# (kind, pattern) in priority order: the first kind whose pattern matches a
# line names the crash.  Patterns follow the kernel's own message formats.
SIGNATURES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(_PREFIX + pattern))
    for kind, pattern in (
        ("panic", r"Kernel panic - not syncing"),
        ("kasan", r"BUG: KASAN: "),
        ("kfence", r"BUG: KFENCE: "),
        ("ubsan", r"UBSAN: \S"),
        (
            "lockdep",
            r"WARNING: (?:possible circular locking dependency|inconsistent lock state"
            r"|possible recursive locking|suspicious RCU usage|bad unlock balance)",
        ),
        ("atomic-sleep", r"BUG: (?:scheduling while atomic|sleeping function called from invalid)"),
        ("hard-lockup", r"(?:NMI watchdog: )?Watchdog detected hard LOCKUP on cpu \d+"),
        ("soft-lockup", r"BUG: soft lockup - CPU#\d+ stuck"),
        ("hung-task", r"INFO: task \S.* blocked for more than \d+ seconds"),
        ("rcu-stall", r"INFO: \S+ (?:self-)?detected stalls? on CPU"),
        ("general-protection-fault", r"(?:Oops: )?general protection fault"),
        ("oops", r"Oops: "),
        ("bug", r"(?:BUG: |kernel BUG at )"),
        ("warning", r"WARNING: CPU: \d+ PID: \d+ at "),
    )
)

CONTEXT_BEFORE = 5
EXCERPT_LINES = 40
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass
class Crash:
    console: str
    kind: str
    line: str
    excerpt: list[str]

    def text(self) -> str:
        return "\n".join(self.excerpt)


def classify(line: str) -> str | None:
    """The crash kind a console line signals, or None."""
    for kind, pattern in SIGNATURES:
        if pattern.search(line):
            return kind
    return None


class Detector:
    """Feed console bytes in; the first crash seen is kept with its context.

    Lines after the crash keep being added to the excerpt (up to
    EXCERPT_LINES) so the report carries the backtrace that follows.
    """

    def __init__(self, console: str, enabled: bool = True) -> None:
        self.console = console
        self.enabled = enabled
        self.crash: Crash | None = None
        self._partial = ""
        self._recent: deque[str] = deque(maxlen=CONTEXT_BEFORE)

    def feed(self, data: str) -> Crash | None:
        text = self._partial + data
        lines = text.split("\n")
        self._partial = lines.pop()
        for raw in lines:
            self._line(_ANSI.sub("", raw).rstrip("\r"))
        return self.crash

    def _line(self, line: str) -> None:
        if not self.enabled:
            return
        if self.crash is not None:
            if len(self.crash.excerpt) < EXCERPT_LINES:
                self.crash.excerpt.append(line)
            return
        kind = classify(line)
        if kind is None:
            self._recent.append(line)
            return
        self.crash = Crash(self.console, kind, line, [*self._recent, line])

    def successor(self, enabled: bool = True) -> Detector:
        """A detector for what follows, keeping this one's partial line and context."""
        after = Detector(self.console, enabled)
        after._partial = self._partial
        after._recent.extend(self._recent)
        return after

    def flush(self) -> Crash | None:
        """Treat an unterminated last line as complete (the stream has ended)."""
        if self._partial:
            self._line(_ANSI.sub("", self._partial).rstrip("\r"))
            self._partial = ""
        return self.crash
