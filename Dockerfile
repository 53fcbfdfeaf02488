# One image for the four services; each compose service picks its console script.
# Base images are build arguments so a registry-less CI can build local stand-ins.
ARG PYTHON_IMAGE=python:3.12-slim

FROM ${PYTHON_IMAGE} AS deps
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_PYTHON_DOWNLOADS=never \
    PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Builds behind a TLS-intercepting proxy put its CA certificates (*.crt) in .ci/extra-ca/;
# they are appended to the system bundle for the download steps only. (A build argument,
# not a BuildKit secret, so the classic builder works too.)
COPY .ci/extra-ca/ /tmp/extra-ca/
RUN set -e; cat /etc/ssl/certs/ca-certificates.crt /tmp/extra-ca/*.crt > /tmp/ca.crt 2>/dev/null \
    || cp /etc/ssl/certs/ca-certificates.crt /tmp/ca.crt; \
    python3 -m venv /opt/uv \
    && SSL_CERT_FILE=/tmp/ca.crt PIP_CERT=/tmp/ca.crt /opt/uv/bin/pip install --quiet "uv==0.13.9"
# Dependency layer: only the lock and the members' pyproject files, so code edits keep it.
COPY pyproject.toml uv.lock ./
COPY shared/envelope/pyproject.toml shared/envelope/
COPY shared/logs/pyproject.toml shared/logs/
COPY shared/orchestration/pyproject.toml shared/orchestration/
COPY shared/dispatch/pyproject.toml shared/dispatch/
COPY services/api/pyproject.toml services/api/
COPY services/dispatcher/pyproject.toml services/dispatcher/
COPY services/sweeper/pyproject.toml services/sweeper/
COPY services/worker/pyproject.toml services/worker/
COPY stack/pyproject.toml stack/
# The dev-only test kit is a workspace member: its pyproject is needed to read the workspace,
# but it is never installed (arco-stack depends on every product package, not on the kit).
COPY testing/pyproject.toml testing/
RUN SSL_CERT_FILE=/tmp/ca.crt /opt/uv/bin/uv sync --frozen --no-dev --package arco-stack \
    --no-install-workspace

FROM deps AS app
COPY shared shared
COPY services services
COPY stack stack
COPY README.md ./
RUN SSL_CERT_FILE=/tmp/ca.crt /opt/uv/bin/uv sync --frozen --no-dev --package arco-stack --no-editable \
    && rm -rf /root/.cache /tmp/ca.crt /tmp/extra-ca \
    && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin arco
USER arco
ENV ARCO_HTTP_HOST=0.0.0.0
HEALTHCHECK --interval=5s --timeout=3s --retries=20 \
    CMD python3 -c "import os,urllib.request; urllib.request.urlopen('http://127.0.0.1:%s%s' % (os.environ.get('ARCO_HTTP_PORT', '8080'), os.environ.get('ARCO_HEALTH_PATH', '/ready')), timeout=2)"

FROM app AS api
ENV ARCO_HTTP_PORT=8080
EXPOSE 8080
CMD ["arco-api"]

FROM app AS dispatcher
ENV ARCO_HTTP_PORT=8081
EXPOSE 8081
CMD ["arco-dispatcher"]

FROM app AS sweeper
ENV ARCO_HTTP_PORT=8082
EXPOSE 8082
CMD ["arco-sweeper"]

FROM app AS worker
ENV ARCO_HTTP_PORT=8090 ARCO_HEALTH_PATH=/health
EXPOSE 8090
CMD ["arco-worker"]
