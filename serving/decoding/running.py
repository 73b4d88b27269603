"""The running batch: left-padded rows sharing one KV cache, grown and shrunk per step.

Invariant between steps: the cache holds every token of every row except its newest one
(``pending``), which the next step feeds; ``mask`` covers the cache plus that token.
Rows are right-aligned (left padding), so new rows join by padding the narrower cache on
the left and leave by selecting the others, then dropping columns that are padding for
every row left. Positions come from the mask, as ``generate()`` computes them for a
left-padded batch, so each row's tokens are those it would get generated alone.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence
from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

ROOM = 32  # spare columns a layer's buffers keep: one reallocation per ROOM steps


class _RoomyLayer(DynamicLayer):
    """A ``DynamicLayer`` whose keys and values are views of buffers with spare columns: a
    step writes its column in place instead of concatenating (copying) the whole cache."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        super().__init__()
        self.is_initialized, self.device = True, keys.device
        self.fill(keys, values)

    def fill(self, keys: torch.Tensor, values: torch.Tensor, room: int = ROOM) -> None:
        """Hold ``keys`` and ``values`` ([rows, heads, columns, dim]) with ``room`` to grow."""
        rows, heads, width, _ = keys.shape
        self._keys = keys.new_empty((rows, heads, width + room, keys.shape[-1]))
        self._values = values.new_empty((rows, heads, width + room, values.shape[-1]))
        self._keys[:, :, :width] = keys
        self._values[:, :, :width] = values
        self._width = width
        self.keys, self.values = self._keys[:, :, :width], self._values[:, :, :width]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        new = key_states.shape[-2]
        if self._width + new > self._keys.shape[2]:
            assert self.keys is not None and self.values is not None
            self.fill(self.keys, self.values, max(ROOM, new))
        end = self._width + new
        self._keys[:, :, self._width:end] = key_states
        self._values[:, :, self._width:end] = value_states
        self._width = end
        self.keys, self.values = self._keys[:, :, :end], self._values[:, :, :end]
        return self.keys, self.values


class UnsupportedCacheError(Exception):
    """The model's cache is not plain full attention (sliding windows, recurrent state):
    its rows cannot be padded and concatenated."""


def _layers(cache: DynamicCache) -> list[tuple[_RoomyLayer, torch.Tensor, torch.Tensor]]:
    """Each layer of ``cache`` with its keys and values."""
    layers: list[tuple[_RoomyLayer, torch.Tensor, torch.Tensor]] = []
    for layer in cache.layers:
        keys, values = getattr(layer, "keys", None), getattr(layer, "values", None)
        if type(layer) not in (DynamicLayer, _RoomyLayer) or keys is None or values is None:
            kinds = sorted({type(layer).__name__ for layer in cache.layers})
            raise UnsupportedCacheError(f"cache layers {kinds} are not plain full attention")
        layers.append((layer, keys, values))  # type: ignore[arg-type]  # a DynamicLayer
    return layers


@functools.cache
def _accepted(model_class: Any) -> frozenset[str]:
    """The keyword arguments ``model_class.forward`` takes."""
    return frozenset(inspect.signature(model_class.forward).parameters)


def _forward(model: Any, **inputs: Any) -> Any:
    """``model(**inputs)`` with the cache under the name this transformers version takes
    (``cache``; ``past_key_values`` before 5.2x), keeping only the last position's logits
    where the model can skip the others."""
    accepted = _accepted(model.__class__)
    if "cache" in accepted:
        inputs["cache"] = inputs.pop("past_key_values")
    if "logits_to_keep" in accepted:
        inputs["logits_to_keep"] = 1
    if "cache_position" not in accepted:
        inputs.pop("cache_position")
    return model(**inputs, use_cache=True)


def _pad_left(tensor: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    missing = width - tensor.shape[dim]
    if missing == 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)


class RunningBatch:
    """Rows (sequences) decoding together; row ``i`` of every tensor is sequence ``i``."""

    def __init__(self, cache: DynamicCache, mask: torch.Tensor, pending: torch.Tensor) -> None:
        self.cache, self.mask, self.pending = cache, mask, pending

    @property
    def rows(self) -> int:
        return int(self.mask.shape[0])

    @property
    def width(self) -> int:
        """Cache columns (padding included)."""
        return int(self.mask.shape[1]) - 1

    @classmethod
    def prefill(cls, model: Any, prompts: Sequence[Sequence[int]], pad_token_id: int
                ) -> tuple[RunningBatch, torch.Tensor]:
        """Run the prompts (left-padded) through ``model``; returns the batch, still
        without the next tokens, and the last position's logits ([rows, vocab])."""
        device = model.device
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, prompt in enumerate(prompts):
            ids[i, width - len(prompt):] = torch.tensor(list(prompt), dtype=torch.long)
            mask[i, width - len(prompt):] = 1
        ids, mask = ids.to(device), mask.to(device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=model.config)
        output = _forward(model, input_ids=ids, attention_mask=mask, position_ids=positions,
                          past_key_values=cache, cache_position=torch.arange(width, device=device))
        cache.layers = [_RoomyLayer(keys, values) for _, keys, values in _layers(cache)]
        batch = cls(cache, mask, ids.new_zeros((len(prompts), 0)))
        return batch, output.logits[:, -1, :]

    def push(self, tokens: Sequence[int]) -> None:
        """Set each row's newest token (the one the next step feeds)."""
        self.pending = torch.tensor(list(tokens), dtype=torch.long,
                                    device=self.mask.device).reshape(-1, 1)
        self.mask = torch.cat([self.mask, self.mask.new_ones((self.rows, 1))], dim=1)

    def step(self, model: Any) -> torch.Tensor:
        """Feed every row's pending token; returns the logits of the next ([rows, vocab])."""
        width = self.width
        positions = self.mask.sum(dim=-1, keepdim=True) - 1
        output = _forward(model, input_ids=self.pending, attention_mask=self.mask,
                          position_ids=positions, past_key_values=self.cache,
                          cache_position=torch.tensor([width], device=self.mask.device))
        return output.logits[:, -1, :]

    def extend(self, other: RunningBatch) -> None:
        """Append ``other``'s rows (both in the between-steps state, tokens pushed)."""
        width = max(self.width, other.width)
        for (layer, keys, values), (_, more_keys, more_values) in zip(
                _layers(self.cache), _layers(other.cache), strict=True):
            layer.fill(torch.cat([_pad_left(keys, width, 2), _pad_left(more_keys, width, 2)]),
                       torch.cat([_pad_left(values, width, 2),
                                  _pad_left(more_values, width, 2)]))
        self.mask = torch.cat([_pad_left(self.mask, width + 1, 1),
                               _pad_left(other.mask, width + 1, 1)], dim=0)
        self.pending = torch.cat([self.pending, other.pending], dim=0)

    def keep(self, rows: Sequence[int]) -> None:
        """Keep only ``rows`` (in that order), then drop the leading columns that are
        padding for all of them."""
        index = torch.tensor(list(rows), dtype=torch.long, device=self.mask.device)
        self.mask = self.mask[index]
        self.pending = self.pending[index]
        used = self.mask[:, :-1].any(dim=0).nonzero()
        start = int(used[0]) if len(used) else self.width
        self.mask = self.mask[:, start:]
        for layer, keys, values in _layers(self.cache):
            layer.fill(keys[index, :, start:], values[index, :, start:])
