# prime-cost-monitor: the daemon in a small image. Ships in dry-run (deploy/docker/config.yml).
#   docker build -t prime-cost-monitor .
#   docker run -d --name prime-cost-monitor -e PRIME_API_KEY -p 9477:9477 -v prime-cost-monitor:/data prime-cost-monitor
FROM python:3.11-slim

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="prime-cost-monitor" \
      org.opencontainers.image.description="Guards the money spent on Prime Intellect Training API runs: Prometheus metrics, budget rules, Slack alerts, and safe enforcement." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/example/prime-cost-monitor" \
      org.opencontainers.image.documentation="https://github.com/example/prime-cost-monitor/blob/main/deploy/README.md"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# tini as PID 1: forwards SIGTERM to the daemon and reaps zombies, so `docker stop` drains cleanly.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini=0.19.* \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY monitor ./monitor
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --user-group --home-dir /data --create-home monitor

COPY deploy/docker/config.yml /etc/prime-cost-monitor/config.yml
COPY --chmod=0755 deploy/docker/healthcheck.py /usr/local/bin/prime-cost-monitor-healthcheck

USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 9477
ENV PRIME_MONITOR_STATE__PATH=/data/prime-cost-monitor.db

# Follows server.listen (the file named by --config, and PRIME_MONITOR_SERVER__LISTEN), not a fixed port.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["prime-cost-monitor-healthcheck"]

ENTRYPOINT ["/usr/bin/tini", "--", "prime-cost-monitor"]
CMD ["run", "--config", "/etc/prime-cost-monitor/config.yml"]
