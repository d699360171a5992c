"""What every training algorithm shares: network, action mapper, baseline, evaluation, logging, outputs.

An algorithm (:mod:`ippo`, :mod:`mappo`) builds its env and networks, then calls
:meth:`Session.end_iteration` once per iteration; the session evaluates on fixed demand paths
against the tuned base-stock baseline, keeps the best bundle, logs to MLflow and drives the progress bar.

Output folder::

    checkpoints/last.pt      resumable state (atomic)
    best/                    policy bundle with the lowest evaluation cost so far
    bundle/                  the final policy bundle (= best)
    curve.json               one record per evaluation
    learning_curve.png       evaluation cost vs steps, with the baseline
    final_eval.csv           learned vs baseline on fresh paths
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from invnet.agents.base import Policy
from invnet.agents.learned import LearnedPolicy
from invnet.envs.network import Network, compile_network
from invnet.envs.rollout import COST_TERMS, mean_ci95, rollout
from invnet.envs.scenario import load_scenario, resolve_scenario_path
from invnet.training.actions import ActionMapper, base_policy_for, policy_from_spec, policy_spec
from invnet.training.bundle import atomic_write_bytes, save_bundle
from invnet.training.config import TrainConfig
from invnet.training.progress import TrainProgress
from invnet.training.tracking import Tracker

FINAL_SEED_OFFSET = 1_000_000  # final table uses paths disjoint from the ones used to pick the best policy


def policy_metrics(net: Network, policy: Policy, episodes: int, seed: int) -> dict[str, Any]:
    """Mean cost per period (after warm-up) with 95% CI, cost terms and unit fill rate, plus per-episode costs."""
    traj = rollout(net, policy, episodes, seed)
    per_ep = traj.cost_per_period()
    m, ci = mean_ci95(per_ep)
    w = net.warmup
    demand = traj["demand"][:, w:].sum()
    out = {
        "cost": m,
        "cost_ci95": ci,
        "fill_rate": float(traj["served_now"][:, w:].sum() / demand) if demand > 0 else 1.0,
        "per_episode": per_ep,
    }
    out.update({k: float(traj.term_per_period(k).mean()) for k in COST_TERMS})
    return out


@dataclass
class Session:
    cfg: TrainConfig
    net: Network
    mapper: ActionMapper
    baseline: Policy
    baseline_eval: dict[str, Any]
    tracker: Tracker
    out: Path
    progress: TrainProgress
    callback: Callable[[int, dict[str, Any]], None] | None = None
    curve: list[dict[str, Any]] = field(default_factory=list)
    best_cost: float = float("inf")
    best_iteration: int = -1
    algo: str = "mappo"
    pending_checkpoint: Callable[[], dict[str, Any]] | None = None
    elapsed_before: float = 0.0
    started: float = field(default_factory=time.monotonic)

    # ---- construction ------------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        cfg: TrainConfig,
        progress: bool,
        resume: dict[str, Any] | None = None,
        callback: Callable[[int, dict[str, Any]], None] | None = None,
    ) -> Session:
        tracker = Tracker(cfg.mlflow, cfg.experiment, cfg.run_name)  # first: a bad store fails before any work
        net = compile_network(load_scenario(cfg.scenario))
        sc = net.scenario.agents
        mode = cfg.action_mode or sc.action_mode
        visibility = cfg.visibility or sc.visibility
        if resume is not None:
            baseline = policy_from_spec(resume["session"]["baseline"], net)
        else:
            baseline = base_policy_for(
                net, cfg.base_policy, cfg.tune_episodes, cfg.eval_seed + 50_000, cfg.tune_seconds
            )
        mapper = ActionMapper.build(net, mode, visibility, baseline if mode == "residual" else None, cfg.residual_scale)
        base_eval = policy_metrics(net, baseline, cfg.eval_episodes, cfg.eval_seed)
        out = cfg.out_dir
        out.mkdir(parents=True, exist_ok=True)
        s = cls(
            cfg=cfg,
            net=net,
            mapper=mapper,
            baseline=baseline,
            baseline_eval=base_eval,
            tracker=tracker,
            out=out,
            progress=TrainProgress(
                cfg.total_steps,
                f"{cfg.algo} {net.scenario.name}",
                enabled=progress,
                start=int(resume["iteration"]) * cfg.steps_per_iter if resume else 0,
            ),
            callback=callback,
            algo=cfg.algo,
        )
        if resume is not None:
            st = resume["session"]
            s.curve, s.best_cost, s.best_iteration = list(st["curve"]), st["best_cost"], st["best_iteration"]
            s.elapsed_before = st.get("elapsed", 0.0)
            tracker.start(st.get("run_id"))
        else:
            tracker.start()
            try:
                scen_path = resolve_scenario_path(cfg.scenario)
            except Exception:  # noqa: BLE001 - an in-memory scenario has no file
                scen_path = None
            tracker.log_setup(
                cfg.resolved(),
                scen_path,
                {"algo": cfg.algo, "scenario": net.scenario.name, "action_mode": mode},
            )
            tracker.log_metrics({"baseline_cost": base_eval["cost"]}, step=0)
        return s

    def state_dict(self) -> dict[str, Any]:
        """Session part of a checkpoint."""
        return {
            "curve": list(self.curve),
            "best_cost": self.best_cost,
            "best_iteration": self.best_iteration,
            "run_id": self.tracker.run_id,
            "baseline": policy_spec(self.baseline),
            "elapsed": self.elapsed_before + time.monotonic() - self.started,
        }

    def save_checkpoint(self, payload: dict[str, Any]) -> Path:
        from invnet.training.checkpoint import save_checkpoint

        return save_checkpoint(self.out, payload)

    # ---- evaluation ----------------------------------------------------------------------------------
    def learned_policy(self, weights: list[tuple[np.ndarray, np.ndarray]], obs_norm: dict[str, Any]) -> LearnedPolicy:
        return LearnedPolicy(self.net, weights, obs_norm, self.mapper, name=f"learned:{self.algo}")

    def bundle_meta(self, iteration: int, steps: int) -> dict[str, Any]:
        return {
            "algo": self.algo,
            "iteration": iteration,
            "trained_steps": steps,
            "run_id": self.tracker.run_id,
            "config": self.cfg.model_dump(),
        }

    def end_iteration(
        self,
        iteration: int,
        steps: int,
        train_metrics: dict[str, float],
        export: Callable[[], tuple[list[tuple[np.ndarray, np.ndarray]], dict[str, Any]]],
    ) -> None:
        """Log one iteration; every ``eval_every`` iterations (and the last) evaluate and keep the best bundle."""
        cfg = self.cfg
        metrics = {k: float(v) for k, v in train_metrics.items()}
        last = iteration == cfg.iterations - 1
        if (iteration + 1) % cfg.eval_every == 0 or last or iteration == 0:
            weights, norm = export()
            ev = policy_metrics(self.net, self.learned_policy(weights, norm), cfg.eval_episodes, cfg.eval_seed)
            ratio = ev["cost"] / self.baseline_eval["cost"] if self.baseline_eval["cost"] > 0 else float("nan")
            metrics.update(
                {
                    "eval_cost": ev["cost"],
                    "eval_cost_ci95": ev["cost_ci95"],
                    "eval_fill_rate": ev["fill_rate"],
                    "baseline_ratio": ratio,
                }
            )
            if ev["cost"] < self.best_cost:
                self.best_cost, self.best_iteration = ev["cost"], iteration
                save_bundle(self.out / "best", self.net, weights, norm, self.mapper, self.bundle_meta(iteration, steps))
                metrics["best_eval_cost"] = ev["cost"]
            rec = {"iteration": iteration, "steps": steps, "baseline_cost": self.baseline_eval["cost"], **metrics}
            self.curve.append(rec)
        self.tracker.log_metrics(metrics, step=steps)
        self.progress.update(
            steps,
            cost=metrics.get("train_episode_cost"),
            ratio=self.curve[-1]["baseline_ratio"] if self.curve else None,
        )
        if self.callback is not None:
            self.callback(iteration, metrics)

    # ---- end of training -----------------------------------------------------------------------------
    def finish(self) -> tuple[Path, dict[str, Any], str | None]:
        """Final bundle (the best), final evaluation table, plot, curve; MLflow artifacts and pyfunc model."""
        import shutil

        from invnet.training.bundle import load_bundle_policy

        cfg, net = self.cfg, self.net
        final_dir = self.out / "bundle"
        tmp = self.out / ".bundle.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(self.out / "best", tmp)
        from invnet.training.bundle import replace_dir

        replace_dir(tmp, final_dir)
        learned = load_bundle_policy(final_dir, net)
        episodes = cfg.final_episodes
        seed = cfg.eval_seed + FINAL_SEED_OFFSET
        lm = policy_metrics(net, learned, episodes, seed)
        bm = policy_metrics(net, self.baseline, episodes, seed)
        diff_m, diff_ci = mean_ci95(lm["per_episode"] - bm["per_episode"])
        rows = []
        for name, m in ((learned.name, lm), (f"baseline:{self.baseline.name}", bm)):
            rows.append(
                {
                    "policy": name,
                    "cost": m["cost"],
                    "cost_ci95": m["cost_ci95"],
                    **{k: m[k] for k in COST_TERMS},
                    "fill_rate": m["fill_rate"],
                }
            )
        final = {
            "scenario": net.scenario.name,
            "episodes": episodes,
            "seed": seed,
            "cost": lm["cost"],
            "cost_ci95": lm["cost_ci95"],
            "fill_rate": lm["fill_rate"],
            "baseline": self.baseline.name,
            "baseline_cost": bm["cost"],
            "baseline_cost_ci95": bm["cost_ci95"],
            "baseline_ratio": lm["cost"] / bm["cost"] if bm["cost"] > 0 else float("nan"),
            "paired_diff": diff_m,
            "paired_diff_ci95": diff_ci,
            "best_iteration": self.best_iteration,
            "train_seconds": self.elapsed_before + time.monotonic() - self.started,
        }
        import pandas as pd

        table = pd.DataFrame(rows)
        atomic_write_bytes(self.out / "final_eval.csv", table.to_csv(index=False).encode())
        atomic_write_bytes(self.out / "curve.json", json.dumps(self.curve, indent=1).encode())
        atomic_write_bytes(self.out / "final.json", json.dumps(final, indent=1).encode())
        plot_curve(
            self.curve, self.out / "learning_curve.png", f"{cfg.algo} on {net.scenario.name}", self.baseline.name
        )
        model_uri = None
        if self.tracker.enabled:
            self.tracker.log_metrics({f"final_{k}": v for k, v in final.items() if isinstance(v, float)}, step=0)
            for name in ("final_eval.csv", "curve.json", "final.json", "learning_curve.png"):
                self.tracker.log_artifact(self.out / name, "results")
            self.tracker.log_artifact(final_dir, "bundle")
            model_uri = self.tracker.log_pyfunc(final_dir, cfg.register_as)
        return final_dir, final, model_uri


def plot_curve(curve: list[dict[str, Any]], path: Path, title: str, baseline: str = "base_stock") -> None:
    """Evaluation cost per period (95% CI band over episodes) vs steps, with the tuned baseline (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import io

    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    if curve:
        x = np.array([c["steps"] for c in curve])
        y = np.array([c["eval_cost"] for c in curve])
        ci = np.array([c["eval_cost_ci95"] for c in curve])
        ax.plot(x, y, marker="o", label="learned (eval paths)")
        ax.fill_between(x, y - ci, y + ci, alpha=0.2)
        ax.axhline(curve[0]["baseline_cost"], color="k", ls="--", label=f"tuned baseline ({baseline})")
        tr = [(c["steps"], c["train_episode_cost"]) for c in curve if "train_episode_cost" in c]
        if tr:
            ax.plot(*zip(*tr, strict=True), alpha=0.5, label="training episodes")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("cost per period (after warm-up)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
