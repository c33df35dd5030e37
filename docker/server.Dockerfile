# The openpi policy server on an NVIDIA GPU: JAX with CUDA 12 from PyPI (the CUDA libraries come as wheels; the
# host needs only the NVIDIA driver and the NVIDIA Container Toolkit), openpi_core with its serving extras.
# A checkpoint folder (params/ + assets/) is mounted at /checkpoint; docker/serve.sh reads the environment.
#
#   docker build -f docker/server.Dockerfile -t openpi-ros/server .
#   docker run --rm --gpus all -p 8000:8000 -v /data/ckpt/pi05_droid:/checkpoint:ro \
#     -e OPENPI_CONFIG=pi05_droid openpi-ros/server
FROM python:3.11-slim-bookworm
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    OPENPI_DATA_HOME=/cache \
    XLA_PYTHON_CLIENT_MEM_FRACTION=0.9

WORKDIR /opt/openpi-ros
COPY pyproject.toml README.md ./
COPY requirements/lock.txt requirements/lock.txt
COPY openpi_core/ openpi_core/
# Every version from the project's lock (-c); JAX's CUDA plugin and its NVIDIA wheels follow jax==0.10.2.
RUN pip install -c requirements/lock.txt "jax[cuda12]==0.10.2" ".[serve,gcs]"

COPY docker/serve.sh /usr/local/bin/openpi-serve-env
RUN useradd --create-home --uid 1000 openpi && mkdir -p /cache && chown openpi /cache
USER 1000
VOLUME ["/cache"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=600s \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('OPENPI_PORT', '8000'))"]
ENTRYPOINT ["/usr/local/bin/openpi-serve-env"]
