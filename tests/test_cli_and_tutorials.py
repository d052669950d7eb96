"""The command line, the user-MOD build path and the tutorials (hoc via nrniv, and Python)."""
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import neuron_hybrid as nh
from neuron_hybrid.cli import main, make_parser
from neuron_hybrid.runtime import BuildError, build

ROOT = Path(__file__).resolve().parents[1]


def test_help_of_every_subcommand(capsys):
    parser = make_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    assert {"build", "demo", "export-hh"} <= set(sub.choices)
    for name in sub.choices:
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0
        assert "usage: neuron-hybrid " + name in capsys.readouterr().out


def test_reduce_options_reach_the_configuration():
    from neuron_hybrid.cli import _reduce_config
    from neuron_hybrid.reduce import ReduceConfig

    args = make_parser().parse_args(["reduce", "--cell", "ball_and_stick", "--out", "x", "--epochs", "7",
                                     "--lbfgs-iters", "3", "--latents", "2", "--seed", "5"])
    cfg = _reduce_config(args)
    assert (cfg.teacher.epochs, cfg.teacher.lbfgs_iters, cfg.n_latent, cfg.seed) == (7, 3, 2, 5)
    seeded = cfg.seeded()  # what reduce() runs: one seed for every stage, from the CLI and from Python alike
    assert (seeded.teacher.seed, seeded.closed_loop_config.seed, seeded.teacher.epochs) == (5, 5, 7)
    assert ReduceConfig(seed=4).seeded().closed_loop_config.seed == 4
    default = _reduce_config(make_parser().parse_args(["reduce", "--cell", "ball_and_stick", "--out", "x"]))
    assert default.teacher == ReduceConfig().teacher


def test_console_script_is_installed():
    exe = shutil.which("neuron-hybrid")
    assert exe, "pip install -e . must install the neuron-hybrid command"
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True).stdout
    assert "demo" in out and "build" in out


def test_build_prints_library(mechanisms, capsys):
    assert main(["build", "--print-library"]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path == mechanisms.library and path.is_file()


def test_user_mod_dir_with_a_clashing_name_is_refused(tmp_path):
    (tmp_path / "nhlc0.mod").write_text("NEURON { SUFFIX nhlc0 }\n")
    with pytest.raises(BuildError, match="clashes with a neuron-hybrid mechanism"):
        build([tmp_path])
    with pytest.raises(BuildError, match="does not exist"):
        build([tmp_path / "missing"])


@pytest.fixture(scope="module")
def hh_k_file(tmp_path_factory, mechanisms):
    d = tmp_path_factory.mktemp("cli")
    assert main(["export-hh", "--out", str(d)]) == 0
    return d / "hh_k.pt"


def test_hoc_tutorial_runs_in_nrniv(mechanisms, hh_k_file):
    """A hoc-only user: nrniv, our library via -dll, nh_load() from hoc."""
    cmd = ["nrniv", "-nobanner", "-dll", str(mechanisms.library), "-c", "strdef kdr_file",
           "-c", f'kdr_file="{hh_k_file}"', str(ROOT / "tutorials" / "00_learned_current.hoc"), "-c", "quit()"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=hh_k_file.parent)
    assert res.returncode == 0, res.stderr + res.stdout
    m = re.search(r"max \|dv\| = ([0-9.eE+-]+) mV", res.stdout)
    assert m, res.stdout
    assert float(m.group(1)) < 0.1


def test_user_mod_compiled_with_ours_and_used_from_hoc(tmp_path, hh_k_file):
    """`neuron-hybrid build --mod-dir DIR`: the user's mechanism and ours in one library, usable in nrniv."""
    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / "userleak.mod").write_text(
        "NEURON { SUFFIX userleak NONSPECIFIC_CURRENT i RANGE g, e }\n"
        "PARAMETER { g = 0.001 (S/cm2) e = -70 (mV) }\n"
        "ASSIGNED { v (mV) i (mA/cm2) }\n"
        "BREAKPOINT { i = g*(v - e) }\n"
    )
    out = subprocess.run([sys.executable, "-m", "neuron_hybrid.cli", "build", "--mod-dir", str(mods), "--print-library"],
                         capture_output=True, text=True, timeout=600, check=True).stdout.strip()
    lib = Path(out.splitlines()[-1])
    assert lib.is_file()
    hoc = tmp_path / "use.hoc"
    hoc.write_text(
        "create s\n s { L = 20 diam = 20 insert userleak insert nhlc0 }\n"
        f'id = nh_load("{hh_k_file}")\n'
        "s.model_id_nhlc0(0.5) = id\n"
        "finitialize(-70)\n fadvance()\n"
        '{ printf("userleak g = %g, latents = %d, z1 = %g\\n", s.g_userleak(0.5), nh_n_latent(id), s.z1_nhlc0(0.5)) }\n'
    )
    res = subprocess.run(["nrniv", "-nobanner", "-dll", str(lib), str(hoc), "-c", "quit()"], capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr + res.stdout
    assert "userleak g = 0.001, latents = 1" in res.stdout


def test_python_tutorial(mechanisms, tmp_path):
    spec = importlib.util.spec_from_file_location("tut00", ROOT / "tutorials" / "00_learned_current.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    dv = mod.main(tmp_path)
    assert dv < 0.1
    assert (tmp_path / "00_learned_current.png").stat().st_size > 10_000


def test_hoc_error_for_unloaded_model(mechanisms, tmp_path):
    hoc = tmp_path / "bad.hoc"
    hoc.write_text('id = nh_load("/definitely/missing.pt")\n')
    res = subprocess.run(["nrniv", "-nobanner", "-dll", str(mechanisms.library), str(hoc), "-c", "quit()"],
                         capture_output=True, text=True, timeout=300)
    assert "missing.pt" in res.stderr + res.stdout


def test_package_api():
    for name in ("load_mechanisms", "export", "LearnedCurrent", "ContractError"):
        assert hasattr(nh, name)
