"""The API wire format's own pieces, checked against websockets where they overlap."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode

from crossbook.protocol import text_frame_header


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_text_frame_header_is_what_websockets_would_write(length: int) -> None:
    payload = b"x" * length
    assert text_frame_header(length) + payload == Frame(Opcode.TEXT, payload).serialize(mask=False)
