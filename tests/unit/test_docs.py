"""The documentation: the configuration reference is generated from the settings and kept in
sync here; the README leads with the two commands; every link stays inside the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from image_service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_the_configuration_reference_matches_the_settings() -> None:
    assert Settings.markdown_table() in (ROOT / "docs" / "configuration.md").read_text()


def test_readme_leads_with_the_two_commands() -> None:
    text = README.read_text()
    first_commands = text.index("make run"), text.index("make test")
    assert max(first_commands) < text.index("## The whole flow")


@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
def test_every_link_leads_to_a_file_of_the_repository(page: Path) -> None:
    for target in _LINK.findall(page.read_text()):
        assert not target.startswith(("http:", "https:", "/")), f"{page.name}: {target}"
        path = target.split("#", 1)[0]
        if path:
            assert (page.parent / path).resolve().is_file(), f"{page.name}: {target}"


def test_the_readme_stays_a_front_door() -> None:
    """What the service is, the two commands, the curl flow and the links: the rest lives in
    docs/, where each page has one subject."""
    assert len(README.read_text().splitlines()) <= 150
