"""The connector toolkit: the contract a connector plugin meets (connector, hooks, registry), the
sans-I/O venue protocol, sequence rules, book sync and handover, and the thin I/O layer that runs
them (WebSocket connections and REST snapshots). Plugin authors import it through
:mod:`crossbook.plugin`."""
