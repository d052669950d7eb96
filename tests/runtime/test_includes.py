"""Files that user MOD files INCLUDE travel with them into neuron-hybrid's build folder (runtime.includes).

The compiled end of this (nocmodl finding the copied file) is tested with channel-curves in
tests/kinetics/test_curves_styles.py; these tests cover the search, the errors and the copying.
"""
from pathlib import Path

import pytest

from neuron_hybrid.runtime.build import BuildError, _collect_includes
from neuron_hybrid.runtime.includes import copy_included_files, included_files

MOD = '''
COMMENT
INCLUDE "only_in_a_comment.inc"
ENDCOMMENT
NEURON { SUFFIX inc_user_nh NONSPECIFIC_CURRENT i }
INCLUDE "rates.inc"  : trailing comment
VERBATIM
#include "helpers.h"
#include "nrnran123.h"
ENDVERBATIM
'''


def _user_dir(root: Path, rates: str = "FUNCTION r(v) { r = v }\nINCLUDE \"sub/more.inc\"\n") -> Path:
    d = root / "mods"
    (d / "sub").mkdir(parents=True)
    (d / "user.mod").write_text(MOD)
    (d / "rates.inc").write_text(rates)
    (d / "sub" / "more.inc").write_text("FUNCTION q(v) { q = 2*v }\n")
    (d / "helpers.h").write_text("#define NH_TWO 2\n")
    return d


def test_includes_are_found_recursively_and_copied_under_their_names(tmp_path):
    d = _user_dir(tmp_path)
    found = included_files((d / "user.mod").read_text(), d)
    # NMODL INCLUDEs, nested ones, and a local C header; NEURON's own header (not found) is left to the compiler
    assert found == {"rates.inc": d / "rates.inc", "sub/more.inc": d / "sub" / "more.inc", "helpers.h": d / "helpers.h"}
    assert _collect_includes({"user.mod": d / "user.mod"}, [d]) == found
    out = tmp_path / "build" / "mod"
    out.mkdir(parents=True)
    copy_included_files(found, out)
    assert (out / "sub" / "more.inc").read_text() == "FUNCTION q(v) { q = 2*v }\n"


def test_include_found_in_another_mod_dir_or_missing(tmp_path):
    d = _user_dir(tmp_path)
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "lonely.mod").write_text('NEURON { SUFFIX lonely_nh }\nINCLUDE "rates.inc"\n')
    assert included_files((other / "lonely.mod").read_text(), other, [d])["rates.inc"] == d / "rates.inc"
    with pytest.raises(BuildError, match=r'lonely.mod has INCLUDE "rates.inc", which was not found.*--mod-dir'):
        _collect_includes({"lonely.mod": other / "lonely.mod"}, [other])


def test_two_different_files_under_one_include_name_are_refused(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d, body in ((a, "FUNCTION r(v) { r = v }\n"), (b, "FUNCTION r(v) { r = -v }\n")):
        d.mkdir()
        (d / f"{d.name}.mod").write_text(f'NEURON {{ SUFFIX {d.name}_nh }}\nINCLUDE "rates.inc"\n')
        (d / "rates.inc").write_text(body)
    with pytest.raises(BuildError, match='two different files are included as "rates.inc"'):
        _collect_includes({"a.mod": a / "a.mod", "b.mod": b / "b.mod"}, [a, b])


def test_include_one_folder_up_is_copied_further_up_refused(tmp_path):
    d = tmp_path / "mods" / "channels"
    d.mkdir(parents=True)
    (tmp_path / "mods" / "x.inc").write_text("")
    (tmp_path / "y.inc").write_text("")
    build = tmp_path / "build"
    (build / "mod").mkdir(parents=True)
    copy_included_files(included_files('INCLUDE "../x.inc"\n', d), build / "mod")  # nocmodl runs in build/mod
    assert (build / "x.inc").is_file()
    with pytest.raises(BuildError, match="climbs more than one folder"):
        copy_included_files(included_files('INCLUDE "../../y.inc"\n', d), build / "mod")
