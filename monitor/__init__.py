"""prime-cost-monitor: guards the money spent on Prime Intellect Training API runs."""

__version__ = "0.1.0"
