"""Recording files: crash safety (a cut anywhere, a killed process), corrupt files refused with a
clear error, rotation by size and age, write errors counted without stopping anything."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from prometheus_client import CollectorRegistry

from crossbook.service.config import RecordConfig
from crossbook.service.recorder import Recorder
from crossbook.service.recording import SUFFIX, RecordingError, RecordingReader, block, compressor
from support import ROOT

pytestmark = [pytest.mark.timeout(60)]

HEADER = ["file", 1, "run", 1, 0, {}]


def write(path: Path, blocks: list[list[list[Any]]]) -> bytes:
    data = b"".join(block([orjson.dumps(r) + b"\n" for r in records], compressor()) for records in blocks)
    path.write_bytes(data)
    return data


def read(path: Path) -> tuple[list[Any], RecordingReader]:
    reader = RecordingReader(path)
    return list(reader.records()), reader


def test_a_file_cut_anywhere_reads_back_every_whole_block(tmp_path: Path) -> None:
    blocks = [[HEADER], *[[["tick", n * 10 + i] for i in range(n + 1)] for n in range(4)]]
    data = write(tmp_path / "whole", blocks)
    ends = [0]
    for records in blocks:
        ends.append(ends[-1] + len(block([orjson.dumps(r) + b"\n" for r in records], compressor())))
    cut = tmp_path / "cut"
    for size in range(len(data) + 1):
        cut.write_bytes(data[:size])
        records, reader = read(cut)
        whole = max(i for i, end in enumerate(ends) if end <= size)
        assert records == [r for b in blocks[:whole] for r in b]
        assert reader.truncated == size - ends[whole]


KILLED = """
import sys, time
from pathlib import Path
from prometheus_client import CollectorRegistry
from crossbook.service.config import RecordConfig
from crossbook.service.recorder import Recorder

recorder = Recorder(RecordConfig(dir=Path(sys.argv[1])), {}, CollectorRegistry())
n = 0
while True:
    for _ in range(200):
        n += 1
        recorder.add(["tick", n])
    written = recorder.written._value.get()
    recorder.hand_off()
    while recorder.written._value.get() == written:
        time.sleep(0.001)
    print(n, flush=True)  # every record up to n is on disk
"""


def test_a_recording_killed_with_sigkill_reads_back_all_it_wrote(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    proc = subprocess.Popen([sys.executable, "-c", KILLED, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    for _ in range(20):
        written = int(proc.stdout.readline())
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    (path,) = tmp_path.glob("*" + SUFFIX)
    records, _reader = read(path)
    ticks = [r[1] for r in records[1:]]
    assert ticks == list(range(1, len(ticks) + 1))  # in order, none missing
    assert len(ticks) >= written


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (b"hello, this is text\n", "not a crossbook recording"),
        (b"\x28\xb5\x2f\xfd" + bytes(40), "not a crossbook recording"),  # a plain zstd frame
    ],
    ids=["text", "plain-zstd"],
)
def test_files_that_are_not_recordings_are_refused_clearly(tmp_path: Path, content: bytes, error: str) -> None:
    path = tmp_path / "x"
    path.write_bytes(content)
    with pytest.raises(RecordingError, match=error):
        read(path)


def test_corrupt_blocks_and_records_are_refused_with_where(tmp_path: Path) -> None:
    path = tmp_path / "x"
    data = bytearray(write(path, [[HEADER], [["tick", 1]] * 50]))
    data[-10] ^= 0xFF  # inside the second block's compressed data
    path.write_bytes(data)
    with pytest.raises(RecordingError, match=r"block 2 at byte \d+ is corrupt"):
        read(path)
    write(path, [[HEADER, ["nonsense", 1]]])
    with pytest.raises(RecordingError, match="line 2: not a record"):
        read(path)
    write(path, [[["tick", 1]]])
    with pytest.raises(RecordingError, match="does not start with a file header"):
        read(path)
    write(path, [[["file", 99, "run", 1, 0, {}]]])
    with pytest.raises(RecordingError, match="format version 99"):
        read(path)


def test_replay_refuses_a_corrupt_file_with_exit_1_and_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / f"bad{SUFFIX}"
    path.write_bytes(b"garbage" * 10)
    done = subprocess.run(
        [sys.executable, "-m", "crossbook", "replay", str(path)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 1
    assert done.stderr.strip() == f"crossbook: {path}: not a crossbook recording (no block header at byte 0)"


def recorder(tmp_path: Path, **config: Any) -> Recorder:
    return Recorder(RecordConfig(dir=tmp_path, **config), {}, CollectorRegistry())


async def stopped(rec: Recorder) -> None:
    await rec.stop()
    assert not rec.thread.is_alive()


@pytest.mark.anyio
async def test_files_rotate_by_size_and_by_age(tmp_path: Path) -> None:
    rng = random.Random(1)
    rec = recorder(tmp_path / "size", max_file_bytes=2**16)
    for n in range(15):  # ~20 kB a block compressed (fewer than the writer queues): 3 a file
        rec.add(["recv", n, 0.0, "v", 1, 0, rng.randbytes(20_000).hex()])
        rec.hand_off()
    await stopped(rec)
    files = sorted((tmp_path / "size").iterdir())
    assert len(files) >= 5
    assert all(f.stat().st_size <= 2**16 for f in files)
    records = [r for f in files for r in read(f)[0]]
    assert [r[1] for r in records if r[0] == "recv"] == list(range(15))
    assert [r[3] for r in records if r[0] == "file"] == list(range(1, len(files) + 1))

    rec = recorder(tmp_path / "age", max_file_seconds=1e-9)
    for n in range(3):
        rec.add(["tick", n])
        rec.hand_off()
    await stopped(rec)
    assert len(list((tmp_path / "age").iterdir())) == 3


@pytest.mark.anyio
async def test_a_write_error_is_counted_and_logged_and_recording_resumes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the folder should be")
    rec = recorder(blocked)
    rec.add(["tick", 1])
    rec.hand_off()
    with anyio.fail_after(10):
        while rec.errors.labels("write")._value.get() < 1:  # noqa: ASYNC110
            await anyio.sleep(0.01)  # the writer thread has no event to await
    assert "recording: cannot write" in caplog.text
    blocked.unlink()  # the folder can be made now
    rec.add(["tick", 2])
    rec.hand_off()
    await stopped(rec)
    (path,) = blocked.iterdir()
    assert read(path)[0][1:] == [["lost", 1], ["tick", 2]]
