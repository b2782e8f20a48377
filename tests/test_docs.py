"""Docs that must stay true: the generated configuration reference, and the README's two commands."""

from __future__ import annotations

from pathlib import Path

from app.core.config import settings_reference

ROOT = Path(__file__).resolve().parents[1]


def test_configuration_reference_is_current() -> None:
    assert (ROOT / "docs" / "configuration.md").read_text() == settings_reference(), (
        "run: .venv/bin/python -m app.core.config > docs/configuration.md"
    )


def test_readme_shows_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make up" in readme and "make test" in readme


def test_docs_site_builds_offline_with_no_warnings(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    result = subprocess.run(
        [str(Path(sys.executable).parent / "mkdocs"), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "billing" / "index.html").exists()
