"""Config: YAML file -> validated, immutable pydantic models."""

from slamon.config.models import Config, HttpSpec, Slo, TcpSpec, Target

__all__ = ["Config", "HttpSpec", "Slo", "Target", "TcpSpec"]
