import pytest
from hypothesis import given
from hypothesis import strategies as st

from ccopy_common.ldev_id import MAX_LDEV_ID, format_ldev_id, parse_ldev_id


def test_display_form_is_hitachi_style():
    assert format_ldev_id(42) == "00:00:2A"
    assert format_ldev_id(0x01FF00) == "01:FF:00"


@given(st.integers(min_value=0, max_value=MAX_LDEV_ID))
def test_round_trip(ldev_id):
    assert parse_ldev_id(format_ldev_id(ldev_id)) == ldev_id
    assert parse_ldev_id(str(ldev_id)) == ldev_id


@pytest.mark.parametrize("text", ["", "2A", "00:2A", "00:00:2G", "-1", "16777216", "00:00:2A:00", "x"])
def test_rejects_what_is_not_an_id(text):
    with pytest.raises(ValueError):
        parse_ldev_id(text)


@pytest.mark.parametrize("value", [-1, MAX_LDEV_ID + 1])
def test_format_rejects_out_of_range(value):
    with pytest.raises(ValueError):
        format_ldev_id(value)
