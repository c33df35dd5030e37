"""Serving: an openpi-compatible websocket policy server and its client. Nothing here imports JAX at module level."""
