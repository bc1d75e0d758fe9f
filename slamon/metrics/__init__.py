"""Prometheus: the collector behind /metrics, its sliced exposition, and generated rules."""
