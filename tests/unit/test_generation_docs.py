"""The config example of docs/generation.md is a valid ``models:`` entry."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from serving.config import ModelSpec

PAGE = Path(__file__).parents[2] / "docs" / "generation.md"


def test_the_settings_example_validates():
    blocks = re.findall(r"```yaml\n(.*?)```", PAGE.read_text(), re.DOTALL)
    assert blocks
    for block in blocks:
        for entry in yaml.safe_load(block):
            spec = ModelSpec.model_validate(entry)
            assert spec.generation.scheduler in ("continuous", "static")
            assert spec.load_settings().generation == spec.generation
