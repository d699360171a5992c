"""The main job (``invnet quickstart``, ``make demo``): the whole system on one scenario, end to end.

1. tune the baselines by simulation (:mod:`invnet.agents.tuning`, tuning seed != evaluation seed);
2. compute the hindsight bound on the evaluation paths (:mod:`invnet.agents.bound`);
3. train per-node agents for a short budget (:func:`invnet.training.api.train`, ``configs/train/quickstart.yaml``);
4. evaluate everything on common demand paths (:func:`invnet.evaluation.evaluate`);
5. print the KPI comparison, write the HTML/Markdown report, log it all to the local MLflow store;
6. print how to open the report, the MLflow UI and how to serve the trained policy.

Each step is a function taking what it needs, so tests run them with a tiny budget.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from invnet.envs.network import Network

BASELINES = ("base_stock", "echelon_base_stock", "base_stock+threshold")
"""Baselines tuned by the quickstart: installation and echelon base-stock, base-stock + threshold transfers.
The cheapest on the *tuning* paths is the reference (no selection on the evaluation paths)."""
TUNE_SEED = 10_000
TUNE_EPISODES = 32


@dataclass
class QuickstartResult:
    """What the quickstart produced (paths, results dict, timings in seconds)."""

    out: Path
    report_html: Path
    report_md: Path
    results: dict[str, Any]
    bundle: Path | None = None
    model_uri: str | None = None
    run_id: str | None = None
    tracking_uri: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def tune_baselines(
    net: Network,
    names: Sequence[str] = BASELINES,
    episodes: int = TUNE_EPISODES,
    seed: int = TUNE_SEED,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """{label: TuneResult} for each baseline, tuned with :func:`invnet.agents.tuning.tune`."""
    from invnet.agents.tuning import tune

    out: dict[str, Any] = {}
    for name in names:
        try:
            r = tune(net, name, episodes=episodes, seed=seed)
        except ValueError as e:  # e.g. a transfer heuristic on a network without transfer lanes
            log(f"  skipped {name}: {e}")
            continue
        log(f"  tuned {name}: {r.total_cost:.2f} ± {r.total_cost_ci95:.2f} per period ({r.seconds:.1f} s)")
        out[f"{name} (tuned)"] = r
    return out


def train_agents(
    scenario: str, config: str, steps: int | None, out: Path, seed: int = 0, log: Callable[[str], None] = print
) -> Any:
    """Train per-node agents (TrainResult); MLflow logging per the config, output under ``out/train``."""
    from invnet.training.api import train
    from invnet.training.config import load_train_config

    cfg = load_train_config(
        config, {"scenario": scenario, "steps": steps, "out": str(out / "train"), "run_name": "quickstart"}
    )
    log(f"  {cfg.algo}, {cfg.total_steps} environment steps ({cfg.n_envs} envs x {cfg.n_steps} x {cfg.iterations})")
    return train(cfg, progress=True)


def run_quickstart(
    scenario: str = "hub_spoke",
    steps: int | None = None,
    episodes: int = 100,
    out: str | Path = "runs/quickstart",
    seed: int = 0,
    config: str = "quickstart",
    train: bool = True,
    baselines: Sequence[str] = BASELINES,
    tune_episodes: int = TUNE_EPISODES,
    mlflow_log: bool = True,
    log: Callable[[str], None] | None = None,
) -> QuickstartResult:
    """Run the main job; returns paths and results. See the module docstring for the steps."""
    from invnet.agents.registry import make_policy
    from invnet.envs.network import compile_network
    from invnet.envs.scenario import load_scenario, resolve_scenario_path
    from invnet.evaluation import kpis, stats
    from invnet.evaluation.commands import print_results
    from invnet.evaluation.frames import evaluate
    from invnet.evaluation.report import save_scenario, write_report

    from invnet.cli import console

    log = log or (lambda s: console.print(s, highlight=False, soft_wrap=True))
    sc = load_scenario(scenario)  # before creating ``out`` (a folder named like the scenario would shadow it)
    net = compile_network(sc)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    secs: dict[str, float] = {}
    t_all = time.perf_counter()

    log(f"[bold]1/5 tuning baselines[/] on {tune_episodes} episodes (seed {TUNE_SEED}) ...")
    t0 = time.perf_counter()
    tuned = tune_baselines(net, baselines, tune_episodes, TUNE_SEED, log)
    secs["tuning"] = time.perf_counter() - t0
    policies: dict[str, Any] = {"order_up_to (scenario levels)": make_policy("order_up_to", net)}
    policies.update({label: make_policy(r.policy, net, **r.params) for label, r in tuned.items()})
    reference = min(tuned, key=lambda k: tuned[k].total_cost) if tuned else "order_up_to (scenario levels)"
    log(f"  reference: {reference} (cheapest on the tuning paths)")

    log(f"[bold]2/5 hindsight bound[/] on the {episodes} evaluation episodes (seed {seed}) ...")
    from invnet.agents.bound import hindsight_bound

    t0 = time.perf_counter()
    bound = hindsight_bound(net, episodes, seed)
    secs["bound"] = time.perf_counter() - t0
    log(f"  bound: {bound.total_cost:.2f} ± {bound.total_cost_ci95:.2f} per period ({secs['bound']:.1f} s)")

    trained = None
    bundle: Path | None = None
    curve: list[dict] | None = None
    if train:
        log("[bold]3/5 training per-node agents[/] ...")
        t0 = time.perf_counter()
        trained = train_agents(scenario, config, steps, out, log=log)
        secs["training"] = time.perf_counter() - t0
        from invnet.training.bundle import load_bundle_policy

        curve = list(trained.curve)
        if trained.bundle_path is None:
            log("  [yellow]training produced no bundle (interrupted before the first evaluation)[/]")
        else:
            bundle = Path(trained.bundle_path)
            policies["learned (per-node agents)"] = load_bundle_policy(bundle, net)
            log(f"  bundle: {bundle} ({secs['training']:.0f} s)")
    else:
        log("[bold]3/5 training skipped[/] (--no-train)")

    log(f"[bold]4/5 evaluating[/] {len(policies)} policies on {episodes} common demand paths ...")
    t0 = time.perf_counter()
    frame = evaluate(net, policies, episodes, seed, level="period")
    res = stats.results(kpis.episode_kpis(frame), reference=reference, bound=bound.per_episode)
    secs["evaluation"] = time.perf_counter() - t0
    print_results(
        res, f"{sc.name}: {episodes} episodes (seed {seed}), mean cost per period after {net.warmup} warm-up periods"
    )

    log("[bold]5/5 report and MLflow[/] ...")
    cfg = {
        "scenario": str(resolve_scenario_path(scenario)),
        "episodes": episodes,
        "seed": seed,
        "tuning": {"episodes": tune_episodes, "seed": TUNE_SEED},
        "tuned_params": {k: r.params for k, r in tuned.items()},
        "train_config": config if train else None,
        "train_steps": steps,
        "bundle": str(bundle) if bundle else None,
        "seconds": secs,
    }
    run_id, uri = None, None
    active = False
    if mlflow_log:
        run_id, uri = _start_mlflow(trained.run_id if trained is not None else None)
        active = run_id is not None
    try:
        rep = write_report(
            out / "report", frame, title=f"invnet quickstart: {sc.name}", reference=reference,
            bound=bound.per_episode, curve=curve, config=cfg,
        )  # fmt: skip
        save_scenario(out / "report", scenario)
        if active:
            import mlflow

            mlflow.log_dict(cfg, "quickstart/config.json")
            mlflow.log_metrics({"quickstart/bound_total_cost": bound.total_cost, **{
                f"quickstart/seconds_{k}": v for k, v in secs.items()}})  # fmt: skip
            mlflow.set_tag("invnet.quickstart", "true")
    finally:
        if active:
            import mlflow

            mlflow.end_run()
    secs["total"] = time.perf_counter() - t_all
    model_uri = getattr(trained, "model_uri", None) if bundle is not None else None
    _print_next_steps(rep.html, uri, scenario, bundle, model_uri, log, secs["total"])
    return QuickstartResult(
        out=out,
        report_html=rep.html,
        report_md=rep.markdown,
        results=res,
        bundle=bundle,
        model_uri=model_uri,
        run_id=run_id,
        tracking_uri=uri,
        seconds=secs,
    )


def _start_mlflow(run_id: str | None) -> tuple[str | None, str]:
    """Reopen the training run (or start a ``quickstart`` run) in the local store; returns (run id, uri)."""
    import mlflow
    from invnet.training.tracking import tracking_uri

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    if run_id is None:
        from invnet.training.tracking import Tracker

        tr = Tracker(True, experiment="invnet", run_name="quickstart")
        return tr.start(), uri
    mlflow.start_run(run_id=run_id)
    return run_id, uri


def _print_next_steps(
    html: Path,
    uri: str | None,
    scenario: str,
    bundle: Path | None,
    model_uri: str | None,
    log: Callable[[str], None],
    seconds: float = 0.0,
) -> None:
    log("")
    log(f"[bold green]Done[/] in {seconds:.0f} s. Next:")
    log(f"  open the report:     {html.resolve().as_uri()}")
    if uri is not None:
        log(f"  browse the runs:     mlflow ui --backend-store-uri {shlex.quote(uri)}  (then http://127.0.0.1:5000)")
    if bundle is not None:
        cmd = f"invnet serve --scenario {shlex.quote(scenario)} --policy {shlex.quote(str(bundle))}"
        log(f"  serve the policy:    {cmd}")
        log(f"  evaluate it again:   invnet evaluate --scenario {shlex.quote(scenario)} "
            f"--policy {shlex.quote(str(bundle))} --policy order_up_to --episodes 100 --bound")  # fmt: skip
    if model_uri is not None:
        log(f"  MLflow model:        {model_uri} (also a --policy SPEC for evaluate and serve)")
    sys.stdout.flush()


def results_json(res: QuickstartResult) -> str:
    """The quickstart's results as JSON (for scripts)."""
    return json.dumps(
        {"report": str(res.report_html), "bundle": str(res.bundle) if res.bundle else None, **res.results},
        default=str,
    )
