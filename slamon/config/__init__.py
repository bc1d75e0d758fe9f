"""Config: YAML file -> validated, immutable pydantic models.

The names below are imported on first use, not with the package: importing one
submodule (`slamon probe` needs only `slamon.config.targets`) must not pull in the
whole schema, whose notification channels import aiohttp's client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from slamon.config.root import Config
    from slamon.config.slo import Slo
    from slamon.config.targets import HttpSpec, Target, TcpSpec

__all__ = ["Config", "HttpSpec", "Slo", "Target", "TcpSpec"]

_HOME = {"Config": "root", "Slo": "slo", "HttpSpec": "targets", "Target": "targets",
         "TcpSpec": "targets"}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'slamon.config' has no attribute {name!r}")
    return getattr(importlib.import_module(f"slamon.config.{home}"), name)
