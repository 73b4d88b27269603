"""Infinity's own virtualenv (``bench/infinity.py``): the versions it is installed with, the
check that they import, and the offline environment its processes run in. Infinity pins
libraries this project has moved past (``transformers<5``, ``numpy<2``), so it never shares
the project's environment."""

from __future__ import annotations

from pathlib import Path

from bench.processes import install_venv, venv_env

VENV = Path(__file__).resolve().parents[1] / ".bench" / "infinity-venv"

# A set found to install and serve on CPython 3.11 (CPU torch from the local wheel). The
# ``torch==2.13.0`` pin is what selects the local CPU wheel; a looser spec pulls a CUDA build.
# The others fix what ``infinity-emb`` leaves open (sentence-transformers<4, transformers<5,
# numpy<2, fastapi/uvicorn/typer ranges, optimum>=1.24) to the versions verified together.
# optimum 2.x moved ONNX Runtime support into optimum-onnx; 0.1.0 is the release that allows
# transformers 4.57 (<4.58) and it requires optimum~=2.1.0. optimum 1.27 would need <4.54.
PINS: tuple[str, ...] = (
    "torch==2.13.0",
    "infinity-emb[torch,server,optimum]==0.0.78",
    "sentence-transformers==3.4.1",
    "transformers==4.57.6",
    "tokenizers==0.22.2",
    "huggingface_hub==0.36.2",
    "numpy==1.26.4",
    "optimum[onnxruntime]==2.1.0",
    "optimum-onnx==0.1.0",
    "onnxruntime==1.32.0",
    "onnx==1.23.2",
    "protobuf==7.36.2",
    "fastapi==0.165.0",
    "starlette==1.10.0",
    "uvicorn==0.32.1",
    "pydantic==2.14.4",
    "typer==0.12.5",
    "click==8.1.8",
    "rich==13.9.4",
    "posthog==7.91.1",
)
STAMP = ".bench-infinity-installed"
CHECK = ("import torch, sentence_transformers, infinity_emb, infinity_emb.infinity_server, "
         "onnxruntime, optimum.onnxruntime, optimum.exporters.onnx")


def executable(venv: Path = VENV) -> Path:
    return Path(venv) / "bin" / "infinity_emb"


def offline_env() -> dict[str, str]:
    """The environment of every process run in the venv: nothing may reach the network."""
    env = venv_env()
    env.update({
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
        "DO_NOT_TRACK": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0", "PYTHONUNBUFFERED": "1",
    })
    return env


def ensure_installed(venv: Path = VENV) -> Path:
    """Create ``venv`` and install ``PINS`` into it unless its stamp says so already.

    Returns the path of the ``infinity_emb`` executable. Raises RuntimeError if any step fails.
    """
    install_venv("infinity", Path(venv), PINS, CHECK, STAMP)
    exe = executable(venv)
    if not exe.exists():
        raise RuntimeError(f"infinity install finished but {exe} is missing")
    return exe
