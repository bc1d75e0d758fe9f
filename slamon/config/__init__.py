"""Config: YAML file -> validated, immutable pydantic models."""

from slamon.config.root import Config
from slamon.config.slo import Slo
from slamon.config.targets import HttpSpec, Target, TcpSpec

__all__ = ["Config", "HttpSpec", "Slo", "Target", "TcpSpec"]
