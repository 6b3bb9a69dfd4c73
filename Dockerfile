# RunPod GPU worker image: XTTS-v2 on CUDA, weights baked in at build time.
#
#   docker build --build-arg COQUI_TOS_AGREED=1 -t serverless-tts .
#
# COQUI_TOS_AGREED=1 states that you accept the Coqui Public Model License (non-commercial) for
# the XTTS-v2 weights; the build refuses to download them otherwise.
#
# Layers go from slowest-changing to fastest: locked dependencies, then the weights, then the
# code, so a code change rebuilds neither the 5 GB torch stack nor the 1.8 GB download.
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04

ARG COQUI_TOS_AGREED=0
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    UV_NO_CACHE=1 \
    UV_PYTHON_DOWNLOADS=never

# ffmpeg: torchcodec (which coqui-tts's torchaudio uses) loads FFmpeg's shared libraries.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv ffmpeg ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && python3.11 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /app
# The installer (uv, hash-pinned), then the base and xtts requirements at the lock's versions
# and hashes (-c): the same lock make, CI and the Modal image install from.
COPY scripts/installer.lock scripts/lockfile.py ./scripts/
RUN python3.11 -m venv /opt/tools \
 && /opt/tools/bin/pip install --require-hashes --no-deps -r scripts/installer.lock
COPY pyproject.toml requirements.lock README.md ./
RUN /opt/tools/bin/python scripts/lockfile.py check \
 && /opt/tools/bin/uv pip install --python /opt/venv/bin/python \
      -c requirements.lock -r pyproject.toml --extra xtts

# Bake the weights into the image so a cold start never downloads them: straight into the folder
# TTS_XTTS_MODEL_DIR names (coqui's ModelManager would leave them in the Hugging Face cache).
COPY shared/engines/xtts_weights.py ./download_xtts.py
RUN test "$COQUI_TOS_AGREED" = "1" || { echo "set --build-arg COQUI_TOS_AGREED=1 to accept the CPML"; exit 1; } \
 && python download_xtts.py /models/xtts-v2 --accept-cpml && rm download_xtts.py

COPY shared ./shared
COPY handlers ./handlers
COPY serverless_tts ./serverless_tts
RUN /opt/tools/bin/uv pip install --python /opt/venv/bin/python --no-deps -b requirements.lock . \
 && python scripts/lockfile.py installed
COPY runpod_handler.py test_input.json ./

# TTS_LEASE_REQUESTS: a deployed worker charges a tenant's warm jobs from an allowance it leases
# in one database call, so no job waits for a round trip (README: "Limits off the hot path").
ENV TTS_ENGINE=xtts \
    TTS_XTTS_MODEL_DIR=/models/xtts-v2 \
    TTS_XTTS_DEVICE=cuda \
    TTS_DATA_DIR=/tmp/serverless-tts \
    TTS_LEASE_REQUESTS=10

CMD ["python", "runpod_handler.py"]
