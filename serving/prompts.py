"""The prompts of a sentence-transformers model: text put before each input (e5's
"query: ", bge's instruction), named in ``config_sentence_transformers.json``.

As ``SentenceTransformer.encode`` does: a request names a prompt (``prompt_name``), or the
config's ``default_prompt_name`` applies; the prompt is prepended to the text, so it is
tokenized, counted against the model window and pooled with it. No Ray, no torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from serving.errors import InvalidInputError
from serving.models import read_json
from serving.pooling import pools_prompt


@dataclass(frozen=True)
class Prompts:
    """A model's named prompts and the one applied when a request names none."""

    named: dict[str, str] = field(default_factory=dict)
    default_name: str | None = None
    # False for a pooling config with ``include_prompt: false``, which pools the text's
    # tokens only: not reproduced, so such a model refuses prompts.
    pooled: bool = True

    @classmethod
    def read(cls, source: str, revision: str | None = None) -> Prompts:
        """The prompts of the model at ``source`` (none if it has no such config).

        Raises:
            ValueError: the config is malformed, or its default names no prompt.
        """
        config = read_json(source, "config_sentence_transformers.json", revision) or {}
        if not isinstance(config, dict):
            raise ValueError(f"{source}: config_sentence_transformers.json is not an object")
        named = config.get("prompts") or {}
        if not isinstance(named, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in named.items()
        ):
            raise ValueError(f"{source}: 'prompts' of config_sentence_transformers.json must "
                             "map names to texts")
        default = config.get("default_prompt_name")
        if default is not None and default not in named:
            raise ValueError(f"{source}: default_prompt_name {default!r} is not one of the "
                             f"prompts {sorted(named)}")
        return cls(named, default, pools_prompt(source, revision))

    @classmethod
    def from_details(cls, details: dict) -> Prompts:
        """The prompts a model replica reports in its ``details()`` (:meth:`as_details`)."""
        return cls(dict(details.get("prompts") or {}), details.get("default_prompt_name"),
                   details.get("prompt_pooled", True))

    def as_details(self) -> dict:
        return {"prompts": self.named, "default_prompt_name": self.default_name,
                "prompt_pooled": self.pooled}

    def text(self, name: str | None) -> str:
        """The prompt called ``name``, or the default one (``""`` if there is none).

        Raises:
            InvalidInputError: ``name`` is not one of the model's prompts.
        """
        if name is None:
            return self.named[self.default_name] if self.default_name is not None else ""
        if name not in self.named:
            known = ", ".join(repr(n) for n in self.named) or "none"
            raise InvalidInputError(
                f"prompt_name: {name!r} is not a prompt of this model (its prompts: {known}; "
                "set in its config_sentence_transformers.json)"
            )
        return self.named[name]

    def apply(self, texts: list[str], name: str | None) -> list[str]:
        """``texts`` with prompt ``name`` (or the default one) before each.

        Raises:
            InvalidInputError: an unknown ``name``, or a prompt for a model whose pooling
                leaves the prompt's tokens out (``include_prompt: false``).
        """
        prompt = self.text(name)
        if prompt and not self.pooled:
            raise InvalidInputError(
                "prompt_name: this model pools without its prompt's tokens (include_prompt: "
                "false in its pooling config), which is not served; send no prompt"
            )
        return [prompt + text for text in texts] if prompt else texts
