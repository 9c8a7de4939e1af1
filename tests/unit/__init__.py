"""Sans-I/O units: the core, the API, the toolkit's logic, config and plugins, fast."""
