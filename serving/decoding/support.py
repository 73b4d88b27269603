"""Whether continuous batching can decode a model exactly as ``generate()`` would."""

from __future__ import annotations

from typing import Any

from serving.decoding.running import RunningBatch, UnsupportedCacheError

# Generation-config keys continuous batching applies (serving.decoding.sampling) or that
# change nothing without beam search; any other set key (no_repeat_ngram_size,
# min_new_tokens, forced tokens, ...) would be silently dropped, so such models run static.
_APPLIED = frozenset({
    "bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id",
    "max_length", "max_new_tokens", "do_sample", "temperature", "top_k", "top_p",
    "repetition_penalty", "num_beams", "num_return_sequences", "length_penalty",
    "early_stopping", "use_cache", "output_attentions", "output_hidden_states",
    "output_scores", "output_logits", "return_dict_in_generate", "transformers_version",
    "_from_model_config",
})


def refusal(model: Any, pad_token_id: int) -> str | None:
    """Why continuous batching cannot serve ``model`` (``None``: it can). Runs one tiny
    prefill to see the model's cache."""
    if getattr(model.config, "is_encoder_decoder", False):
        return "encoder-decoder models decode through generate()"
    unapplied = sorted(set(model.generation_config.to_diff_dict()) - _APPLIED)
    if unapplied:
        return f"its generation config sets {', '.join(unapplied)}, not applied per step"
    try:
        RunningBatch.prefill(model, [[pad_token_id]], pad_token_id)
    except UnsupportedCacheError as exc:
        return str(exc)
    return None
