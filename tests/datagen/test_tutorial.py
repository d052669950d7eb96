"""tutorials/01_cells_and_data.py runs (short traces) and writes its plot."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_cells_and_data_tutorial(mechanisms, tmp_path):
    spec = importlib.util.spec_from_file_location("tut01", ROOT / "tutorials" / "01_cells_and_data.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    worst = mod.main(tmp_path, tstop_ms=120.0, settle_ms=100.0)
    assert worst < 1e-6
    assert (tmp_path / "01_cells_and_data.png").stat().st_size > 20_000
    assert (tmp_path / "l5pc_data.h5").exists() and (tmp_path / "protocols.json").exists()
