"""Leaf helpers that import nothing else from slamon: durations, redaction, files,
logging, the event bus, keccak, and the building blocks of config models."""
