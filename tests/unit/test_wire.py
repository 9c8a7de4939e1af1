"""The API wire format's own pieces, checked against websockets where they overlap."""

from __future__ import annotations

from typing import Any

import pytest
from websockets.frames import Frame, Opcode

from crossbook.api.wire import request_id, text_frame_header


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_text_frame_header_is_what_websockets_would_write(length: int) -> None:
    payload = b"x" * length
    assert text_frame_header(length) + payload == Frame(Opcode.TEXT, payload).serialize(mask=False)


@pytest.mark.parametrize(
    ("data", "rid"),
    [
        ('{"op":"ping","id":7}', 7),
        (b'{"op":"nonsense","id":"a"}', "a"),
        ('{"id":-9223372036854775808}', -(2**63)),
        ('{"id":9223372036854775808}', None),  # out of range
        ('{"id":true}', None),
        ('{"id":[1]}', None),
        ('{"id":"' + "x" * 65 + '"}', None),
        ('{"op":"ping"}', None),
        ("[1,2]", None),
        ("not json", None),
        (b"\xff", None),
    ],
)
def test_the_id_of_a_refused_request_is_read_when_valid(data: str | bytes, rid: Any) -> None:
    assert request_id(data) == rid
