"""The core, sans-I/O: exact numbers, events, venue and consolidated books, and the engine that
keeps book states and consolidation. It imports nothing else of crossbook and names no venue."""
