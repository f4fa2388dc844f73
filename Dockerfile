# auth-sidecar: run beside a sync server, or behind Envoy.
#   docker build -t auth-sidecar .
#   docker run -e AUTH_JWT_ALG=HS256 -e AUTH_JWT_KEY_FILE=/run/secrets/jwt -p 50051:50051 auth-sidecar
# .ci/run replays the install step below in a clean virtualenv, since CI has no Docker engine.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY sidecar ./sidecar
COPY proto/python ./proto/python
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir ./proto/python .

FROM python:3.11-slim
COPY --from=build /opt/venv /opt/venv
# Inside a container the sidecar must be reachable from its neighbours, so it listens on all
# interfaces; publish the port only to the sync server's network.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    SIDECAR_LISTEN=0.0.0.0:50051
USER 65534:65534
EXPOSE 50051
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 CMD ["auth-sidecar", "health"]
ENTRYPOINT ["auth-sidecar"]
CMD ["serve"]
