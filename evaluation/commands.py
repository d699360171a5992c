"""``invnet evaluate``, ``invnet benchmark`` and ``invnet quickstart`` (heavy imports inside the commands)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

MAIN_KPIS = ("total_cost", "holding_cost", "shortage_cost", "transfer_cost", "fill_rate", "days_of_supply")


def policy_label(spec: str, taken: set[str]) -> str:
    """A short, unique label for a policy SPEC: the name, a bundle's folder/file name, or the URI."""
    label = spec
    if not spec.startswith(("models:/", "runs:/", "mlflow:")) and ("/" in spec or spec.endswith((".zip", ".pt"))):
        label = Path(spec.rstrip("/")).name or spec
    base, i = label, 2
    while label in taken:
        label = f"{base}#{i}"
        i += 1
    return label


def parse_params(items: list[str]) -> dict[str, dict[str, Any]]:
    """``SPEC=FILE`` options -> {SPEC: parameters} (files as written by ``invnet baselines tune --json``)."""
    from invnet.cli import fail, load_params_file

    out: dict[str, dict[str, Any]] = {}
    for item in items:
        spec, sep, path = item.rpartition("=")
        if not sep or not spec or not path:
            fail(f"--params: expected SPEC=FILE (e.g. base_stock=tuned.json), got {item!r}")
        out[spec] = load_params_file(Path(path))
    return out


def resolve_policies(specs: list[str], net: Any, params: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """SPECs -> {label: Policy} through :func:`invnet.agents.registry.resolve_policy` (the only resolver)."""
    from invnet.agents.registry import resolve_policy

    from invnet.cli import fail

    params = params or {}
    unused = sorted(set(params) - set(specs))
    if unused:
        fail(f"--params: {', '.join(unused)} is not one of the --policy SPECs ({', '.join(specs)})")
    out: dict[str, Any] = {}
    for spec in specs:
        try:
            pol = resolve_policy(spec, net, **params.get(spec, {}))
        except TypeError as e:  # parameters the policy does not take
            fail(f"--params {spec}: {e}")
        except (ValueError, FileNotFoundError, KeyError) as e:
            fail(f"--policy {spec}: {str(e).removeprefix('policy: ')}")
        except Exception as e:  # noqa: BLE001 - a broken bundle or MLflow URI: say which one
            fail(f"--policy {spec}: could not load ({type(e).__name__}: {e})")
        out[policy_label(spec, set(out))] = pol
    return out


def compute_bound(net: Any, episodes: int, seed: int) -> Any:
    """The hindsight bound on the same demand paths; exits with a clear error when unavailable."""
    from invnet.cli import fail

    try:
        from invnet.agents.bound import hindsight_bound
    except ModuleNotFoundError as e:
        if e.name and e.name.startswith("invnet"):
            fail("--bound: the hindsight bound (invnet.agents.bound) is not available in this install")
        raise
    try:
        return hindsight_bound(net, episodes, seed)
    except ValueError as e:
        fail(f"--bound: {e}")


def print_results(res: dict, title: str) -> None:
    """A rich table of the main KPIs (mean ± 95% CI), Δ cost vs the reference and gap closed."""
    from invnet.evaluation.report import LABELS, fmt
    from rich.table import Table

    from invnet.cli import console

    t = Table(title=title)
    t.add_column("policy", no_wrap=True)
    for k in MAIN_KPIS:
        t.add_column(LABELS[k], justify="right")
    t.add_column(f"Δ cost vs {res['reference']}", justify="right")
    if "bound" in res:
        t.add_column("gap closed", justify="right")
    for name, e in res["policies"].items():
        row = [name] + [fmt(k, e[k]["mean"], e[k]["ci95"]) for k in MAIN_KPIS]
        vs = e.get("vs_reference", {}).get("total_cost")
        row.append("reference" if vs is None else f"{vs['diff']:+.2f} ± {vs['ci95']:.2f}")
        if "bound" in res:
            g = e.get("gap_closed")
            row.append("–" if g is None else f"{100 * g:.1f}%")
        t.add_row(*row)
    if "bound" in res:
        b = res["bound"]["total_cost"]
        vs = res["bound"].get("vs_reference", {}).get("total_cost")
        row = ["hindsight bound", fmt("total_cost", b["mean"], b["ci95"])] + ["–"] * (len(MAIN_KPIS) - 1)
        row += ["–" if vs is None else f"{vs['diff']:+.2f} ± {vs['ci95']:.2f}", "100.0%"]
        t.add_row(*row)
    if console.is_terminal:
        console.print(t)
    else:  # piped or captured: do not squeeze the table into 80 columns
        from rich.console import Console

        Console(width=max(console.width, 160), highlight=False).print(t)


def register(app: typer.Typer) -> None:
    @app.command()
    def evaluate(
        scenario: str = typer.Option(..., "--scenario", "-s", help="Scenario YAML path or shipped scenario name."),
        policy: list[str] = typer.Option(
            ..., "--policy", "-p", help="Registered policy name, bundle path or MLflow model URI (repeatable)."
        ),
        episodes: int = typer.Option(100, "--episodes", "-n", min=1, help="Episodes (common random numbers)."),
        seed: int = typer.Option(0, "--seed", help="Seed of episode 0; episode e uses seed + e for every policy."),
        reference: str | None = typer.Option(
            None, "--reference", help="Policy label for paired differences (default: the first)."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
        report: Path | None = typer.Option(None, "--report", help="Write the Markdown/HTML report and frames here."),
        bound: bool = typer.Option(False, "--bound", help="Also compute the hindsight (perfect-information) bound."),
        params: list[str] | None = typer.Option(
            None, "--params", help="SPEC=FILE: JSON parameters for a registered policy (e.g. from baselines tune)."
        ),
    ) -> None:
        """Evaluate policies on common demand paths: KPIs with 95% CIs, paired differences, optional report."""
        from invnet.envs.network import compile_network
        from invnet.evaluation import kpis, stats
        from invnet.evaluation.frames import evaluate as run_eval

        from invnet.cli import emit_json, fail, load_scenario_or_exit

        sc = load_scenario_or_exit(scenario)
        net = compile_network(sc)
        pols = resolve_policies(policy, net, parse_params(params or []))
        if reference is not None and reference not in pols:
            fail(f"--reference: {reference!r} is not one of the evaluated policies ({', '.join(pols)})")
        frame = run_eval(net, pols, episodes, seed, level="period")
        b = compute_bound(net, episodes, seed).per_episode if bound else None
        res = stats.results(kpis.episode_kpis(frame), reference=reference, bound=b, node_kpis=kpis.node_kpis(frame))
        if report is not None:
            from invnet.evaluation.report import save_scenario, write_report

            cfg = {"scenario": str(scenario), "policies": policy, "params": params, "episodes": episodes, "seed": seed}
            rep = write_report(report, frame, reference=reference, bound=b, config=cfg)
            save_scenario(report, scenario)
            res["report"] = str(rep.html)
        if as_json:
            emit_json(res)
            return
        print_results(res, f"{sc.name}: {episodes} episodes, seed {seed}, cost per period after {net.warmup} warm-up")
        if report is not None:
            from invnet.cli import console

            console.print(f"report: {res['report']}")

    @app.command()
    def benchmark(
        suite: Path = typer.Option(
            Path("configs/benchmarks/default.yaml"), "--suite", help="Benchmark suite YAML (scenarios x policies)."
        ),
        out: Path | None = typer.Option(None, "--out", help="Output folder (default: the suite's out)."),
        episodes: int | None = typer.Option(None, "--episodes", min=1, help="Override the suite's episodes."),
    ) -> None:
        """Run a benchmark suite: a paper-like results table (CSV + Markdown) and per-scenario reports."""
        from invnet.evaluation.benchmark import SuiteError, load_suite, run_benchmark

        from invnet.cli import console, fail

        try:
            s = load_suite(suite)
        except SuiteError as e:
            fail(str(e))
        if episodes is not None:
            s = s.model_copy(update={"episodes": episodes})
        try:
            res = run_benchmark(s, out_dir=out, log=lambda m: console.print(m, markup=False, highlight=False))
        except SuiteError as e:
            fail(str(e))
        console.print(res.markdown, soft_wrap=True, markup=False, highlight=False)
        console.print(f"table: {res.csv}\nmarkdown: {res.markdown_path}\nreports: {res.folder}")

    @app.command()
    def quickstart(
        scenario: str = typer.Option("hub_spoke", "--scenario", "-s", help="Scenario YAML path or shipped name."),
        steps: int | None = typer.Option(None, "--steps", min=1, help="Training steps (default: the train config's)."),
        episodes: int = typer.Option(100, "--episodes", "-n", min=2, help="Evaluation episodes (common paths)."),
        out: Path = typer.Option(Path("runs/quickstart"), "--out", help="Output folder."),
        seed: int = typer.Option(0, "--seed", help="Evaluation seed (tuning and training use other seeds)."),
        config: str = typer.Option("quickstart", "--config", help="Training config YAML (path or shipped name)."),
        train: bool = typer.Option(True, "--train/--no-train", help="Train the per-node agents."),
    ) -> None:
        """The main job: tune baselines, bound, train agents, evaluate on common paths, report, log to MLflow."""
        from invnet.evaluation.quickstart import run_quickstart

        from invnet.cli import load_scenario_or_exit

        load_scenario_or_exit(scenario)
        run_quickstart(
            scenario=scenario, steps=steps, episodes=episodes, out=out, seed=seed, config=config, train=train
        )
