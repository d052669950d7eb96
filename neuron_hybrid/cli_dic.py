"""``neuron-hybrid spikes2pop``: argument parsing only; the work is in :mod:`neuron_hybrid.dic`.

Wire into ``neuron_hybrid/cli.py`` with ``cli_dic.add_subcommands(sub)`` in ``make_parser``.
"""
from .cli_errors import reported


@reported(lambda: (ValueError, KeyError))
def _cmd_spikes2pop(args):
    from .dic.spikes2pop import Spikes2PopConfig, spikes_to_population

    cfg = Spikes2PopConfig(model=args.model, n=args.n, seed=args.seed, iterations=args.iterations,
                           weights=args.weights)
    res = spikes_to_population(args.spikes, args.out, cfg, report_dir=args.report, progress=not args.quiet)
    n_rows = sum(res.sizes.values())
    print(f"{len(res.predictions)} recording(s) -> {n_rows} models written to {res.out}")
    for rid, (gs, gu, cls) in res.predictions.items():
        print(f"  {rid}: g_s {gs:.2f}, g_u {gu:.2f}, {cls}, {res.sizes[rid]} models")
    if res.skipped:
        print(f"{len(res.skipped)} row(s) skipped (see above)")
    if res.report is not None:
        print(f"report: {res.report}")
    return 0 if res.predictions else 1


def add_subcommands(subparsers):
    """Register ``spikes2pop`` on an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "spikes2pop", help="spike times (CSV) -> DICs -> degenerate populations of conductance-based models",
        description="Predict (g_s, g_u) at V_th from each recording's spike times with the shipped network, then "
                    "generate a degenerate population per recording. Input CSV: columns ID and spike_times_ms "
                    "(or spiking_times) holding a bracketed list of times in ms, e.g. \"[12.5, 80.1, 150.3]\". "
                    "Output CSV: ID, g_<channel> (mS/cm2) columns, g_s, g_u, class.")
    p.add_argument("spikes", help="input CSV of spike times")
    p.add_argument("--model", default="stg", choices=["stg", "da"], help="neuron model (default stg)")
    p.add_argument("--n", type=int, default=200, help="models sampled per recording (non-physical ones dropped)")
    p.add_argument("--out", required=True, help="output CSV")
    p.add_argument("--report", default=None, metavar="DIR", help="write a report (Markdown + figures) into DIR")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same populations)")
    p.add_argument("--iterations", type=int, default=None, help="iterative-compensation steps (default 5)")
    p.add_argument("--weights", default=None, help="network weights file (default: the shipped one)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_spikes2pop)
    return p
