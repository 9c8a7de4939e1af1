"""The daemon as a service: configuration, plugins, the API server, connector supervision,
metrics, systemd notification, the command line and the application that wires them."""
