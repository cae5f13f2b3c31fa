# pxserve: serve any PaddleX pipeline.
#
#   docker build -t pxserve .                          # CPU image
#   docker build --build-arg VARIANT=gpu -t pxserve:gpu .   # GPU image (CUDA and cuDNN from wheels)
#   docker run --rm --shm-size 256m -p 8080:8080 pxserve --serve --pipeline image_classification
#
# Without a reachable registry, deploy/build-image.sh makes the Debian base
# locally and builds this file on it. The image runs as a non-root user, needs
# no write to its root filesystem (the embedded models are built in below), and
# stops on `docker stop` by draining what is in flight, then exiting 0.

ARG BASE_IMAGE=debian:bookworm-slim

# --- build: a virtual environment with pxserve, its dependencies and models --
FROM ${BASE_IMAGE} AS build
ARG VARIANT=cpu
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/pxserve/bin:$PATH
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv ca-certificates libgomp1 \
    && rm -rf /var/lib/apt/lists/*
RUN python3.11 -m venv /opt/pxserve

# Dependencies first, from setup.cfg alone, so a source change reuses this layer.
COPY setup.cfg /src/setup.cfg
RUN python -c "import configparser; c = configparser.ConfigParser(); c.read('/src/setup.cfg'); \
print(c['options']['install_requires'])" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && if [ "$VARIANT" = gpu ]; then \
        # The CUDA runtime, cuBLAS and cuDNN that ONNX Runtime's CUDA build
        # links to, as NVIDIA's own redistributable wheels (ORT's extras).
        pip install "onnxruntime-gpu[cuda,cudnn]" "nvidia-cublas" \
        && find /opt/pxserve/lib/python3.11/site-packages/nvidia -maxdepth 3 -name lib -type d \
            > /opt/pxserve/nvidia-libs.conf; \
    else : > /opt/pxserve/nvidia-libs.conf; fi

# Then the source (see .dockerignore), the package, and every shipped
# pipeline's embedded models with their ONNX conversions (--pipeline all: a
# new pipeline needs no line here), built once so the image starts without
# writing anything. One step: every layer costs a copy on some drivers.
ENV PXSERVE_CACHE_DIR=/opt/pxserve/cache
COPY . /src
RUN pip install --no-deps /src \
    && rm -rf /src \
    && pxserve --prepare --pipeline all \
    && pxserve --prepare --pipeline all --use_hpip \
    && find /opt/pxserve -name __pycache__ -prune -exec rm -rf {} + \
    && chmod -R a+rX /opt/pxserve

# --- runtime: Python, an init, and the environment -----------------------------
FROM ${BASE_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 tini libgomp1 \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
    && useradd --uid 10001 --user-group --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin pxserve
COPY --from=build /opt/pxserve /opt/pxserve
# GPU variant: let the loader find the CUDA libraries that came as wheels.
RUN cp /opt/pxserve/nvidia-libs.conf /etc/ld.so.conf.d/pxserve-nvidia.conf && ldconfig

# A read-only root has no writable /tmp, but /dev/shm is always a writable
# tmpfs; Python libraries only need a little temporary space at import.
ENV PATH=/opt/pxserve/bin:$PATH \
    PXSERVE_CACHE_DIR=/opt/pxserve/cache \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/dev/shm
USER 10001
EXPOSE 8080
# Signals go to tini (PID 1), which passes them to pxserve and reaps orphans.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('PXSERVE_PORT', '8080')}/health\", timeout=4)"]
ENTRYPOINT ["tini", "--", "pxserve"]
CMD ["--serve", "--pipeline", "image_classification"]
