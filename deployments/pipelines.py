"""Pipeline clients: one object per served model, what the ingress's routes call.

A client hides which deployments serve its model: a tokenizer deployment feeding a model
deployment, a model deployment that tokenizes itself (``colocate_tokenizer``), or one
generator deployment (models that generate text). Routes submit inputs, tokenize, read
details and stream through the same methods whatever is behind them; another way of
serving models (a pool of models on shared replicas) is one more implementation.
"""

from __future__ import annotations

from typing import Any

from ray.serve.handle import DeploymentHandle, DeploymentResponse, DeploymentResponseGenerator

from deployments.calls import Caller
from deployments.in_process import in_process_model
from serving.config import ModelSpec
from serving.errors import InvalidInputError
from serving.jobs import Job, merged_inputs
from serving.tasks import Slice, Task, TaskParameters, task_class


class Pipeline:
    """The client of one served model's deployments."""

    def __init__(self, spec: ModelSpec, call: Caller, deployments: list[DeploymentHandle]):
        self.spec = spec
        self.task: type[Task] = task_class(spec.task)
        self.deployments = deployments  # every deployment of the pipeline (health, details)
        self._call = call
        self._details: dict | None = None

    @property
    def key(self) -> str:
        """What the ingress groups this pipeline's requests by (one call per group)."""
        return self.spec.name

    @property
    def model_id(self) -> str:
        """What the model was loaded from, as ``/info`` and ``/v1/models`` report it."""
        return self.spec.model or self.spec.name

    async def submit(self, group: list[Job]) -> list[Any]:
        """Answers of a group of jobs for this model (one per job, before ``format``),
        computed by one call down the pipeline; cancelled when every job is abandoned.

        Raises:
            ServingError: or a Ray error, for the whole group.
        """
        return await self._call(lambda: self._send(group), group)

    def _send(self, group: list[Job]) -> DeploymentResponse:
        raise NotImplementedError

    async def embed_ids(self, ids: list[list[int]], params: TaskParameters,
                        add_special_tokens: bool = True, names: list[str] | None = None
                        ) -> tuple[list[Any], int]:
        """Embeddings of token-id inputs, and the tokens the model read: framed with the
        model's special tokens, or taken as given (``add_special_tokens=False``, as TEI
        does); cut to the window as ``params`` say; ``names``: how errors name the inputs."""
        raise InvalidInputError(f"model {self.spec.name!r} takes texts, not token ids")

    async def decode(self, ids: list[list[int]], skip_special_tokens: bool = True,
                     names: list[str] | None = None) -> list[str]:
        """TEI ``/decode``: per input of token ids its text (``names``: how errors name
        the inputs)."""
        raise InvalidInputError(f"model {self.spec.name!r} does not decode token ids")

    async def processed_tokens(self, texts: list[str]) -> int:
        """Tokens the model reads for ``texts`` (truncated to its window)."""
        raise InvalidInputError(f"model {self.spec.name!r} does not count tokens")

    async def token_details(self, texts: list[str], add_special_tokens: bool) -> list[list[dict]]:
        """TEI ``/tokenize`` entries of ``texts``."""
        raise InvalidInputError(f"model {self.spec.name!r} does not tokenize for clients")

    def stream(self, text: str, params: TaskParameters) -> DeploymentResponseGenerator:
        """Events of one prompt generated token by token."""
        raise InvalidInputError(f"model {self.spec.name!r} ({self.task.name}) cannot stream; "
                                "streaming is for text-generation models")

    async def details(self) -> dict:
        """What the replicas report for ``/info`` (fixed for their life, so asked once)."""
        if self._details is None:
            found: dict = {}
            for deployment in self.deployments:
                found.update(await self._call(lambda d=deployment: d.details.remote()))
            self._details = found
        return self._details


class EncodingPipeline(Pipeline):
    """Models whose texts are tokenized, run in one forward pass and post-processed."""

    def __init__(self, spec: ModelSpec, call: Caller, tokenizer: DeploymentHandle,
                 model: DeploymentHandle) -> None:
        distinct = [tokenizer] if tokenizer is model else [tokenizer, model]
        super().__init__(spec, call, distinct)
        self._tokenizer, self._model = tokenizer, model

    def _send(self, group: list[Job]) -> DeploymentResponse:
        needs_offsets = self.task.needs_offsets
        texts, pairs = merged_inputs(group)
        encode: dict[str, Any] = {"with_offsets": needs_offsets}
        side = group[0].params.truncation_side()  # the same for every job (their batch key)
        if side != "right":
            encode["truncation_side"] = side
        if self.task.windowed:  # question-answering: per input its window settings
            encode["windows"] = [self.task.window(job.params) for job in group
                                 for _ in job.inputs.texts]
        slices = [
            Slice(len(job.inputs.texts), job.params, job.inputs.layout,
                  tuple(job.inputs.texts) if needs_offsets else None,
                  tuple(job.inputs.text_pairs)
                  if needs_offsets and job.inputs.text_pairs is not None else None)
            for job in group
        ]
        return self._infer(texts, pairs, group[0].params.truncation, slices, encode)

    def _infer(self, texts: list[str], pairs: list[str] | None, truncation: bool,
               slices: list[Slice], encode: dict[str, Any]) -> DeploymentResponse:
        raise NotImplementedError

    async def processed_tokens(self, texts: list[str]) -> int:
        return await self._call(lambda: self._tokenizer.processed_tokens.remote(texts))

    async def token_details(self, texts: list[str], add_special_tokens: bool) -> list[list[dict]]:
        return await self._call(
            lambda: self._tokenizer.token_details.remote(texts, add_special_tokens))

    async def embed_ids(self, ids: list[list[int]], params: TaskParameters,
                        add_special_tokens: bool = True, names: list[str] | None = None
                        ) -> tuple[list[Any], int]:
        slices = [Slice(len(ids), params, "texts")]
        options = ids_options(params, add_special_tokens, names)
        encoded = await self._call(lambda: self._tokenizer.encode_ids.remote(ids, **options))
        (vectors,) = await self._call(lambda: self._model.infer_many.remote(encoded, slices))
        return vectors, encoded.num_tokens

    async def decode(self, ids: list[list[int]], skip_special_tokens: bool = True,
                     names: list[str] | None = None) -> list[str]:
        return await self._call(
            lambda: self._tokenizer.decode.remote(ids, skip_special_tokens, names))


def ids_options(params: TaskParameters, add_special_tokens: bool, names: list[str] | None
                 ) -> dict[str, Any]:
    """``encode_ids``'s options for token-id inputs of a request with ``params``."""
    return {"truncate": params.truncation, "add_special_tokens": add_special_tokens,
            "names": names, "truncation_side": params.truncation_side()}


class TokenizerModelPipeline(EncodingPipeline):
    """A tokenizer deployment feeding a model deployment; the tokenizer's response goes
    straight to the model, so token ids never travel back through the ingress."""

    def _infer(self, texts: list[str], pairs: list[str] | None, truncation: bool,
               slices: list[Slice], encode: dict[str, Any]) -> DeploymentResponse:
        encoded = self._tokenizer.encode.remote(texts, pairs, truncation, **encode)
        return self._model.infer_many.remote(encoded, slices)


class ColocatedPipeline(EncodingPipeline):
    """One model deployment that tokenizes itself (``colocate_tokenizer``)."""

    def __init__(self, spec: ModelSpec, call: Caller, model: DeploymentHandle) -> None:
        super().__init__(spec, call, model, model)

    def _infer(self, texts: list[str], pairs: list[str] | None, truncation: bool,
               slices: list[Slice], encode: dict[str, Any]) -> DeploymentResponse:
        return self._model.infer_texts.remote(texts, pairs, truncation, slices, **encode)


class GeneratorPipeline(Pipeline):
    """One generator deployment: it tokenizes, generates and decodes itself."""

    def __init__(self, spec: ModelSpec, call: Caller, generator: DeploymentHandle) -> None:
        super().__init__(spec, call, [generator])
        self._generator = generator

    def _send(self, group: list[Job]) -> DeploymentResponse:
        return self._generator.infer_many.remote(
            [job.inputs.texts for job in group], [job.params for job in group]
        )

    def stream(self, text: str, params: TaskParameters) -> DeploymentResponseGenerator:
        if not self.task.streams:
            return super().stream(text, params)
        return self._generator.options(stream=True).stream.remote(text, params)

    async def chat(self, messages: list[dict], params: TaskParameters) -> dict:
        """The assistant's answer to ``messages`` (new text only), ``details`` if asked
        (the generator refuses models that do not chat)."""
        return await self._call(lambda: self._generator.chat.remote(messages, params))

    def stream_chat(self, messages: list[dict], params: TaskParameters
                    ) -> DeploymentResponseGenerator:
        """:meth:`stream` of the assistant's answer to ``messages``."""
        return self._generator.options(stream=True).stream_chat.remote(messages, params)


def pipeline_for(spec: ModelSpec, call: Caller, handles: dict[str, Any]) -> Pipeline:
    """The client of the deployments ``graphs.app`` built for ``spec`` (by role; an
    ``in_ingress`` model is loaded here, into the calling ingress replica)."""
    if "in_ingress" in handles:
        return ColocatedPipeline(spec, call, in_process_model(spec, handles["in_ingress"]))
    if "pool" in handles:
        from deployments.pool_pipelines import PoolPipeline  # it builds on this module

        return PoolPipeline(spec, call, handles["pool"])
    if "generator" in handles:
        return GeneratorPipeline(spec, call, handles["generator"])
    if "tokenizer" in handles:
        return TokenizerModelPipeline(spec, call, handles["tokenizer"], handles["model"])
    return ColocatedPipeline(spec, call, handles["model"])

