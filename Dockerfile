# The clymene image used by deploy/: one image for every process (discovery, beat,
# worker, web, flower, gateway, ingester, promtail); the Deployment picks the command.
FROM python:3.11-slim
WORKDIR /app
COPY requirements.txt pyproject.toml README.md ./
COPY clymene ./clymene
RUN pip install --no-cache-dir -r requirements.txt && pip install --no-cache-dir --no-deps . \
    && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin clymene
USER 10001
ENTRYPOINT ["clymene"]
