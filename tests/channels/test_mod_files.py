"""The committed MOD files are exactly what the Python definitions generate."""
import re

import neuron_hybrid.channels as nc


def test_committed_mod_files_match_generated():
    texts = nc.generated_mod_texts()
    committed = {p.name for p in nc.MOD_DIR.glob("*.mod")}
    assert committed == set(texts), "run `python -m neuron_hybrid.channels` to regenerate"
    stale = [name for name, text in texts.items() if (nc.MOD_DIR / name).read_text() != text]
    assert not stale, f"stale generated files {stale}: run `python -m neuron_hybrid.channels`"


def test_write_mod_files(tmp_path):
    paths = nc.write_mod_files(tmp_path)
    assert sorted(p.name for p in paths) == sorted(nc.generated_mod_texts())
    for p in paths:
        assert p.read_text() == (nc.MOD_DIR / p.name).read_text()


def test_generated_structure():
    for suffix, mech in nc.CHANNELS.items():
        text = mech.mod_text()
        assert f"SUFFIX {suffix}\n" in text
        assert "THREADSAFE" in text
        assert "SOLVE states METHOD cnexp" in text
        if isinstance(mech, nc.Channel):
            for g in mech.gates:
                inf, tau = mech.inf_name.format(g.name), mech.tau_name.format(g.name)
                assert f"    {g.name}' = ({inf} - {g.name})/{tau}\n" in text
                assert re.search(rf"INITIAL {{\n    rates\(v\)\n(    \w+ = \w+\n)*    {g.name} = {inf}\n", text)
            for c in mech.currents:
                assert re.search(rf"RANGE .*\b{c.gbar}\b", text)


def test_published_names():
    """Hay mechanisms keep the published SUFFIX, RANGE and ion usage."""
    text = nc.Ca_HVA.mod_text()
    assert "USEION ca READ eca WRITE ica" in text
    assert "RANGE gCa_HVAbar, gCa_HVA, ica" in text
    assert "USEION ca READ cai" in nc.SK_E2.mod_text()
    assert "NONSPECIFIC_CURRENT ihcn" in nc.Ih.mod_text()
    assert "GLOBAL ehcn" in nc.Ih.mod_text()
    pool = nc.CaDynamics_E2.mod_text()
    assert "USEION ca READ ica WRITE cai" in pool
    assert "RANGE gamma, decay, depth, minCai" in pool
    for ch, gbar in [(nc.NaTa_t, "gNaTa_tbar"), (nc.NaTs2_t, "gNaTs2_tbar"), (nc.Nap_Et2, "gNap_Et2bar"),
                     (nc.K_Pst, "gK_Pstbar"), (nc.K_Tst, "gK_Tstbar"), (nc.SKv3_1, "gSKv3_1bar"),
                     (nc.SK_E2, "gSK_E2bar"), (nc.Ca_LVAst, "gCa_LVAstbar"), (nc.Ih, "gIhbar"),
                     (nc.Im, "gImbar")]:
        assert ch.gbar_names == (gbar,)
        assert "celsius" not in ch.mod_text()
