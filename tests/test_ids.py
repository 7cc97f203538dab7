"""Object ids: versioned, parseable, and an id of another array is never taken for ours."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ccopy_common import ids


@given(st.integers(0, 2**32), st.integers(0, 2**24 - 1))
def test_ids_round_trip(serial, number):
    for kind, make in (("volume", ids.volume_id), ("snapshot", ids.snapshot_id), ("group", ids.group_id)):
        text = make(serial, number)
        assert ids.parse(text, kind, serial) == ids.ObjectId(kind, serial, number)


@pytest.mark.parametrize("text", ["", "ccv1-1", "ccv2-1-01", "ccs1-1-01", "ccv1-2-01", "ccv1-1-zz", "x"])
def test_foreign_or_malformed_volume_ids_are_not_ours(text):
    assert ids.parse(text, "volume", 1) is None


@given(st.integers(0, 2**32), st.text(min_size=1, max_size=128))
def test_journal_group_ids_round_trip(serial, name):
    text = ids.journal_group_id(serial, name)
    assert ids.parse_journal_group_id(text, serial) == name
    assert ids.parse_journal_group_id(text, serial + 1) is None  # the other array's group is not ours


@pytest.mark.parametrize("text", ["", "ccj1-1-", "ccj1-1-6", "ccj1-1-zz", "ccj2-1-61", "ccv1-1-61", "ccj1-1-ff"])
def test_malformed_journal_group_ids_are_not_ours(text):
    assert ids.parse_journal_group_id(text, 1) is None
