"""Shared fixtures: the misbehaving loopback servers are available to every test."""

pytest_plugins = ["tests.misbehaving"]
