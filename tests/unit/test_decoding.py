"""Continuous batching without Ray: every sequence decodes exactly as ``generate()`` alone,
whatever joins and leaves its batch; seeds, cancellation and the KV budget."""

from __future__ import annotations

import asyncio
import random
import threading
import time

import pytest
import torch
from transformers import AutoModelForCausalLM, BartConfig, BartForConditionalGeneration

from serving.decoding.running import RunningBatch
from serving.decoding.sampling import Sampling
from serving.decoding.scheduler import ContinuousBatcher, Event, Limits
from serving.decoding.support import refusal
from serving.errors import InvalidInputError, OverloadedError

PAD = 0


@pytest.fixture(scope="module")
def model(model_dirs):
    return AutoModelForCausalLM.from_pretrained(model_dirs["gpt2"]).eval()


class Collector:
    """A sink gathering each ticket's tokens and finish reason."""

    def __init__(self) -> None:
        self.tokens: dict[int, list[int]] = {}
        self.reasons: dict[int, str] = {}
        self.changed = threading.Condition()

    def __call__(self, events: list[Event]) -> None:
        with self.changed:
            for event in events:
                if event.token is not None:
                    self.tokens.setdefault(event.ticket.id, []).append(event.token)
                if event.finish_reason is not None:
                    self.reasons[event.ticket.id] = event.finish_reason
            self.changed.notify_all()

    def wait(self, tickets, timeout: float = 60) -> None:
        with self.changed:
            assert self.changed.wait_for(
                lambda: all(t.id in self.reasons for t in tickets), timeout)


@pytest.fixture
def decoder(model):
    def make(limits: Limits = Limits()) -> tuple[ContinuousBatcher, Collector]:
        sink = Collector()
        batcher = ContinuousBatcher(model, sink, PAD, [model.generation_config.eos_token_id],
                                    limits)
        batcher.start()
        made.append(batcher)
        return batcher, sink

    made: list[ContinuousBatcher] = []
    yield make
    for batcher in made:
        batcher.stop()


def alone(model, prompt: list[int], sampling: Sampling) -> list[int]:
    """What ``generate()`` gives ``prompt`` alone with the same settings."""
    kwargs = {"max_new_tokens": sampling.max_new_tokens, "do_sample": sampling.do_sample,
              "repetition_penalty": sampling.repetition_penalty, "pad_token_id": PAD}
    if sampling.do_sample:
        kwargs.update(temperature=sampling.temperature, top_k=sampling.top_k,
                      top_p=sampling.top_p)
        torch.manual_seed(sampling.seed)
    output = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt),
                            dtype=torch.long), **kwargs)
    generated = output[0, len(prompt):].tolist()
    eos = model.generation_config.eos_token_id
    return generated[: generated.index(eos) + 1] if eos in generated else generated


def workload(seed: int, count: int) -> list[tuple[list[int], Sampling]]:
    rng = random.Random(seed)
    work = []
    for i in range(count):
        prompt = [rng.randrange(1, 200) for _ in range(rng.randrange(1, 24))]
        settings = [Sampling(max_new_tokens=rng.randrange(1, 30)),
                    Sampling(max_new_tokens=rng.randrange(1, 30), repetition_penalty=1.3),
                    Sampling(max_new_tokens=rng.randrange(1, 30), do_sample=True,
                             temperature=0.8, top_k=20, top_p=0.9, seed=i)]
        work.append((prompt, settings[i % 3]))
    return work


def test_each_sequence_equals_generate_alone_while_others_join_and_leave(model, decoder):
    batcher, sink = decoder(Limits(max_running=6))
    work = workload(1, 16)
    tickets = []
    for prompt, sampling in work:
        tickets.append(batcher.submit(prompt, sampling))
        time.sleep(0.002)  # arrivals spread over the running batch's steps
    sink.wait(tickets)
    for ticket, (prompt, sampling) in zip(tickets, work, strict=True):
        assert sink.tokens[ticket.id] == alone(model, prompt, sampling), sampling
    assert batcher.stats["max_rows"] > 1 and batcher.stats["prefills"] > 1


def test_seeded_sampling_repeats_and_matches_generate(model, decoder):
    batcher, sink = decoder()
    sampling = Sampling(max_new_tokens=12, do_sample=True, temperature=1.3, top_k=50, seed=5)
    first = batcher.submit([5, 6, 7], sampling)
    sink.wait([first])
    second = batcher.submit([5, 6, 7], sampling)
    sink.wait([second])
    assert sink.tokens[first.id] == sink.tokens[second.id] == alone(model, [5, 6, 7], sampling)


def test_a_cancelled_sequence_leaves_at_the_next_step(decoder):
    batcher, sink = decoder()
    long = batcher.submit([1, 2, 3], Sampling(max_new_tokens=500))
    short = batcher.submit([4], Sampling(max_new_tokens=3))
    sink.wait([short])
    long.cancel()
    sink.wait([long])
    assert sink.reasons[long.id] == "cancelled"
    assert len(sink.tokens[long.id]) < 500 and batcher.running == 0


def test_the_kv_budget_bounds_the_cache_and_refuses_what_never_fits(decoder):
    limits = Limits(max_batch_total_tokens=120, max_running=8, max_waiting=64)
    batcher, sink = decoder(limits)
    with pytest.raises(InvalidInputError, match="max_batch_total_tokens"):
        batcher.submit(list(range(1, 100)), Sampling(max_new_tokens=30))
    tickets = [batcher.submit([7] * 10, Sampling(max_new_tokens=20)) for _ in range(10)]
    sink.wait(tickets)
    assert all(sink.reasons[t.id] in ("length", "stop") for t in tickets)
    assert 0 < batcher.stats["max_cache_tokens"] <= limits.max_batch_total_tokens
    assert batcher.stats["max_rows"] <= 4  # 4 x (10 + 20) = 120


def test_too_many_waiting_is_overload(model):
    batcher = ContinuousBatcher(model, lambda events: None, PAD, [], Limits(max_waiting=2))
    batcher.submit([1], Sampling(max_new_tokens=1))  # not started: they wait
    batcher.submit([1], Sampling(max_new_tokens=1))
    with pytest.raises(OverloadedError):
        batcher.submit([1], Sampling(max_new_tokens=1))


def test_rows_join_padded_and_leave_trimmed(model):
    a, _ = RunningBatch.prefill(model, [[1, 2, 3, 4, 5]], PAD)
    a.push([9])
    b, _ = RunningBatch.prefill(model, [[6], [7, 8]], PAD)
    b.push([9, 9])
    a.extend(b)
    assert (a.rows, a.width) == (3, 5)
    assert a.mask.tolist() == [[1] * 6, [0, 0, 0, 0, 1, 1], [0, 0, 0, 1, 1, 1]]
    a.keep([2, 1])
    assert a.width == 2 and a.mask.tolist() == [[1, 1, 1], [0, 1, 1]]
    assert a.cache.layers[0].keys.shape[0] == 2 and a.cache.layers[0].keys.shape[2] == 2


def test_models_it_cannot_serve_exactly_are_refused(model):
    assert refusal(model, PAD) is None
    bart = BartForConditionalGeneration(BartConfig(
        vocab_size=64, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=16, decoder_ffn_dim=16))
    assert "encoder-decoder" in refusal(bart, PAD)
    model.generation_config.no_repeat_ngram_size = 3
    try:
        assert "no_repeat_ngram_size" in refusal(model, PAD)
    finally:
        model.generation_config.no_repeat_ngram_size = None


def test_leaving_the_async_iteration_frees_the_row(model):
    from contextlib import aclosing

    from serving.decoding.aio import AsyncDecoder

    async def scenario() -> tuple[list[int], AsyncDecoder]:
        decoder = AsyncDecoder(model, PAD, [], Limits())
        got: list[int] = []
        async with aclosing(decoder.tokens([1, 2, 3], Sampling(max_new_tokens=10_000))) as it:
            async for token, last in it:
                assert not last
                got.append(token)
                if len(got) == 2:
                    break
        for _ in range(500):
            if decoder.batcher.running == 0:
                break
            await asyncio.sleep(0.01)
        return got, decoder

    got, decoder = asyncio.run(scenario())
    try:
        assert len(got) == 2
        assert decoder.batcher.running == 0 and decoder.batcher.stats["cancelled"] == 1
    finally:
        decoder.close()
