"""The process: daemon (start, run, reload, shut down), wiring (what a Config
builds), runtime (event loop, GC, signals), upkeep (state writes, period
closing, evidence pruning), events (those the daemon publishes), sdnotify, shard."""
