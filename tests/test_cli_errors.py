"""Shared command-line handling: NAME=VALUE options and user errors reported without a traceback."""
import pytest

from neuron_hybrid.cli import main
from neuron_hybrid.cli_errors import UsageError, assignments


def test_assignments_convert_values_as_python_and_json_spell_them():
    got = assignments(["passive=False", "active=true", "n=3", "x=0.5", " name = abc ", "xs=[1, 2]", "none=None"], "--param")
    assert got == {"passive": False, "active": True, "n": 3, "x": 0.5, "name": "abc", "xs": [1, 2], "none": None}
    assert got["passive"] is False and isinstance(got["n"], int)
    assert assignments(["n=4"], "--power", int) == {"n": 4}


@pytest.mark.parametrize("items, convert, message", [
    (["passive"], None, "--param 'passive': expected NAME=VALUE"),
    (["n=x"], int, "--param 'n=x': 'x' is not a valid value"),
])
def test_assignments_name_the_bad_option(items, convert, message):
    with pytest.raises(UsageError, match=message):
        assignments(items, "--param", *(() if convert is None else (convert,)))


@pytest.mark.parametrize("argv, message", [
    (["generate", "--cell", "ball_and_stick", "--protocols", "p.json", "--out", "o.h5", "--param", "a"],
     "neuron-hybrid generate: error: --param 'a': expected NAME=VALUE"),
    (["spikes2pop", "missing.csv", "--out", "o.csv"], "neuron-hybrid spikes2pop: error: spike CSV missing.csv not found"),
    (["fit-channel", "c.h5", "--out", "d", "--power", "n=four"], "neuron-hybrid fit-channel: error: --power 'n=four'"),
    (["benchmark", "missing_model"], "neuron-hybrid benchmark: error: missing_model is not a complete reduced model"),
])
def test_every_command_reports_user_errors_the_same_way(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_reduce_calibrate_option_picks_what_the_calibration_fits():
    from neuron_hybrid.cli import _reduce_config, make_parser

    base = ["reduce", "--cell", "ca1_pospischil", "--out", "m"]
    default = _reduce_config(make_parser().parse_args(base)).calibration
    assert default.enabled and default.parameters == "spike_drive"
    assert not _reduce_config(make_parser().parse_args(base + ["--calibrate", "off"])).calibration.enabled
    for extra, what in ((["--calibrate"], "conductances"), (["--calibrate", "spike_drive"], "spike_drive"),
                        (["--calibrate", "both"], "both"), (["--calibrate", "spike_drive_tau"], "spike_drive_tau")):
        cal = _reduce_config(make_parser().parse_args(base + extra)).calibration
        assert cal.enabled and cal.parameters == what
        assert cal.timing_weight == (1.0 if what == "spike_drive_tau" else 0.0)  # two parameters need the timing
    with pytest.raises(SystemExit):
        make_parser().parse_args(base + ["--calibrate", "time_constants"])
    from neuron_hybrid.cli import CALIBRATE_CHOICES
    from neuron_hybrid.reduce.calibrate import PARAMETER_SETS
    assert set(CALIBRATE_CHOICES) == set(PARAMETER_SETS) | {"off"}  # the parser's literal list stays in step
