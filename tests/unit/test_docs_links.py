"""The README and docs/ link only to files of the repository, and to headings that exist.

A newcomer has only the clone: a link that leaves it (``../shared/API.md``) or points to
a renamed file or heading is a dead end.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# [text](target) outside code spans; targets with a scheme (https:, mailto:) are not files.
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)


def _anchors(path: Path) -> set[str]:
    """GitHub's ids for the headings of ``path``."""
    text = _FENCE.sub("", path.read_text())
    ids = set()
    for heading in re.findall(r"^#{1,6} (.+)$", text, re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        ids.add(slug)
    return ids


def _links(path: Path) -> list[str]:
    text = _FENCE.sub("", path.read_text())
    text = re.sub(r"`[^`\n]*`", "", text)
    return _LINK.findall(text)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_links_stay_in_the_repository_and_resolve(doc: Path) -> None:
    for target in _links(doc):
        if re.match(r"^[a-z]+:", target):
            continue
        file_part, _, anchor = target.partition("#")
        linked = (doc.parent / file_part).resolve() if file_part else doc
        assert linked.is_relative_to(ROOT), f"{doc.name}: {target} leaves the repository"
        assert linked.exists(), f"{doc.name}: {target} does not exist"
        if anchor and linked.suffix == ".md":
            assert anchor in _anchors(linked), f"{doc.name}: no heading #{anchor} in {file_part}"


def test_the_readme_links_the_api_reference_in_the_repository() -> None:
    links = _links(ROOT / "README.md")
    assert "docs/api.md" in links
    assert {"docs/durability.md", "docs/notifications.md", "docs/performance.md"} <= set(links)
