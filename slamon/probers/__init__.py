"""Prober registry: adding a protocol is adding a module and a line here."""

from __future__ import annotations

from slamon.probers import http, tcp
from slamon.probers.base import FailureReason, Prober, ProbeResult

PROBERS: dict[str, Prober] = {"http": http.probe, "tcp": tcp.probe}


def get_prober(kind: str) -> Prober:
    """The probe function for a target kind; KeyError names the known kinds."""
    try:
        return PROBERS[kind]
    except KeyError:
        raise KeyError(f"unknown prober kind {kind!r} (known: {', '.join(PROBERS)})") from None


__all__ = ["PROBERS", "FailureReason", "ProbeResult", "Prober", "get_prober"]
