"""The configuration reference of ``docs/configuration.md``, generated from ``serving.config``.

Every pydantic model reachable from ``AppConfig`` through its fields (``ModelSpec``,
``IngressSettings``, ``AutoscalingSettings``, ``ViewSpec``, and whatever is added later)
becomes one Markdown table: each field's name, type (with its bounds), default and
description, read by introspection (``model_fields``), so the page follows the code.

``python -m serving.config_reference`` rewrites the generated section of the page (between
``BEGIN`` and ``END``); ``--check`` only compares, and exits 1 when the page is stale.
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import sys
import textwrap
import types
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from serving.config import AppConfig

BEGIN = "<!-- BEGIN GENERATED CONFIG REFERENCE -->"
END = "<!-- END GENERATED CONFIG REFERENCE -->"
DOC_PATH = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
# Where the root model sits in serve_config.yaml.
ROOT_PATH = "applications[].args"
_WIDTH = 95  # the docs' line length (table rows excepted)

_SEQUENCES = (list, tuple, set, frozenset)
# Bounds pydantic keeps in a field's metadata (annotated_types objects): attribute → words.
_BOUNDS = (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤"), ("multiple_of", "multiple of"),
           ("min_length", "min length"), ("max_length", "max length"), ("pattern", "matches"))


def config_models(root: type[BaseModel] = AppConfig) -> list[tuple[type[BaseModel], str]]:
    """Every model reachable from ``root`` through field annotations, depth first.

    Args:
        root: the top model (the ``args`` of the application).

    Returns:
        ``(model class, its YAML path)`` pairs, ``root`` first; a model reached along
        several paths appears once, at the first.
    """
    found: list[tuple[type[BaseModel], str]] = []
    seen: set[type[BaseModel]] = set()

    def visit(model: type[BaseModel], path: str) -> None:
        seen.add(model)
        found.append((model, path))
        for name, field in model.model_fields.items():
            for nested, suffix in _nested_models(field.annotation):
                if nested not in seen:
                    visit(nested, f"{path}.{name}{suffix}")

    visit(root, ROOT_PATH)
    return found


def render(root: type[BaseModel] = AppConfig) -> str:
    """The generated section: one heading, one line of context and one table per model.

    Args:
        root: the top model, as for ``config_models``.

    Returns:
        Markdown, without the ``BEGIN``/``END`` markers and without a trailing newline.
    """
    parts = ["<!-- Generated from serving/config.py by `python -m serving.config_reference`:\n"
             "     edit the field descriptions there, then run it again. -->"]
    for model, path in config_models(root):
        parts.append(f"### {model.__name__}")
        doc = _docstring(model)
        parts.append(textwrap.fill(f"{doc}{' ' if doc else ''}In the config: `{path}`.",
                                   width=_WIDTH, break_long_words=False,
                                   break_on_hyphens=False))
        rows = ["| field | type | default | description |", "|---|---|---|---|"]
        for name, field in model.model_fields.items():
            rows.append(f"| `{name}` | {_type_cell(field)} | {_default_cell(field)} | "
                        f"{_cell(_prose(field.description or ''))} |")
        parts.append("\n".join(rows))
    return "\n\n".join(parts)


def section(text: str) -> str:
    """The generated section of ``text`` (between the markers, without them).

    Raises:
        ValueError: the markers are missing or out of order.
    """
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"expected {BEGIN!r} followed by {END!r}")
    return text[start + len(BEGIN) : end].strip("\n")


def replace_section(text: str, generated: str) -> str:
    """``text`` with its generated section replaced by ``generated``."""
    section(text)  # validates the markers
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    return f"{head}{BEGIN}\n{generated}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    """Rewrite (or with ``--check`` compare) the page's generated section; 1 when stale."""
    parser = argparse.ArgumentParser(prog="python -m serving.config_reference",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 if the page differs from the models")
    parser.add_argument("--path", type=Path, default=DOC_PATH, help="the Markdown page")
    args = parser.parse_args(argv)
    text = args.path.read_text()
    updated = replace_section(text, render())
    if updated == text:
        print(f"{args.path}: the configuration reference is current")
        return 0
    if args.check:
        print(f"{args.path}: the configuration reference is stale; run "
              "`python -m serving.config_reference`", file=sys.stderr)
        return 1
    args.path.write_text(updated)
    print(f"{args.path}: configuration reference written")
    return 0


def _nested_models(annotation: Any, suffix: str = "") -> Iterator[tuple[type[BaseModel], str]]:
    """Models inside an annotation, each with its path suffix (``[]`` inside a list)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation, suffix
        return
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        yield from _nested_models(args[0], suffix)
    elif origin in _SEQUENCES:
        for arg in args:
            yield from _nested_models(arg, f"{suffix}[]")
    elif origin is dict and len(args) == 2:
        yield from _nested_models(args[1], f"{suffix}.<key>")
    elif origin is not Literal:
        for arg in args:
            yield from _nested_models(arg, suffix)


def _type_name(annotation: Any) -> str:
    """A readable type: ``int``, ``str | null``, ``list[ModelSpec]``, ``"auto" | "cpu"``."""
    if annotation is type(None):
        return "null"
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return " | ".join(_value(arg) for arg in args)
    if origin is Union or origin is types.UnionType:
        return " | ".join(_type_name(arg) for arg in args)
    if origin is Annotated:
        return _type_name(args[0])
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(_type_name(arg) for arg in args)}]" if args else name
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _type_cell(field: FieldInfo) -> str:
    """The type in code, its bounds, and links to the tables of the models it holds."""
    cell = f"`{_type_name(field.annotation)}`"
    bounds = [f"{words} `{getattr(meta, attribute)}`"
              if attribute == "pattern" else f"{words} {_value(getattr(meta, attribute))}"
              for meta in field.metadata for attribute, words in _BOUNDS
              if getattr(meta, attribute, None) is not None]
    if bounds:
        cell += ", " + ", ".join(bounds)
    links = [f"[{model.__name__}](#{model.__name__.lower()})"
             for model, _ in _nested_models(field.annotation)]
    if links:
        cell += " (see " + ", ".join(links) + ")"
    return _cell(cell)


def _default_cell(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        if getattr(field, "default_factory_takes_data", False):
            return "computed"
        value = field.default_factory()  # type: ignore[call-arg]
    else:
        value = field.default
    if isinstance(value, BaseModel):
        return "its fields' defaults"
    return _cell(f"`{_value(value)}`")


def _value(value: Any) -> str:
    """A value as it is written in the YAML config (JSON is YAML): ``null``, ``true``."""
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if isinstance(value, (frozenset, set, tuple)):
        value = list(value)
    try:
        return json.dumps(value, ensure_ascii=False)
    except TypeError:
        return str(value)


def _docstring(model: type[BaseModel]) -> str:
    """The model's own docstring as one paragraph (not one inherited from BaseModel)."""
    doc = model.__dict__.get("__doc__") or ""
    return _prose(inspect.cleandoc(doc)) if doc.strip() else ""


def _prose(text: str) -> str:
    """One line of Markdown: whitespace collapsed, reStructuredText ``code`` and Sphinx
    roles (``:class:`Name```) → `code`."""
    text = re.sub(r"``([^`]+)``", r"`\1`", " ".join(text.split()))
    return re.sub(r":[\w:]+:`~?([^`]+)`", r"`\1`", text)


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell (GitHub reads ``\\|`` as a literal pipe)."""
    return text.replace("|", "\\|")


if __name__ == "__main__":
    sys.exit(main())
