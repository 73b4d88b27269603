"""The runtimes survey's conversions (``bench/runtimes/measure.py``), run once in the
surveying process: each runtime's model file from a model directory, exported to ONNX by
torch as ``engine: onnx`` does, quantized to int8 (dynamically, or statically on
calibration sentences) by ONNX Runtime or by OpenVINO's NNCF."""

from __future__ import annotations

from pathlib import Path

# name → (engine family, quantization): what ``prepare`` and ``load`` build.
RUNTIMES = {
    "torch": ("torch", None),
    "torch-int8-dynamic": ("torch", "dynamic"),
    "onnxruntime": ("onnxruntime", None),
    "onnxruntime-int8-dynamic": ("onnxruntime", "dynamic"),
    "onnxruntime-int8-static": ("onnxruntime", "static"),
    "openvino": ("openvino", None),
    "openvino-int8-static": ("openvino", "static"),
}
CALIBRATION_TOKENS = 64


def _onnx_export(model_dir: str, path: Path) -> Path:
    """The encoder's ONNX graph (torch's exporter, as ``engine: onnx`` does) at ``path``."""
    import torch
    from transformers import AutoModel

    from serving.engines import onnx_engine

    model = AutoModel.from_pretrained(model_dir).eval()
    names = ["input_ids", "attention_mask", "token_type_ids"]
    sample = onnx_engine._sample(model, names, 3, 11, seed=0)
    with torch.no_grad():
        reference = {"last_hidden_state": model(**sample).last_hidden_state}
    path.write_bytes(onnx_engine._export(model, sample, reference))
    return path


def _activation_matmuls(path: Path) -> list[str]:
    """Names of the MatMul nodes of the ONNX graph at ``path`` with no weight input."""
    import onnx

    graph = onnx.load(str(path)).graph
    weights = {initializer.name for initializer in graph.initializer}
    return [node.name for node in graph.node if node.op_type == "MatMul"
            and not weights & set(node.input)]


class _Calibration:
    """ONNX Runtime's calibration reader over tokenized calibration sentences."""

    def __init__(self, model_dir: str, sentences: list[str]) -> None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        # One shape for every sample: percentile calibration stacks them.
        self._feeds = iter([dict(tokenizer([s], padding="max_length", truncation=True,
                                           max_length=CALIBRATION_TOKENS, return_tensors="np"))
                            for s in sentences])

    def get_next(self) -> dict | None:
        return next(self._feeds, None)


def prepare(name: str, model_dir: str, workdir: Path, calibration: list[str]) -> str:
    """What ``load`` of runtime ``name`` reads: a model directory or a converted file."""
    family, quantization = RUNTIMES[name]
    if family == "torch":
        return model_dir
    onnx = workdir / "model.onnx"
    if not onnx.exists():
        _onnx_export(model_dir, onnx)
    if family == "onnxruntime":
        from onnxruntime.quantization import (
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_dynamic,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process

        if quantization is None:
            return str(onnx)
        target = workdir / f"{name}.onnx"
        if quantization == "dynamic":
            quantize_dynamic(onnx, target, weight_type=QuantType.QInt8, per_channel=True)
        else:
            prepared = workdir / "model.pre.onnx"
            quant_pre_process(str(onnx), str(prepared), skip_symbolic_shape=True)
            # The weights' matrix multiplications only: those of two activations (attention
            # scores, attention times values) lose too much in int8.
            quantize_static(prepared, target, _Calibration(model_dir, calibration),
                            quant_format=QuantFormat.QDQ, per_channel=True,
                            op_types_to_quantize=["MatMul"],
                            nodes_to_exclude=_activation_matmuls(prepared),
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.Percentile,
                            extra_options={"CalibPercentile": 99.99})
        return str(target)
    import openvino as ov

    model = ov.Core().read_model(onnx)
    if quantization == "static":
        import nncf
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        dataset = nncf.Dataset(calibration, lambda s: dict(
            tokenizer([s], truncation=True, return_tensors="np")))
        model = nncf.quantize(model, dataset, model_type=nncf.ModelType.TRANSFORMER,
                              subset_size=len(calibration))
    target = workdir / f"{name}.xml"
    ov.save_model(model, target)
    return str(target)
