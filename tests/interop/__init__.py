"""Interop tests: ripple against WebSocket implementations written elsewhere."""
