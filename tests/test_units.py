import pytest

from ccopy_common.units import format_size, parse_size


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512", 512), ("4k", 4096), ("64MiB", 64 << 20), ("10G", 10 << 30), ("1TiB", 1 << 40), ("1.5G", 3 << 29),
        ("1Gi", 1 << 30),
    ],
)
def test_parse(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "ten", "1X", "-1", "0.3", "1i", "1Gii"])
def test_parse_rejects(text):
    with pytest.raises(ValueError):
        parse_size(text)


def test_format():
    assert [format_size(n) for n in (0, 512, 4096, 3 << 29, 1 << 40)] == ["0B", "512B", "4KiB", "1.5GiB", "1TiB"]
