# One Dockerfile builds the image of every Closeloop service (ingest, scoring, loop-orchestrator,
# notifier), so the four images cannot drift apart. This is how the project's "one Dockerfile per
# service" is met: one build per service, each with its own build args. docker-compose.yml and
# deploy/k8s/README.md use it this way. Nothing else is needed under services/<svc>/.
#
# The build context is the REPOSITORY ROOT:
#
#   docker build -f deploy/docker/service.Dockerfile \
#     --build-arg SERVICE=ingest --build-arg SERVICE_DIR=ingest --build-arg PORT=8001 \
#     -t closeloop/ingest:dev .
#
#   SERVICE      suffix of the package and console script closeloop-<SERVICE>:
#                ingest | scoring | orchestrator | notifier
#   SERVICE_DIR  the service's folder under services/:
#                ingest | scoring | loop-orchestrator | notifier
#   PORT         the port `serve` listens on: 8001 | 8002 | 8003 | 8004
#
# The image runs `closeloop-<SERVICE> serve --host 0.0.0.0` (on the service's own port, PORT) as
# uid 10001, a numeric non-root user. It also holds `closeloop-<SERVICE> migrate`,
# `closeloop-topics create` and `closeloop-deadletter` (from closeloop-common).
#
# Read-only root filesystem: the service writes nothing outside /tmp (bytecode is compiled at build
# time, PYTHONDONTWRITEBYTECODE stops any more, and the user owns no other directory). Run it with
# a read-only root and a small writable /tmp: docker-compose.yml does (`read_only: true`, a tmpfs),
# and so does deploy/k8s (readOnlyRootFilesystem, an emptyDir at /tmp). /tmp is not declared a
# VOLUME here so that plain `docker run` leaves no anonymous volume behind.
#
# RUN --mount needs BuildKit, the default builder of Docker 23 and later.
# Linted by hadolint in `make test` (tests/deploy/test_dockerfile.py).

# Both stages must use the same base image: the virtual environment links to its interpreter.
ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv

ARG SERVICE
ARG SERVICE_DIR
RUN test -n "${SERVICE}" && test -n "${SERVICE_DIR}" \
    || { echo "build args SERVICE and SERVICE_DIR are required (see the top of this file)" >&2; exit 1; }

ENV UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/app/.venv

WORKDIR /app

# uv resolves the whole workspace even for one package, so a frozen install needs the root
# pyproject.toml, uv.lock and EVERY member's pyproject.toml. A new workspace member must be added
# here too.
COPY pyproject.toml uv.lock ./
COPY libs/common/pyproject.toml libs/common/pyproject.toml
COPY services/ingest/pyproject.toml services/ingest/pyproject.toml
COPY services/scoring/pyproject.toml services/scoring/pyproject.toml
COPY services/loop-orchestrator/pyproject.toml services/loop-orchestrator/pyproject.toml
COPY services/notifier/pyproject.toml services/notifier/pyproject.toml
COPY tools/devtools/pyproject.toml tools/devtools/pyproject.toml

# Layer 1, third-party dependencies only: rebuilt only when uv.lock or a pyproject.toml changes.
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --package "closeloop-${SERVICE}" --no-install-workspace

# Layer 2, the service and the shared library, installed as real (non-editable) packages so the
# runtime stage needs nothing but the virtual environment (each service's Alembic migrations live
# in its package, src/closeloop_<SERVICE>/migrations, and so are installed with it).
COPY libs/common libs/common
COPY services/${SERVICE_DIR} services/${SERVICE_DIR}
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --package "closeloop-${SERVICE}" --no-editable \
    && test -x "/app/.venv/bin/closeloop-${SERVICE}" \
    && test -x /app/.venv/bin/closeloop-topics

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ARG SERVICE
ARG PORT

RUN test -n "${PORT}" || { echo "build arg PORT is required (see the top of this file)" >&2; exit 1; } \
    && groupadd --system --gid 10001 closeloop \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /app \
       --shell /usr/sbin/nologin closeloop

# Owned by root and so read-only for the service user.
COPY --from=builder /app/.venv /app/.venv
# One name for the service's console script, so that CMD needs no shell to pick it: `serve`'s
# default port is the service's own (PORT), the one EXPOSEd and health-checked below.
RUN ln -s "/app/.venv/bin/closeloop-${SERVICE}" /usr/local/bin/closeloop-service \
    && test -x /usr/local/bin/closeloop-service

ENV PATH="/app/.venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TMPDIR=/tmp \
    CLOSELOOP_SERVICE=${SERVICE} \
    CLOSELOOP_SERVICE_PORT=${PORT}

LABEL org.opencontainers.image.title="closeloop-${SERVICE}" \
      org.opencontainers.image.description="Closeloop ${SERVICE} service (NPS closed-loop backend)"

WORKDIR /app
USER 10001:10001
EXPOSE ${PORT}

# Liveness for plain `docker run` (Compose and Kubernetes bring their own probes). Exec form, so
# Python reads the port from the environment itself.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ['CLOSELOOP_SERVICE_PORT'], timeout=4)"]

# Exec form: the service is PID 1 and receives SIGTERM directly.
CMD ["closeloop-service", "serve", "--host", "0.0.0.0"]
