"""Durable state: per-target events, SLO window snapshots, closed periods, evidence,
the oracle journal, all in one SQLite file with ordered schema migrations."""
