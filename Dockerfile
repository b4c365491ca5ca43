# prime-cost-monitor: the daemon in a small image. Ships in dry-run (see config/example.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# tini as PID 1: forwards SIGTERM to the daemon and reaps zombies, so `docker stop` drains cleanly.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini=0.19.* \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY monitor ./monitor
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --home-dir /data --create-home monitor

COPY config/example.yml /etc/prime-cost-monitor/config.yml

USER 10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 9477
ENV PRIME_MONITOR_STATE__PATH=/data/prime-cost-monitor.db

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9477/healthz', timeout=4).status == 200 else 1)"]

ENTRYPOINT ["/usr/bin/tini", "--", "prime-cost-monitor"]
CMD ["run", "--config", "/etc/prime-cost-monitor/config.yml"]
