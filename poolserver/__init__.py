"""The qazpool process: config, CLI, storage, node client, metrics and wiring (composition root)."""

__version__ = "0.1.0"
