"""SLI core: rolling windows of (good, valid) counters and SLO evaluation. Pure, no I/O."""

from slamon.sli.slo import SloState, is_good
from slamon.sli.window import (
    COUNTER_MAX,
    DEFAULT_TIERS,
    Counts,
    RollingCounter,
    RollingWindow,
    Tier,
)

__all__ = [
    "COUNTER_MAX",
    "DEFAULT_TIERS",
    "Counts",
    "RollingCounter",
    "RollingWindow",
    "SloState",
    "Tier",
    "is_good",
]
