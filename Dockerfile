# syntax=docker/dockerfile:1
# The API and the worker: one image, two commands (`serve`, `worker`).
# Slim, non-root, no compilers in the final stage, and a healthcheck on /health.

FROM python:3.13-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY image_service ./image_service
RUN python -m venv /opt/image-service \
 && /opt/image-service/bin/pip install '.[server]'

FROM python:3.13-slim
LABEL org.opencontainers.image.title="image_service" \
      org.opencontainers.image.description="Presigned direct-to-S3 image uploads with DynamoDB metadata"
ENV PATH=/opt/image-service/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    IMAGE_SERVICE_HOST=0.0.0.0 \
    IMAGE_SERVICE_PORT=8080
COPY --from=build /opt/image-service /opt/image-service
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin app
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080
# SIGTERM drains requests (API) and jobs (worker) for IMAGE_SERVICE_SHUTDOWN_GRACE_SECONDS.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('IMAGE_SERVICE_PORT', '8080')}/health\", timeout=2)"]
ENTRYPOINT ["image-service"]
CMD ["serve"]
