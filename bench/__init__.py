"""Benchmarks of clymene against its peers (Prometheus agent, vmagent); see bench/README.md."""
