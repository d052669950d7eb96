"""Retrain the shipped spike-times -> (g_s, g_u) network and evaluate it.

    python benchmarks/spikes2pop_train.py --model stg [--n-samples 5000] [--epochs 40]

1. simulate the training set (resumable HDF5, ``--data``; default .dicdata/<model>_train.h5),
2. train (resumable checkpoint ``--checkpoint``), keep the best validation epoch,
3. evaluate on the held-out test split: clean, with spike-time jitter and dropped spikes,
   and the CPU inference time per spike train (batch 1 and batch 512),
4. write the weights (default ``neuron_hybrid/dic/weights/<model>.pt``) and ``--report`` JSON.
Every step is seeded (``--seed``).
"""
import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from neuron_hybrid.dic.dataset import DatasetConfig, generate_dataset, load_dataset  # noqa: E402
from neuron_hybrid.dic.dics import get_model  # noqa: E402
from neuron_hybrid.dic.network import (WEIGHTS_DIR, NetworkConfig, SpikeDICNet, TrainConfig, _split,  # noqa: E402
                                       evaluate_network, prepare, train_network)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="stg", choices=["stg", "da"])
    p.add_argument("--n-samples", type=int, default=5000)
    p.add_argument("--chunk-size", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=None, help="HDF5 dataset (created/resumed)")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--out", default=None, help="weights file (default: the package's shipped weights)")
    p.add_argument("--report", default=None, help="metrics JSON (default reports/spikes2pop_<model>.json)")
    p.add_argument("--eval-only", action="store_true", help="evaluate existing weights")
    a = p.parse_args(argv)
    data_path = Path(a.data or REPO / ".dicdata" / f"{a.model}_train.h5")
    out = Path(a.out or WEIGHTS_DIR / f"{a.model}.pt")
    ck = Path(a.checkpoint or REPO / ".dicdata" / f"{a.model}_checkpoint.pt")
    report = Path(a.report or REPO / "reports" / f"spikes2pop_{a.model}.json")
    dcfg = DatasetConfig.for_model(a.model, n_samples=a.n_samples, chunk_size=a.chunk_size, seed=a.seed)
    t0 = time.time()
    generate_dataset(dcfg, data_path)
    t_data = time.time() - t0
    data = load_dataset(data_path)
    tcfg = TrainConfig(epochs=a.epochs, seed=a.seed)
    t0 = time.time()
    if a.eval_only:
        net = SpikeDICNet.load(out)
    else:
        net = train_network(data, out, train_config=tcfg, checkpoint=ck, model_name=a.model,
                            v_th=get_model(a.model).dic.v_th)
    t_train = time.time() - t0
    trains, y, c = prepare(data)
    _, _, te = _split(len(trains), tcfg)
    tt, yt, ct = [trains[i] for i in te], y[te], c[te]
    res = {"model": a.model, "n_samples": len(trains), "n_test": len(te),
           "n_parameters": sum(p.numel() for p in net.parameters()), "clean": evaluate_network(net, tt, yt, ct)}
    for j in (1.0, 2.0, 5.0):
        res[f"jitter_{j:g}ms"] = evaluate_network(net, tt, yt, ct, jitter_ms=j, seed=1)
    for d in (0.1, 0.2):
        res[f"drop_{int(d * 100)}pct"] = evaluate_network(net, tt, yt, ct, drop_fraction=d, seed=2)
    torch.set_num_threads(1)
    net.predict(tt[:8])
    t0 = time.perf_counter()
    for s in tt[:100]:
        net.predict([s])
    res["inference_ms_batch1"] = (time.perf_counter() - t0) / 100 * 1e3
    t0 = time.perf_counter()
    net.predict(tt[:512], batch_size=512)
    res["inference_ms_per_train_batch512"] = (time.perf_counter() - t0) / min(512, len(tt)) * 1e3
    res["seconds_dataset"] = t_data
    res["seconds_training"] = t_train
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
