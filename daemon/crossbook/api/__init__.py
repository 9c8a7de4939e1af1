"""The WebSocket API, sans-I/O: the wire format, subscribers and their channels, and the hub that
turns the engine's changes into channel messages."""
