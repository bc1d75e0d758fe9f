"""Config: YAML file -> validated, immutable pydantic models."""

from slamon.config.models import Config, HttpSpec, Slo, Target, TcpSpec

__all__ = ["Config", "HttpSpec", "Slo", "Target", "TcpSpec"]
