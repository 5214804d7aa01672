# syntax=docker/dockerfile:1
#
# spotler-bridge: one image for every role (`bridge ingress|egress|serve|simulator|config`).
#
#   docker build -t spotler-bridge:dev .
#   docker build --build-arg LOCK=rdkafka.lock -t spotler-bridge:dev-rdkafka .   # + librdkafka
#   docker run --rm -p 8080:8080 -p 9090:9090 -e BRIDGE_WEBHOOK_TOKENS=... spotler-bridge:dev ingress
#
# Stage 1 (builder) installs the locked runtime dependencies into /opt/venv in a layer of their
# own, keyed only on requirements/runtime.lock, then installs the package on top. Stage 2
# (runtime) copies the venv alone: no pip cache, no build tools, no sources, no tests.

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

RUN python -m venv /opt/venv

WORKDIR /src

# Dependencies first: this layer is rebuilt only when the lock file changes. The lock pins every
# runtime dependency with its hashes (`make lock` writes it from pyproject.toml).
# LOCK=rdkafka.lock adds the optional librdkafka publisher (BRIDGE_KAFKA_CLIENT=librdkafka).
ARG LOCK=runtime.lock
COPY requirements/${LOCK} ./runtime.lock
RUN pip install --require-hashes --requirement runtime.lock

# Then the package itself (dependencies are already there; --no-deps keeps this layer small).
COPY pyproject.toml README.md ./
COPY bridge ./bridge
RUN pip install --no-deps . \
    && bridge --help > /dev/null


FROM ${PYTHON_IMAGE} AS runtime

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown

LABEL org.opencontainers.image.title="spotler-bridge" \
      org.opencontainers.image.description="Connects the Spotler Message platform (API v3) to Apache Kafka: webhooks in, commands out." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Proprietary" \
      org.opencontainers.image.vendor="spotler-bridge" \
      org.opencontainers.image.base.name="docker.io/library/python:3.12-slim-bookworm"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONFAULTHANDLER=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    BRIDGE_SPOOL_DIR=/var/lib/spotler-bridge/spool

# A fixed, unprivileged UID/GID (10001) that Kubernetes' runAsUser/fsGroup can name. The spool
# directory is owned by it, so a plain `docker run` works too; in Kubernetes a volume is
# mounted there (the root filesystem is read-only).
RUN groupadd --system --gid 10001 bridge \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin bridge \
    && mkdir -p /var/lib/spotler-bridge/spool \
    && chown -R 10001:10001 /var/lib/spotler-bridge

COPY --from=builder /opt/venv /opt/venv

USER 10001:10001
WORKDIR /var/lib/spotler-bridge

# 8080: webhooks (POST /webhooks); 9090: ops (/metrics, /healthz, /readyz).
EXPOSE 8080 9090

# No HEALTHCHECK: Kubernetes probes /healthz and /readyz on the ops port.
ENTRYPOINT ["bridge"]
CMD ["serve"]
