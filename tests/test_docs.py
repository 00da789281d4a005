"""The docs a newcomer walks: a short README that links every page under docs/, and relative
links that lead somewhere. Pure text checks, no server."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MAX_README_LINES = 200

# `](target)` of a markdown link or image; the target ends at whitespace or `)`.
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def _pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def _relative_targets(page: Path) -> list[str]:
    """Relative link targets of `page`, anchors removed; code blocks and URLs skipped."""
    text = _FENCE.sub("", page.read_text(encoding="utf-8"))
    targets = []
    for match in _LINK.finditer(text):
        target = match.group(1)
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith("#"):
            continue  # http:, https:, mailto:, or an anchor in the same page
        targets.append(target.split("#", 1)[0])
    return targets


def test_readme_is_short():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines (at most {MAX_README_LINES}): move detail to docs/"


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(README.parent / target).resolve() for target in _relative_targets(README)}
    unlinked = [str(page.relative_to(ROOT)) for page in _pages() if page.resolve() not in linked]
    assert not unlinked, f"pages under docs/ that README.md does not link: {unlinked}"


def test_relative_links_point_at_files_that_exist():
    broken = [f"{page.relative_to(ROOT)}: {target}"
              for page in [README, *_pages()]
              for target in _relative_targets(page)
              if not (page.parent / target).exists()]
    assert not broken, f"relative links to missing files: {broken}"
