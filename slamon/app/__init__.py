"""The daemon: start, run, reload and shut down; wiring of the components; process runtime."""
