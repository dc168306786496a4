"""Every relative link in README.md and docs/ points at a file of this repository."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")


def link_targets(text: str) -> list[str]:
    """Inline link and image targets outside code (a link written inside backticks is not a link)."""
    return LINK.findall(CODE.sub("", FENCE.sub("", text)))


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    broken = []
    for target in link_targets(page.read_text()):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            continue  # http(s), mailto: not files; an anchor within the page
        path = (page.parent / target.split("#", 1)[0]).resolve()
        if not path.is_relative_to(root):
            broken.append(f"{target} (outside the repository)")
        elif not path.exists():
            broken.append(target)
    return broken


def test_link_targets_skip_code_and_find_images():
    text = "[a](docs/x.md) `[b](y.md)` ![c](img.png 'c')\n```sh\n[d](z.md)\n```\n[e](f.md \"title\")"
    assert link_targets(text) == ["docs/x.md", "img.png", "f.md"]


def test_a_missing_or_outside_target_is_reported(tmp_path):
    (tmp_path / "there.md").write_text("")
    page = tmp_path / "page.md"
    page.write_text("[ok](there.md#part) [gone](missing.md) [out](../elsewhere/DESIGN.md) [web](https://x.org)")
    assert broken_links(page, root=tmp_path) == ["missing.md", "../elsewhere/DESIGN.md (outside the repository)"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves_to_a_file_in_the_repository(page):
    assert broken_links(page) == [], f"{page.relative_to(ROOT)}: links to nothing in the repository"
