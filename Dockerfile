# transformers-serve: Python 3.11 with the project installed as the README does
# (`make install`, i.e. `pip install torch==2.13.0 -e .`). The same image serves alone
# (`docker run --network host transformers-serve:0.1.0`, then `make serve`'s
# http://127.0.0.1:8000) and as every Ray node of deploy/kubernetes/ (KubeRay overrides
# the command with `ray start`). Build from the repository root:
#   docker build -t transformers-serve:0.1.0 .
#   docker build -t transformers-serve:0.1.0-cuda \
#       --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .
FROM python:3.11-slim

# make runs the install; KubeRay's readiness and liveness probes call wget.
RUN apt-get update \
    && apt-get install -y --no-install-recommends make wget \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1

# torch first, from PyTorch's own index: its CPU build by default (PyPI's Linux wheel
# pulls the CUDA libraries, gigabytes), a CUDA build for GPU workers. `make install` then
# finds the pin already met and keeps that build.
ARG TORCH=torch==2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN python -m pip install --index-url "$TORCH_INDEX_URL" "$TORCH"

WORKDIR /app
COPY . .
RUN make install PYTHON=python TORCH="$TORCH"

EXPOSE 8000
CMD ["make", "serve", "PYTHON=python"]
