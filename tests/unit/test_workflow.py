"""The nightly workflow is valid for GitHub Actions, and actionlint would say if not."""

from __future__ import annotations

import subprocess
from pathlib import Path

from harness.core.paths import REPO

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
LINT = [str(REPO / "scripts" / "actionlint.sh"), "--self-hosted-label", "mkh-lab"]


def actionlint(*files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LINT, *map(str, files)], capture_output=True, text=True, timeout=300, check=False
    )


def test_the_workflows_pass_actionlint() -> None:
    assert WORKFLOWS, "no workflow in .github/workflows"
    done = actionlint(*WORKFLOWS)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_nightly_runs_on_a_schedule_by_hand_and_on_the_lab_runner() -> None:
    text = (REPO / ".github" / "workflows" / "nightly.yml").read_text()
    assert "schedule:" in text and "workflow_dispatch:" in text
    assert "runs-on: [self-hosted, linux, x64, mkh-lab]" in text
    assert "make test-hw" in text and "make test-qemu TRANSPORT=" in text


def test_a_broken_workflow_is_refused(tmp_path: Path) -> None:
    nightly = (REPO / ".github" / "workflows" / "nightly.yml").read_text()
    broken = tmp_path / "broken.yml"
    broken.write_text(
        nightly.replace("runs-on: ubuntu-latest", "runs-on: ubuntu-latest\n    needs: nowhere")
    )
    done = actionlint(broken)
    assert done.returncode == 1
    assert 'job "qemu" needs job "nowhere" which does not exist' in done.stdout


def test_only_the_declared_self_hosted_labels_are_let_through(tmp_path: Path) -> None:
    nightly = (REPO / ".github" / "workflows" / "nightly.yml").read_text()
    other = tmp_path / "other.yml"
    other.write_text(nightly.replace("mkh-lab]", "some-other-lab]"))
    done = actionlint(other)
    assert done.returncode == 1
    assert 'label "some-other-lab" is unknown' in done.stdout
