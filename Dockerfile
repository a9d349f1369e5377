# The clymene image used by deploy/: one image for every process (discovery, beat,
# worker, web, flower, gateway, ingester, promtail); the Deployment picks the command.
# The wheel (with its C extension, clymene/_speedups.c) is built in a stage of its own,
# so the image carries no compiler.
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py requirements.txt README.md ./
COPY clymene ./clymene
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
WORKDIR /app
COPY requirements.txt ./
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir -r requirements.txt \
    && pip install --no-cache-dir --no-deps /wheels/*.whl && rm -rf /wheels \
    && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin clymene
USER 10001
ENTRYPOINT ["clymene"]
