"""Learning-quality benchmark: learned policy vs best tuned baseline vs hindsight bound, with 95% CIs.

For each reference scenario: train with ``configs/train/bench_<scenario>.yaml`` (budget stated there as
``steps``; wall time is measured and printed), tune the best classical baseline
(``invnet.agents.tuning.best_baseline``: base-stock variants + transfer heuristics) on its own paths,
then evaluate learned policy, best baseline and tuned base-stock on the same fresh demand paths
(common random numbers) next to the hindsight LP bound on those paths.

    .venv/bin/python benchmarks/learning.py                       # full budget, three scenarios
    .venv/bin/python benchmarks/learning.py --scale 0.25          # a reduced run (a quarter of the steps)
    .venv/bin/python benchmarks/learning.py --scenarios single_node --episodes 200

Targets (issue 4): single_node within 3% of the optimal 4.40 (best base-stock 4.64); two_stores and
hub_spoke at or below the best tuned base-stock + transfer heuristic, with at most 15 minutes of training.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

REFERENCE = {"single_node": 4.40}  # Zipkin (2008) optimal average cost, L=2, p=4 (../shared/domain.md)
EVAL_SEED = 7_000_000  # disjoint from training (seed + b), evaluation (100_000...) and tuning paths
TUNE_SEED = 8_000_000


def run_scenario(name: str, args: argparse.Namespace) -> dict[str, Any]:
    from invnet.agents.registry import make_policy
    from invnet.agents.tuning import best_baseline, tune
    from invnet.envs import compile_network, load_scenario, mean_ci95
    from invnet.training.api import train
    from invnet.training.bundle import load_bundle_policy
    from invnet.training.config import load_train_config
    from invnet.training.session import policy_metrics

    cfg = load_train_config(f"bench_{name}")
    steps = max(int(cfg.steps * args.scale), cfg.steps_per_iter)
    cfg = cfg.model_copy(
        update={"steps": steps, "out": str(Path(args.out) / name), "mlflow": args.mlflow, "seed": args.seed}
    )
    net = compile_network(load_scenario(cfg.scenario))
    t0 = time.perf_counter()
    res = train(cfg, progress=args.progress)
    train_s = time.perf_counter() - t0
    learned = load_bundle_policy(res.bundle_path, net)

    best = best_baseline(net, episodes=args.tune_episodes, seed=TUNE_SEED, max_seconds=args.tune_seconds)
    best_pol = make_policy(best.policy, net, **best.params)
    bs = tune(net, "base_stock", episodes=args.tune_episodes, seed=TUNE_SEED, max_seconds=args.tune_seconds / 2)
    bs_pol = make_policy(bs.policy, net, **bs.params)

    E = args.episodes
    rows = {}
    for label, pol in (("learned", learned), (f"best tuned ({best.policy})", best_pol), ("tuned base_stock", bs_pol)):
        rows[label] = policy_metrics(net, pol, E, EVAL_SEED)
    bound = None
    try:
        from invnet.agents.bound import hindsight_bound

        bound = hindsight_bound(net, E, EVAL_SEED)
    except ModuleNotFoundError:
        pass
    lm, bm = rows["learned"], rows[f"best tuned ({best.policy})"]
    d, dci = mean_ci95(lm["per_episode"] - bm["per_episode"])
    out: dict[str, Any] = {
        "scenario": name,
        "algo": cfg.algo,
        "action_mode": cfg.action_mode,
        "steps": cfg.total_steps,
        "train_seconds": round(train_s, 1),
        "episodes": E,
        "eval_seed": EVAL_SEED,
        "best_baseline": best.policy,
        "costs": {k: [round(v["cost"], 4), round(v["cost_ci95"], 4)] for k, v in rows.items()},
        "learned_minus_best": [round(d, 4), round(dci, 4)],
        "learned_vs_best_ratio": round(lm["cost"] / bm["cost"], 4),
        "bundle": str(res.bundle_path),
        "run_id": res.run_id,
    }
    if bound is not None:
        out["hindsight_bound"] = [round(bound.total_cost, 4), round(bound.total_cost_ci95, 4)]
        gap = bm["cost"] - bound.total_cost
        out["gap_closed_vs_best"] = round((bm["cost"] - lm["cost"]) / gap, 4) if gap > 0 else None
    if name in REFERENCE:
        out["optimal"] = REFERENCE[name]
        out["learned_vs_optimal"] = round(lm["cost"] / REFERENCE[name] - 1.0, 4)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenarios", nargs="+", default=["single_node", "two_stores", "hub_spoke"])
    p.add_argument("--scale", type=float, default=1.0, help="fraction of each config's training steps")
    p.add_argument("--episodes", type=int, default=200, help="evaluation episodes (common random numbers)")
    p.add_argument("--tune-episodes", type=int, default=100)
    p.add_argument("--tune-seconds", type=float, default=60.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/bench_learning")
    p.add_argument("--mlflow", action="store_true", help="also log the training runs to MLflow")
    p.add_argument("--progress", action="store_true")
    args = p.parse_args(argv)
    results = []
    for name in args.scenarios:
        r = run_scenario(name, args)
        results.append(r)
        print(json.dumps(r), flush=True)
    print()
    print(f"{'scenario':12s} {'policy':34s} {'cost/period ± 95% CI':>22s}")
    for r in results:
        for k, (m, ci) in r["costs"].items():
            print(f"{r['scenario']:12s} {k:34s} {m:12.3f} ± {ci:.3f}")
        if "hindsight_bound" in r:
            m, ci = r["hindsight_bound"]
            print(f"{r['scenario']:12s} {'hindsight bound (LP)':34s} {m:12.3f} ± {ci:.3f}")
        d, dci = r["learned_minus_best"]
        extra = f", vs optimal {r['optimal']}: {r['learned_vs_optimal']:+.1%}" if "optimal" in r else ""
        print(
            f"{r['scenario']:12s} learned - best tuned: {d:+.3f} ± {dci:.3f} (paired); "
            f"{r['steps']} steps in {r['train_seconds']:.0f} s{extra}"
        )
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "results.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
