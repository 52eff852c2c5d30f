"""The README stays true about settings."""

from __future__ import annotations

from pathlib import Path

from service.core.settings import Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    for name in Settings.model_fields:
        assert f"`ACCORD_{name.upper()}`" in README, f"ACCORD_{name.upper()} is not in README"
