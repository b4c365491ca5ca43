"""What the monitor shows: the live state (live), health and readiness (health), the Prometheus
collectors (collector, self_collector) and the HTTP server for /metrics, /healthz, /readyz (server)."""
