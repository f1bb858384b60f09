# hazardwatch service image. CPU torch by default; the GPU profile of docker-compose.yml
# builds with TORCH_INDEX=https://download.pytorch.org/whl/cu128 instead.
FROM python:3.11.11-slim-bookworm

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

# ffmpeg: H.264 event clips that play in browsers.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg curl \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml constraints.txt README.md alembic.ini ./
COPY service ./service
COPY migrations ./migrations
COPY config ./config
COPY scripts ./scripts
# The tested versions of everything but the torch/CUDA stack, which TORCH_INDEX provides.
RUN grep -vE '^(torch|torchvision|triton|nvidia-|cuda-)' constraints.txt > /tmp/constraints.txt \
 && pip install --extra-index-url "${TORCH_INDEX}" -c /tmp/constraints.txt .

RUN useradd --system --uid 10001 --home /data hazardwatch \
 && mkdir -p /data /models && chown hazardwatch /data /models
USER hazardwatch
VOLUME ["/data", "/models"]
EXPOSE 8080

HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1

# Migrations on start, then the service (config: /etc/hazardwatch/hazardwatch.yaml).
CMD ["sh", "-c", "hazardwatch migrate --config /etc/hazardwatch/hazardwatch.yaml && exec hazardwatch run --config /etc/hazardwatch/hazardwatch.yaml"]
