"""The committed ccopy_api modules match what protoc makes from proto/ today."""

from pathlib import Path

from ccopy_api.generate import PACKAGE, ROOT, generate, generated


def test_generated_modules_are_fresh(tmp_path: Path):
    fresh = generate(tmp_path)
    assert fresh, "no .proto files found"
    committed_dir = ROOT / PACKAGE
    stale = [str(p) for p in fresh if (tmp_path / PACKAGE / p).read_bytes() != (committed_dir / p).read_bytes()]
    assert not stale, f"regenerate with `make generate`: {stale} differ from proto/"
    assert set(generated(committed_dir)) == set(fresh), "generated modules without a .proto (or the reverse)"
