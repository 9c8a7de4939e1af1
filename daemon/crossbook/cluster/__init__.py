"""Scale-out over NATS: the bus contract and both sides of it sans-I/O, the NATS I/O in natsio."""
