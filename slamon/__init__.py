"""slamon: measures what customers experience and signs the verdict."""

__version__ = "0.1.0"
