"""The ``writes`` scenario: the floor under ``fanout`` and ``latency``, bare ``send()``s to loopback
sockets that another process drains (see :mod:`crossbook_bench.__main__`)."""

from __future__ import annotations

import multiprocessing
import selectors
import socket
import time
from typing import Any

WRITE_BYTES = 720
"""What the daemon writes to a batched subscriber of ``book`` (depth 20) and ``bbo`` for one
recorded Binance frame, about: ``client_bytes_per_message`` of ``latency_1k`` (~360), twice."""


WRITES_CONNECT_SECONDS = 10.0
"""How long ``writes`` waits for its reader process's connections: a reader that failed must not
hang the bench."""


def bench_writes(
    seconds: float, subscribers: int = 100, rate: float = 1000.0, payload: int = WRITE_BYTES
) -> dict[str, Any]:
    """CPU per ``send()`` of ``payload`` bytes to each of ``subscribers`` loopback sockets in turn,
    ``rate`` times a second (as updates come: the reader, another process, then waits for each),
    for ``seconds``. One write per subscriber per update is the least fan-out does; on loopback
    its cost includes the kernel's delivery to the reader, as the daemon's does."""
    rounds = max(1, round(seconds * rate))
    receiving, sending = multiprocessing.Pipe(duplex=False)
    conns: list[socket.socket] = []
    with socket.create_server(("127.0.0.1", 0), backlog=subscribers) as server:
        reader = multiprocessing.get_context("fork").Process(
            target=_drain, args=(server.getsockname()[1], subscribers, sending), daemon=True
        )
        reader.start()
        sending.close()  # the reader's is then the only sending end: its exit is seen
        try:
            server.settimeout(WRITES_CONNECT_SECONDS)
            try:
                for _ in range(subscribers):  # one at a time: a timeout leaves those accepted in conns
                    conns.append(server.accept()[0])
            except TimeoutError:
                raise RuntimeError(f"the reader connected {len(conns)} of {subscribers} sockets") from None
            data = b"x" * payload
            for conn in conns:
                conn.setblocking(True)
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as asyncio and uvloop do
            cpu = 0.0
            tick = time.perf_counter()
            for _ in range(rounds):
                cpu0 = time.process_time()
                for conn in conns:
                    conn.sendall(data)
                cpu += time.process_time() - cpu0
                tick += 1 / rate
                time.sleep(max(0.0, tick - time.perf_counter()))  # pacing, as a venue's frames come
        finally:
            for conn in conns:
                conn.close()
            try:
                received = receiving.recv() if receiving.poll(60) else -1
            except EOFError:  # the reader died
                received = -1
            reader.join(10)
            if reader.is_alive():
                reader.terminate()
    us = cpu / (rounds * subscribers) * 1e6
    return {
        "subscribers": subscribers,
        "payload_bytes": payload,
        "writes": rounds * subscribers,
        "all_bytes_read": received == rounds * subscribers * payload,
        "cpu_us_per_write": us,
        "messages_per_cpu_second_1_a_write": 1e6 / us,
        "messages_per_cpu_second_2_a_write": 2e6 / us,
        "messages_a_write_for_1M_per_s": us,  # 1M a second leaves 1 µs a message
        "median_subscriber_wait_us": (subscribers + 1) / 2 * us,
    }


def _drain(port: int, count: int, report: Any) -> None:
    """The reading side of :func:`bench_writes`: ``count`` connections, read until each closes;
    reports the bytes read."""
    conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
    with selectors.DefaultSelector() as selector:
        for conn in conns:
            selector.register(conn, selectors.EVENT_READ)
        total = 0
        while selector.get_map():
            for key, _ in selector.select():
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                chunk = sock.recv(1 << 20)
                total += len(chunk)
                if not chunk:
                    selector.unregister(sock)
                    sock.close()
    report.send(total)
