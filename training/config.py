"""One typed training config: a pydantic model loaded from YAML, overridden by CLI flags.

Derived values (iterations, minibatch size, ...) are computed properties, never written back, so a
saved config always round-trips to the same run.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class TrainConfigError(ValueError):
    """A training config that cannot be used; the message names the field."""


class TrainConfig(BaseModel):
    """Everything a training run reads. ``steps`` counts environment periods summed over the parallel envs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scenario: str = Field(default="hub_spoke", description="scenario YAML path or shipped scenario name")
    algo: Literal["ippo", "mappo"] = Field(default="mappo", description="ippo (SB3 PPO, shared) or mappo (torch)")
    action_mode: Literal["quantity", "order_up_to", "residual"] | None = Field(
        default=None, description="None = the scenario's agents.action_mode; residual = adjust a tuned base-stock"
    )
    reward: Literal["team", "local", "mixed"] = Field(default="team", description="team reward by default")
    visibility: Literal["own", "neighbours", "all"] | None = Field(default=None, description="None = scenario's")
    steps: int = Field(default=200_000, ge=1, description="environment periods to train on (all envs together)")
    seed: int = Field(default=0, ge=0, description="seed of torch, the training envs and the action noise")
    n_envs: int = Field(default=16, ge=1, le=4096, description="parallel scenario copies (B); rows = B x N agents")
    n_steps: int = Field(default=64, ge=1, description="periods per env collected per iteration")
    epochs: int = Field(default=5, ge=1, description="PPO epochs per iteration")
    minibatches: int = Field(default=4, ge=1, description="minibatches per epoch")
    lr: float = Field(default=3e-4, gt=0, description="Adam learning rate")
    anneal_lr: bool = Field(default=True, description="linearly decay the learning rate to 0")
    gamma: float = Field(default=0.99, gt=0, le=1, description="discount")
    gae_lambda: float = Field(default=0.95, ge=0, le=1, description="GAE lambda (Schulman et al. 2016)")
    clip_coef: float = Field(default=0.2, gt=0, description="PPO ratio clip")
    ent_coef: float = Field(default=0.0, ge=0, description="entropy bonus")
    vf_coef: float = Field(default=0.5, ge=0, description="value loss weight")
    max_grad_norm: float = Field(default=0.5, gt=0, description="gradient clipping")
    hidden: list[int] = Field(default=[64, 64], min_length=1, description="hidden layer sizes (actor and critic)")
    log_std_init: float = Field(default=-0.5, description="initial log std of the Gaussian actor")
    norm_obs: bool = Field(default=True, description="running mean/std observation normalisation")
    norm_reward: bool = Field(default=True, description="scale rewards by the running std of the return")
    clip_obs: float = Field(default=10.0, gt=0, description="clip normalised observations")
    residual_scale: float = Field(default=1.0, gt=0, description="residual: max level adjustment, x throughput")
    base_policy: str = Field(
        default="base_stock",
        description="baseline and residual base: a tunable policy name (tuned), 'best' (best tuned), 'scenario'",
    )
    tune_episodes: int = Field(default=32, ge=1, description="episodes used to tune the baseline")
    tune_seconds: float = Field(default=20.0, gt=0, description="time budget of the baseline tuning")
    eval_every: int = Field(default=10, ge=1, description="evaluate every N iterations (and at the end)")
    eval_episodes: int = Field(default=32, ge=1, description="fixed demand paths per evaluation")
    final_episodes: int = Field(default=64, ge=1, description="fresh paths of the final evaluation table")
    eval_seed: int = Field(default=100_000, ge=0, description="seed of the fixed evaluation paths")
    checkpoint_every: int = Field(default=10, ge=1, description="checkpoint every N iterations")
    threads: int = Field(default=1, ge=1, description="torch.set_num_threads (determinism and sharing)")
    out: str | None = Field(default=None, description="output folder; None = runs/<scenario>-<algo>-seed<seed>")
    mlflow: bool = Field(default=True, description="log to MLflow (tracking_uri())")
    experiment: str = Field(default="invnet", description="MLflow experiment name")
    run_name: str | None = Field(default=None, description="MLflow run name")
    register_as: str | None = Field(default=None, description="register the pyfunc model under this name")

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.n_envs * self.n_steps < self.minibatches:
            raise ValueError("minibatches: more minibatches than transitions per iteration (n_envs x n_steps)")
        return self

    # ---- derived values (never written back) ----------------------------------------------
    @property
    def steps_per_iter(self) -> int:
        """Environment periods collected per iteration (all envs)."""
        return self.n_envs * self.n_steps

    @property
    def iterations(self) -> int:
        return max(1, math.ceil(self.steps / self.steps_per_iter))

    @property
    def total_steps(self) -> int:
        """Steps actually run (``steps`` rounded up to whole iterations)."""
        return self.iterations * self.steps_per_iter

    @property
    def out_dir(self) -> Path:
        """Output folder (checkpoints, bundles, plot, tables)."""
        if self.out:
            return Path(self.out)
        return Path("runs") / f"{Path(self.scenario).stem}-{self.algo}-seed{self.seed}"

    def resolved(self) -> dict[str, Any]:
        """The config plus its derived values, for logging."""
        return {
            **self.model_dump(),
            "derived": {
                "iterations": self.iterations,
                "steps_per_iter": self.steps_per_iter,
                "total_steps": self.total_steps,
                "out_dir": str(self.out_dir),
            },
        }


def _format_errors(e: ValidationError, source: str) -> str:
    parts = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "config"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = f"unknown field (known: {', '.join(sorted(TrainConfig.model_fields))})"
        parts.append(f"{loc}: {msg}")
    return f"{source}: " + "; ".join(parts)


def make_config(data: dict[str, Any], source: str = "config") -> TrainConfig:
    """Validate a dict into a :class:`TrainConfig`; :class:`TrainConfigError` names each bad field."""
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as e:
        raise TrainConfigError(_format_errors(e, source)) from None


def builtin_train_config_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "configs" / "train"


def load_train_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Load a YAML config (path or shipped name such as ``quickstart``) and apply ``overrides`` (None ignored)."""
    data: dict[str, Any] = {}
    source = "config"
    if path is not None:
        p = Path(path)
        if not p.exists() and not p.suffix:
            p = builtin_train_config_dir() / f"{path}.yaml"
        if not p.exists():
            raise TrainConfigError(f"config: file not found: {path}")
        source = str(p)
        try:
            loaded = yaml.safe_load(p.read_text())
        except yaml.YAMLError as e:
            raise TrainConfigError(f"{source}: not valid YAML ({e})") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise TrainConfigError(f"{source}: expected a mapping of config fields")
        data.update(loaded)
    for k, v in (overrides or {}).items():
        if v is not None:
            data[k] = v
    return make_config(data, source)
