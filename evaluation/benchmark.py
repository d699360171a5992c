"""Benchmark suites: scenarios x policies (baselines, tuned baselines, bound, learned) -> a results table.

A suite is YAML (``configs/benchmarks/*.yaml``), validated by :class:`Suite`; every problem is
reported with its field path. :func:`run_benchmark` evaluates each scenario on common demand paths,
writes one report per scenario and a paper-like table (CSV + Markdown) with the machine it ran on.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class SuiteError(ValueError):
    """A benchmark suite that cannot be run; the message names the field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PolicyEntry(_Model):
    """One policy of the suite: a registered name (or bundle path / MLflow URI), optionally tuned first."""

    name: str = Field(min_length=1, description="registered policy name, bundle path or MLflow model URI")
    label: str | None = Field(default=None, description="name in the table (default: name, '(tuned)' when tuned)")
    tune: bool = Field(default=False, description="tune parameters with invnet.agents.tuning.tune (own seed)")
    params: dict[str, Any] = Field(default_factory=dict, description="fixed parameters for make_policy")

    @property
    def display(self) -> str:
        return self.label or (f"{self.name} (tuned)" if self.tune else self.name)


class LearnedEntry(_Model):
    """Per-node agents trained per scenario within a stated budget."""

    enabled: bool = False
    label: str = "learned"
    config: str = Field(default="quickstart", description="training config YAML (path or shipped name)")
    steps: int = Field(default=20_000, ge=1, description="training budget in environment periods")
    seed: int = Field(default=0, ge=0)


class Suite(_Model):
    """A benchmark suite: every scenario x every policy, the same episodes and seed for all."""

    name: str = Field(min_length=1)
    description: str = ""
    scenarios: list[str] = Field(min_length=1, description="scenario YAML paths or shipped names")
    policies: list[PolicyEntry] = Field(min_length=1)
    episodes: int = Field(default=100, ge=2, description="evaluation episodes (common random numbers)")
    seed: int = Field(default=0, ge=0, description="evaluation seed: episode e uses seed + e")
    tune_episodes: int = Field(default=32, ge=2, description="episodes for tuning (seed tune_seed, not seed)")
    tune_seed: int = Field(default=10_000, ge=0)
    bound: bool = Field(default=True, description="compute the hindsight bound and the gap closed")
    reference: str | None = Field(default=None, description="policy label for paired differences (default: first)")
    learned: LearnedEntry = LearnedEntry()
    out: str = Field(default="runs/benchmark", description="output folder")

    @field_validator("policies", mode="before")
    @classmethod
    def _names(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [{"name": p} if isinstance(p, str) else p for p in v]
        return v

    @model_validator(mode="after")
    def _check(self) -> Suite:
        labels = [p.display for p in self.policies] + ([self.learned.label] if self.learned.enabled else [])
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            raise ValueError(f"policies: duplicate labels {dup} (set 'label' to tell them apart)")
        if self.reference is not None and self.reference not in labels:
            raise ValueError(f"reference: {self.reference!r} is not a policy label ({', '.join(labels)})")
        return self

    @property
    def labels(self) -> list[str]:
        return [p.display for p in self.policies] + ([self.learned.label] if self.learned.enabled else [])


def _problems(e: ValidationError) -> str:
    out = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(root)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        out.append(f"  - {loc}: {msg}")
    return "\n".join(out)


def parse_suite(data: Any, source: str = "suite") -> Suite:
    """Validate a suite mapping; :class:`SuiteError` lists every problem with its field path."""
    from invnet.envs.scenario import ScenarioError, resolve_scenario_path

    if not isinstance(data, dict):
        raise SuiteError(f"invalid benchmark suite {source}: expected a mapping of fields")
    try:
        suite = Suite.model_validate(data)
    except ValidationError as e:
        raise SuiteError(f"invalid benchmark suite {source}:\n{_problems(e)}") from None
    from invnet.agents.registry import policy_names

    known = policy_names()
    missing = []
    for i, sc in enumerate(suite.scenarios):
        try:
            resolve_scenario_path(sc)
        except ScenarioError:
            missing.append(f"  - scenarios[{i}]: scenario not found: {sc!r}")
    for i, p in enumerate(suite.policies):
        is_uri = p.name.startswith(("models:/", "runs:/", "mlflow:"))
        if p.name not in known and (p.tune or p.params or not (is_uri or Path(p.name).exists())):
            missing.append(
                f"  - policies[{i}].name: unknown policy {p.name!r} (registered: {', '.join(known)}; "
                "untuned entries may also be bundle paths or MLflow model URIs)"
            )
    if missing:
        raise SuiteError(f"invalid benchmark suite {source}:\n" + "\n".join(missing))
    return suite


def builtin_suite_dir() -> Path:
    import invnet.configs as cfg

    return Path(cfg.__file__).resolve().parent / "benchmarks"


def load_suite(path: str | Path) -> Suite:
    """Load a suite YAML (path, or the name of a shipped suite such as ``default``)."""
    p = Path(path)
    if not p.exists():
        cand = builtin_suite_dir() / (p.name if p.suffix else f"{p.name}.yaml")
        if not cand.exists():
            shipped = ", ".join(sorted(q.stem for q in builtin_suite_dir().glob("*.yaml")))
            raise SuiteError(f"--suite: file not found: {path} (shipped suites: {shipped})")
        p = cand
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise SuiteError(f"invalid benchmark suite {p}: not valid YAML ({e})") from None
    return parse_suite(data, str(p))


@dataclass
class BenchmarkResult:
    table: pd.DataFrame
    csv: Path
    markdown_path: Path
    markdown: str
    folder: Path


def machine() -> str:
    """A one-line description of the machine (CPU model, cores, OS, Python)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    system = f"{platform.system()} {platform.release()}"
    return f"{cpu}, {cores} cores available, {system}, Python {platform.python_version()}"


def _tune(net: Any, entry: PolicyEntry, suite: Suite) -> tuple[Any, dict[str, Any], float]:
    from invnet.agents.registry import make_policy
    from invnet.agents.tuning import tune

    r = tune(net, entry.name, episodes=suite.tune_episodes, seed=suite.tune_seed)
    return make_policy(r.policy, net, **r.params), dict(r.params), float(r.seconds)


def _train(scenario: str, suite: Suite, out: Path) -> tuple[Any, dict[str, Any], float, list[dict]]:
    from invnet.training.api import train
    from invnet.training.config import load_train_config

    le = suite.learned
    cfg = load_train_config(
        le.config, {"scenario": scenario, "steps": le.steps, "seed": le.seed, "out": str(out), "mlflow": False}
    )
    t0 = time.perf_counter()
    res = train(cfg, progress=False)
    return res.bundle_path, {"steps": cfg.total_steps, "config": le.config}, time.perf_counter() - t0, list(res.curve)


def run_benchmark(
    suite: Suite, out_dir: str | Path | None = None, log: Callable[[str], None] | None = None
) -> BenchmarkResult:
    """Run every scenario x policy of ``suite``; write the table and one report per scenario."""
    from invnet.agents.registry import make_policy, resolve_policy
    from invnet.envs.network import compile_network
    from invnet.envs.scenario import load_scenario
    from invnet.evaluation import kpis, stats
    from invnet.evaluation.frames import evaluate
    from invnet.evaluation.report import (
        atomic_write_text,
        export_frame,
        fmt,
        markdown_table,
        save_scenario,
        write_report,
    )

    log = log or (lambda s: None)
    out = Path(out_dir or suite.out)
    rows: list[dict[str, Any]] = []
    t_all = time.perf_counter()
    for sc_name in suite.scenarios:
        sc = load_scenario(sc_name)
        net = compile_network(sc)
        pols: dict[str, Any] = {}
        meta: dict[str, dict[str, Any]] = {}
        for i, entry in enumerate(suite.policies):
            t0 = time.perf_counter()
            try:
                if entry.tune:
                    log(f"[{sc.name}] tuning {entry.name} on {suite.tune_episodes} episodes ...")
                    pol, params, secs = _tune(net, entry, suite)
                elif entry.params:
                    pol, params = make_policy(entry.name, net, **entry.params), dict(entry.params)
                    secs = time.perf_counter() - t0
                else:
                    pol = resolve_policy(entry.name, net)
                    params, secs = _safe_params(pol), time.perf_counter() - t0
            except (ValueError, TypeError, FileNotFoundError) as e:
                raise SuiteError(f"policies[{i}] ({entry.display}) on scenario {sc.name}: {e}") from None
            pols[entry.display] = pol
            meta[entry.display] = {"params": params, "seconds": secs}
        curve: list[dict] = []
        if suite.learned.enabled:
            log(f"[{sc.name}] training {suite.learned.label} for {suite.learned.steps} steps ...")
            bundle, params, secs, curve = _train(sc_name, suite, out / sc.name / "train")
            from invnet.training.bundle import load_bundle_policy

            pols[suite.learned.label] = load_bundle_policy(Path(bundle), net)
            meta[suite.learned.label] = {"params": {**params, "bundle": str(bundle)}, "seconds": secs}
        log(f"[{sc.name}] evaluating {len(pols)} policies on {suite.episodes} episodes ...")
        frame = evaluate(net, pols, suite.episodes, suite.seed, level="period")
        bound = None
        bound_secs = None
        if suite.bound:
            from invnet.agents.bound import hindsight_bound

            log(f"[{sc.name}] hindsight bound ...")
            br = hindsight_bound(net, suite.episodes, suite.seed)
            bound, bound_secs = br.per_episode, float(br.seconds)
        ep = kpis.episode_kpis(frame)
        res = stats.results(ep, reference=suite.reference, bound=bound)
        write_report(
            out / sc.name,
            frame,
            title=f"Benchmark {suite.name}: {sc.name}",
            reference=suite.reference,
            bound=bound,
            curve=curve or None,
            config={"suite": suite.model_dump(), "scenario": sc.model_dump(mode="json"), "policies": meta},
            export_periods=False,
        )
        save_scenario(out / sc.name, sc_name)
        for label, e in res["policies"].items():
            vs = e.get("vs_reference", {}).get("total_cost", {})
            rows.append(
                {
                    "scenario": sc.name,
                    "policy": label,
                    **{f"{k}": e[k]["mean"] for k in kpis.KPIS},
                    "total_cost_ci95": e["total_cost"]["ci95"],
                    "diff_vs_reference": vs.get("diff"),
                    "diff_ci95": vs.get("ci95"),
                    "gap_closed": e.get("gap_closed"),
                    "seconds": meta[label]["seconds"],
                    "params": json.dumps(meta[label]["params"], default=str),
                }
            )
        if bound is not None:
            b = res["bound"]
            rows.append(
                {
                    "scenario": sc.name,
                    "policy": "hindsight bound",
                    "total_cost": b["total_cost"]["mean"],
                    "total_cost_ci95": b["total_cost"]["ci95"],
                    "diff_vs_reference": b.get("vs_reference", {}).get("total_cost", {}).get("diff"),
                    "diff_ci95": b.get("vs_reference", {}).get("total_cost", {}).get("ci95"),
                    "gap_closed": 1.0,
                    "seconds": bound_secs,
                    "params": "{}",
                }
            )
    table = pd.DataFrame(rows)
    csv = export_frame(table, out / "results")[0]
    ref = suite.reference or suite.labels[0]
    md_rows = []
    for r in table.itertuples():
        md_rows.append(
            [
                r.scenario,
                r.policy,
                fmt("total_cost", r.total_cost, r.total_cost_ci95),
                _f(r.diff_vs_reference, r.diff_ci95),
                "–" if pd.isna(r.gap_closed) else f"{100 * r.gap_closed:.1f}%",
                fmt("fill_rate", getattr(r, "fill_rate", None)),
                fmt("days_of_supply", getattr(r, "days_of_supply", None)),
                fmt("transfer_frequency", getattr(r, "transfer_frequency", None)),
                "–" if pd.isna(r.seconds) else f"{r.seconds:.1f}",
            ]
        )
    head = [
        "scenario",
        "policy",
        "cost / period (95% CI)",
        f"Δ vs {ref}",
        "gap closed",
        "fill rate",
        "days of supply",
        "transfers / period",
        "setup s",
    ]
    elapsed = time.perf_counter() - t_all
    md = "\n".join(
        [
            f"# Benchmark {suite.name}",
            "",
            suite.description,
            "",
            f"{suite.episodes} evaluation episodes per scenario on common demand paths (seed {suite.seed}); "
            f"tuning on {suite.tune_episodes} other episodes (seed {suite.tune_seed}); cost is mean cost per "
            "period after warm-up; Δ is the paired difference with its 95% CI; gap closed = "
            f"(cost_{ref} − cost) / (cost_{ref} − cost_bound); 'setup s' is tuning/training/bound time."
            + (
                f" {suite.learned.label}: trained per scenario for {suite.learned.steps} environment steps "
                f"({suite.learned.config} config, seed {suite.learned.seed})."
                if suite.learned.enabled
                else ""
            ),
            "",
            markdown_table(head, md_rows),
            "",
            f"Machine: {machine()}. Total time {elapsed:.0f} s.",
            "",
        ]
    )
    md_path = atomic_write_text(out / "results.md", md)
    atomic_write_text(out / "suite.yaml", yaml.safe_dump(suite.model_dump(), sort_keys=False))
    return BenchmarkResult(table=table, csv=csv, markdown_path=md_path, markdown=md, folder=out)


def _f(d: Any, c: Any) -> str:
    if d is None or pd.isna(d):
        return "–"
    return f"{d:+.2f} ± {c:.2f}" if c is not None and not pd.isna(c) else f"{d:+.2f}"


def _safe_params(pol: Any) -> dict[str, Any]:
    try:
        return dict(pol.params())
    except Exception:  # noqa: BLE001 - informational only
        return {}
