# feedwatch image: one image for migrate, beat, workers and the metrics exporter
# (docker-compose.yml picks the command per service).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FEEDWATCH_HOME=/data

WORKDIR /app

# README.md is optional at build time (glob), pyproject.toml is not.
COPY pyproject.toml README.md* ./
COPY src ./src
COPY workers ./workers
COPY config ./config
RUN pip install . \
    && useradd --system --create-home --uid 10001 feedwatch \
    && mkdir -p /data \
    && chown feedwatch:feedwatch /data

USER feedwatch
VOLUME ["/data"]
EXPOSE 9808

CMD ["feedwatch", "run"]
