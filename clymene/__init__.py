"""clymene: metrics and logs collection for many Kubernetes clusters, as a Celery farm."""

__version__ = "0.1.0"
