"""Leaf helpers that import nothing else from slamon: durations, redaction, files,
logging, the event bus, keccak, pacing long walks on the event loop, and the building
blocks of config models."""
