"""Where a reduced cell's tonic spike count goes wrong: its next inter-spike interval from each *recorded* post-spike
state (gates and latents teacher-forced along the recorded soma voltage), in the torch twin, on the training long
steps and ramps; prints the relative interval error (model - recorded) / recorded per protocol.

    python benchmarks/reduction_intervals.py MODEL_DIR      # a directory written by `neuron-hybrid reduce`

ca1_pospischil, seed 3 (s17): late intervals of the 1.2 x rheobase step 34 % too short (median -29 %), of the 1.45 x
step -20 %, ramp -3 %.
"""
import sys, json, numpy as np, torch
torch.set_num_threads(1)
from neuron_hybrid.datagen import read_traces
from neuron_hybrid.models.axial import LatentAxialCurrent
from neuron_hybrid.train.teacher import Sequence, make_batch, teacher_latents
from neuron_hybrid.twin import SomaTwin
if len(sys.argv) != 2:
    sys.exit(__doc__)
md = sys.argv[1]
meta = json.load(open(f"{md}/metadata.json"))
info = json.load(open(f"{md}/work/cell_info.json"))
cfg = meta["config"]
jm = torch.jit.load(f"{md}/axial_current.pt")
trs = [tr for tr in read_traces(f"{md}/work/train.h5")[0]]
v0 = float(np.median([tr.v_soma[0] for tr in trs]))
K = meta["n_latent"]
taus = np.logspace(np.log10(cfg["tau_min_init_ms"]), np.log10(cfg["tau_max_init_ms"]), K).tolist()
model = LatentAxialCurrent(n_latent=K, v_min=meta["v_range_mV"][0], v_max=meta["v_range_mV"][1], e0_mV=v0,
                           tau_init_ms=taus, width=cfg["width"], depth=cfg["depth"], v_rest_mV=v0)
model.load_state_dict({k.replace("inner.", "", 1): v for k, v in jm.state_dict().items()}, strict=True)
twin = SomaTwin(info["soma"], learned=model)
dt = 0.025
grid = torch.arange(model.v_min, model.v_max + 0.05, 0.1, dtype=torch.float64)
sel = [tr for tr in trs if tr.protocol["type"] in ("step", "ramp") and tr.protocol.get("dur_ms", 0) >= 1000]
batch = make_batch([Sequence(tr.v_soma, tr.i_axial, dt) for tr in sel], grid)
with torch.no_grad():
    traj = twin.teacher_states(batch.v, dt)
    z = teacher_latents(model, batch)
for r, tr in enumerate(sel):
    v = tr.v_soma
    up = np.nonzero((v[:-1] < 0) & (v[1:] >= 0))[0]
    rows, starts, isis = [], [], []
    for a, b in zip(up[:-1], up[1:]):
        s = a + int(3 / dt)
        rows.append(r); starts.append(s); isis.append(b - s)
    if not rows:
        continue
    L = int(max(isis) * 1.6)
    L = min(L, batch.v.shape[1] - max(starts) - 2)
    rr, ss = torch.as_tensor(rows), torch.as_tensor(starts)
    stim_all = torch.as_tensor(tr.i_stim, dtype=torch.float64)
    idx = ss[:, None] + torch.arange(1, L + 1)[None, :]
    with torch.no_grad():
        st = twin.state_at(traj, batch.v, rr, ss, z=z[rr, ss])
        V = twin.run(st, stim_all[idx.clamp_max(len(stim_all) - 1)], dt).numpy()
    errs = []
    for k, isi in enumerate(isis):
        c = np.nonzero((V[k, :-1] < 0) & (V[k, 1:] >= 0))[0]
        errs.append((c[0] - isi) / isi if len(c) else np.nan)
    errs = np.array(errs)
    p = tr.protocol
    print(f"{p['type']} amp {p.get('amp_nA')} spikes {len(up)}: relative ISI error (model - true) median {np.nanmedian(errs):+.3f} mean {np.nanmean(errs):+.3f} "
          f"no-spike {np.isnan(errs).sum()}; first 3 {np.round(errs[:3], 3)}, last 3 {np.round(errs[-3:], 3)}", flush=True)
