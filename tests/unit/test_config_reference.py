"""docs/configuration.md's reference is generated from serving/config.py and kept current."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import BaseModel, Field

from serving import config_reference
from serving.config import AppConfig, AutoscalingSettings, IngressSettings, ModelSpec, ViewSpec

MODELS = [model for model, _ in config_reference.config_models()]


def test_the_docs_page_is_current():
    text = config_reference.DOC_PATH.read_text()
    assert config_reference.section(text) == config_reference.render(), (
        "docs/configuration.md is stale: run `python -m serving.config_reference`")


def test_every_config_model_is_documented():
    assert {AppConfig, ModelSpec, ViewSpec, AutoscalingSettings, IngressSettings} <= set(MODELS)
    text = config_reference.render()
    for model in MODELS:
        assert f"\n### {model.__name__}\n" in text
        for name in model.model_fields:
            assert f"\n| `{name}` | " in text, (model.__name__, name)


@pytest.mark.parametrize("model", MODELS, ids=[model.__name__ for model in MODELS])
def test_every_field_has_a_description(model):
    missing = [name for name, field in model.model_fields.items()
               if not (field.description or "").strip()]
    assert not missing, f"{model.__name__}: fields without a description: {missing}"


def test_types_defaults_and_bounds_come_from_introspection():
    class Inner(BaseModel):
        """An ``inner`` model."""

        size: int = Field(3, ge=1, le=9, description="A size.")

    class Outer(BaseModel):
        mode: Literal["a", "b"] | None = Field(None, description="A | B.")
        inners: list[Inner] = Field(default_factory=list, description="Inners.")
        tags: dict[str, float] = Field(default_factory=lambda: {"x": 1.0}, description="Tags.")
        name: str = Field(pattern=r"^\w+$", description="A name.")

    text = config_reference.render(Outer)
    assert [m.__name__ for m, _ in config_reference.config_models(Outer)] == ["Outer", "Inner"]
    assert "`applications[].args.inners[]`" in text
    assert "An `inner` model." in text
    assert r'| `mode` | `"a" \| "b" \| null` | `null` | A \| B. |' in text
    assert "| `inners` | `list[Inner]` (see [Inner](#inner)) | `[]` | Inners. |" in text
    assert '| `tags` | `dict[str, float]` | `{"x": 1.0}` | Tags. |' in text
    assert r"| `name` | `str`, matches `^\w+$` | required | A name. |" in text
    assert "| `size` | `int`, ≥ 1, ≤ 9 | `3` | A size. |" in text


def test_sections_are_replaced_between_the_markers(tmp_path):
    begin, end = config_reference.BEGIN, config_reference.END
    page = tmp_path / "page.md"
    page.write_text(f"# Title\n\nprose\n\n{begin}\nold\n{end}\n\nmore prose\n")
    assert config_reference.main(["--check", "--path", str(page)]) == 1
    assert "old" in page.read_text()
    assert config_reference.main(["--path", str(page)]) == 0
    text = page.read_text()
    assert text.startswith("# Title\n\nprose\n\n") and text.endswith(f"{end}\n\nmore prose\n")
    assert config_reference.section(text) == config_reference.render()
    assert config_reference.main(["--check", "--path", str(page)]) == 0
    with pytest.raises(ValueError):
        config_reference.section("no markers")
