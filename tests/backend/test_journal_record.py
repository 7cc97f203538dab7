import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend.journal_record import HEADER_BYTES, Corrupt, JournalRecord, RecordKind, Torn, decode, encode

records = st.builds(
    lambda kind, seq, ldev, offset, data, stamp, keep: JournalRecord(
        seq, kind, ldev, offset, len(data) if kind is RecordKind.WRITE else 4096,
        stamp, data if kind is RecordKind.WRITE else b"", keep,
    ),
    st.sampled_from(list(RecordKind)),
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**24 - 1),
    st.integers(0, 2**50),
    st.binary(max_size=3000),
    st.integers(0, 2**63),
    st.booleans(),
)  # fmt: skip


@given(st.lists(records, max_size=8))
def test_round_trip_of_a_stream(items):
    stream = b"".join(encode(r) for r in items)
    pos, out = 0, []
    while pos < len(stream):
        record, pos = decode(stream, pos)
        out.append(record)
    assert out == items


@given(records, st.data())
def test_any_cut_is_torn_and_any_flip_is_corrupt(record, data):
    raw = encode(record)
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(Torn):
        decode(raw[:cut])
    flip = data.draw(st.integers(0, len(raw) - 1))
    damaged = bytearray(raw)
    damaged[flip] ^= 0x01
    with pytest.raises((Corrupt, Torn)):  # a flipped length may also look torn
        decode(bytes(damaged))


def test_payload_rules():
    with pytest.raises(ValueError):
        encode(JournalRecord(1, RecordKind.WRITE, 1, 0, 10, 0, b"short"))
    with pytest.raises(ValueError):
        encode(JournalRecord(1, RecordKind.TRIM, 1, 0, 10, 0, b"data"))
    assert len(encode(JournalRecord(1, RecordKind.TRIM, 1, 0, 1 << 30, 0))) == HEADER_BYTES
