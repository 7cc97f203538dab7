"""The committed ccopy_api modules match what protoc makes from proto/ today."""

from pathlib import Path

from ccopy_api.generate import ROOT, generate


def test_generated_modules_are_fresh(tmp_path: Path):
    fresh = generate(tmp_path)
    assert fresh, "no .proto files found"
    stale = [p.name for p in fresh if p.read_bytes() != (ROOT / "ccopy_api" / p.name).read_bytes()]
    assert not stale, f"regenerate with `make generate`: {stale} differ from proto/"
    committed = {p.name for p in (ROOT / "ccopy_api").glob("*_pb2*.py*")}
    assert committed == {p.name for p in fresh}, "generated modules without a .proto (or the reverse)"
