"""What the repository itself carries: no absolute path of a developer's or CI's machine, in any tracked file
(code, docs, fixtures, workflows). Run records and docs are copied from real machines; this keeps their home
and checkout directories out."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Spelled in pieces so that this file does not match itself. A path starts at a boundary (`x/root/` is a
# relative path), and a home needs a real user name: placeholders such as `/home/<user>/` pass.
_START = r"(?<![\w.~-])"
MACHINE_PATHS = [
    _START + "/" + r"root/",
    _START + "/" + r"home/(?!runner/)[\w.-]+/",  # /home/runner: the GitHub Actions runner image's own home
    _START + "/" + r"Users/[\w.-]+/",
    _START + "/" + r"work/",
    "/" + r"tmp/pytest-of-",
]


def machine_path_pattern(checkout: str) -> re.Pattern[str]:
    patterns = list(MACHINE_PATHS)
    if checkout.count("/") > 1:  # this checkout's own directory, wherever it is (not a bare /name)
        patterns.append(_START + re.escape(checkout) + r"(?![\w.-])")
    return re.compile("|".join(patterns))


def machine_paths(files: list[Path], root: Path, pattern: re.Pattern[str]) -> list[str]:
    """`file:line: …match…` for every match, the file named relative to `root`."""
    found = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue  # binary files, and tracked files deleted in the work tree
        for number, line in enumerate(text.splitlines(), 1):
            for match in pattern.finditer(line):
                context = line[max(0, match.start() - 30) : match.end() + 30]
                found.append(f"{path.relative_to(root)}:{number}: …{context}…")
    return found


def tracked_files(root: Path) -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True).stdout
    return [root / name for name in out.decode().split("\0") if name]


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout")
def test_no_tracked_file_holds_a_machine_path():
    found = machine_paths(tracked_files(ROOT), ROOT, machine_path_pattern(str(ROOT)))
    assert not found, "absolute paths of a machine in tracked files:\n" + "\n".join(found)


def test_the_check_names_file_and_line_and_lets_placeholders_pass(tmp_path):
    checkout = tmp_path / "checkout"
    (checkout / "docs").mkdir(parents=True)
    lines = [
        "run `ENGINE:/path/to/python`, or `/home/<user>/.cache/perfci`",  # placeholders
        'command: ["/' + 'home/runner/run.sh"]',  # the Actions runner image's home
        "relative/" + "root/x and /" + "rootfs/x",
        "model='/" + "root/.cache/perfci/models/tiny'",
        "/" + "home/alice/src/perfci/x.toml",
        "/" + "Users/bob/perfci.db",
        "/" + "work/main/suites/smoke.toml",
        "/" + "tmp/pytest-of-root/pytest-3/x",
        f"{checkout}/runs",
    ]
    doc = checkout / "docs" / "notes.md"
    doc.write_text("\n".join(lines) + "\n")
    (checkout / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe/" + b"root/")
    found = machine_paths([doc, checkout / "logo.png"], checkout, machine_path_pattern(str(checkout)))
    assert [f.split(": ", 1)[0] for f in found] == [f"docs/notes.md:{n}" for n in range(4, 10)]
