"""The venue test kit, for built-in and third-party connectors alike.

- :mod:`crossbook.testing.replay`: feed recorded frames through a connector's sans-I/O parts
  (protocol + book syncs) without a network and look at the events and books that come out;
- :mod:`crossbook.testing.captures`: readers for the capture formats in ``shared/captures``.
"""
