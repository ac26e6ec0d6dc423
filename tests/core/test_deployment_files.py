"""The deployment files keep up with the settings: `.env.example` and docker-compose.yml."""

from __future__ import annotations

import re
from pathlib import Path

from app.core.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SETTINGS = {name.upper() for name in Settings.model_fields}
# What the image or compose itself sets for the server.
SET_BY_THE_IMAGE = {"HOST", "PORT", "DATA_DIR", "ENV"}


def test_env_example_lists_every_setting_and_no_other() -> None:
    text = (PROJECT_ROOT / ".env.example").read_text()
    listed = set(re.findall(r"^# ([A-Z][A-Z0-9_]*)=", text, flags=re.MULTILINE))

    assert listed == SETTINGS


def test_compose_passes_every_setting_to_the_server() -> None:
    text = (PROJECT_ROOT / "docker-compose.yml").read_text()
    environment = text.split("environment:", 1)[1].split("\nservices:", 1)[0]
    passed = set(re.findall(r"^ +- ([A-Z][A-Z0-9_]*)", environment, flags=re.MULTILINE))

    assert passed == SETTINGS - SET_BY_THE_IMAGE
