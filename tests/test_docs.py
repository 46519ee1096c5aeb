"""The README's configuration reference is generated from the settings and kept in sync here."""

from __future__ import annotations

from pathlib import Path

from image_service.settings import Settings

README = Path(__file__).parent.parent / "README.md"


def test_readme_configuration_table_matches_the_settings() -> None:
    assert Settings.markdown_table() in README.read_text()


def test_readme_leads_with_the_two_commands() -> None:
    text = README.read_text()
    first_commands = text.index("make run"), text.index("make test")
    assert max(first_commands) < text.index("## The whole flow")
