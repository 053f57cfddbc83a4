# syntax=docker/dockerfile:1
# EdgeOpt in two stages: the web app is built with Node, then served by the Python service, which is also the image
# of the Celery workers (`edgeopt worker`). compose.yaml runs it with PostgreSQL and Redis.

FROM node:22-bookworm-slim AS web
WORKDIR /web
COPY frontend/package.json frontend/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY frontend/ ./
RUN npm run build

FROM python:3.11-slim-bookworm AS service
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_USE_LEGACY_KERAS=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    EDGEOPT_STORAGE_DIR=/var/lib/edgeopt/storage \
    EDGEOPT_DATA_DIR=/var/lib/edgeopt/data
WORKDIR /src
COPY pyproject.toml requirements.lock README.md ./
COPY src ./src
# The built web app goes where the package ships it (pyproject's package-data: service/static).
COPY --from=web /web/dist ./src/edgeopt/service/static
# Same two steps as `make install`: the pinned torch first, then EdgeOpt with the frameworks, all from the lock.
RUN pip install --no-cache-dir -c requirements.lock torch==2.14.1 torchvision==0.29.1 \
 && pip install --no-cache-dir -c requirements.lock '.[ml]' \
 && rm -rf /src
RUN useradd --create-home --uid 10001 edgeopt \
 && mkdir -p /var/lib/edgeopt/storage /var/lib/edgeopt/data \
 && chown -R edgeopt /var/lib/edgeopt
USER edgeopt
WORKDIR /home/edgeopt
EXPOSE 8000
CMD ["edgeopt", "serve", "--host", "0.0.0.0", "--port", "8000"]
