"""IPPO with parameter sharing: stable-baselines3 PPO over :class:`~invnet.training.vecenv.InventoryVecEnv`.

Every (env, agent) row is one SB3 env, so SB3's single ``MlpPolicy`` is the shared actor (and a
decentralised critic on the agent's own observation). Observation and reward normalisation come
from SB3's ``VecNormalize``; its statistics are exported with the actor into the policy bundle.
A callback hands each iteration to the :class:`~invnet.training.session.Session` (evaluation,
best bundle, MLflow, progress) and snapshots the run for checkpoints and Ctrl-C (model, optimiser,
normaliser, env state and the torch / NumPy RNG states).
"""

from __future__ import annotations

import copy
import io
import random
from typing import Any

import numpy as np
import torch
from invnet.training.config import TrainConfig
from invnet.training.networks import sb3_actor_export
from invnet.training.session import Session
from invnet.training.vecenv import InventoryVecEnv
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecNormalize

SB3_METRICS = {
    "train/policy_gradient_loss": "pg_loss",
    "train/value_loss": "value_loss",
    "train/approx_kl": "approx_kl",
    "train/clip_fraction": "clipfrac",
    "train/explained_variance": "explained_variance",
    "train/std": "action_std",
    "train/learning_rate": "lr",
}


class _SessionCallback(BaseCallback):
    """Bridges SB3's loop to the session: one ``end_iteration`` per PPO update."""

    def __init__(self, cfg: TrainConfig, session: Session, envs: InventoryVecEnv, start: int, last_ep: dict) -> None:
        super().__init__()
        self.cfg, self.session, self.envs = cfg, session, envs
        self.iteration = start  # iteration whose rollout is being collected
        self.first = True
        self.last_ep = last_ep
        self._ep_costs: list[float] = []
        self._ep_fill: list[float] = []

    def _venv(self) -> VecNormalize:
        return self.model.get_env()  # type: ignore[return-value]

    def export(self) -> tuple[list[tuple[np.ndarray, np.ndarray]], dict[str, Any]]:
        v = self._venv()
        if v.norm_obs:
            norm = {"mean": v.obs_rms.mean.copy(), "var": v.obs_rms.var.copy(), "clip": v.clip_obs, "eps": v.epsilon}
        else:
            d = self.envs.observation_space.shape[0]
            norm = {"mean": np.zeros(d), "var": np.ones(d), "clip": float("inf"), "eps": 0.0}
        return sb3_actor_export(self.model.policy), norm

    def snapshot(self) -> dict[str, Any]:
        buf = io.BytesIO()
        self.model.save(buf)
        v = self._venv()
        return {
            "algo": "ippo",
            "config": self.cfg.model_dump(),
            "iteration": self.iteration,
            "model": buf.getvalue(),
            "vecnorm": copy.deepcopy({"obs_rms": v.obs_rms, "ret_rms": v.ret_rms, "returns": v.returns}),
            "env": self.envs.get_state(),
            "last_obs": copy.deepcopy(self.model._last_obs),
            "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
            "last_ep": dict(self.last_ep),
            "session": self.session.state_dict(),
        }

    def _report(self) -> None:
        vals = self.model.logger.name_to_value
        metrics = {name: float(vals[key]) for key, name in SB3_METRICS.items() if key in vals}
        if "train/entropy_loss" in vals:
            metrics["entropy"] = -float(vals["train/entropy_loss"])
        if self._ep_costs:
            self.last_ep = {"cost": float(np.mean(self._ep_costs)), "fill_rate": float(np.mean(self._ep_fill))}
            self._ep_costs, self._ep_fill = [], []
        metrics["train_episode_cost"] = self.last_ep["cost"]
        metrics["train_fill_rate"] = self.last_ep["fill_rate"]
        metrics["reward_scale"] = float(np.sqrt(self._venv().ret_rms.var.mean() + 1e-8))
        steps = (self.iteration + 1) * self.cfg.steps_per_iter
        self.session.end_iteration(self.iteration, steps, metrics, self.export)
        self.iteration += 1

    def _on_rollout_start(self) -> None:
        if not self.first:
            self._report()  # the previous iteration's update has just run
        self.first = False
        snap = self.snapshot()
        self.session.pending_checkpoint = lambda: snap
        if self.iteration % self.cfg.checkpoint_every == 0 and self.iteration > 0:
            self.session.save_checkpoint(snap)

    def _on_step(self) -> bool:
        dones = self.locals.get("dones")
        if dones is not None and dones[0]:
            N = self.envs.n_agents
            infos = self.locals["infos"]
            for b in range(self.envs.n_envs):
                ep = infos[b * N]["episode"]
                self._ep_costs.append(ep["cost"])
                self._ep_fill.append(ep["fill_rate"])
        return True

    def _on_training_end(self) -> None:
        self._report()


def train_ippo(cfg: TrainConfig, session: Session, resume: dict[str, Any] | None = None) -> None:
    torch.set_num_threads(cfg.threads)
    torch.use_deterministic_algorithms(True)
    net, mapper = session.net, session.mapper
    envs = InventoryVecEnv(net, mapper, cfg.n_envs, seed=cfg.seed, reward=cfg.reward)
    envs.seed(cfg.seed)
    venv = VecNormalize(
        envs, norm_obs=cfg.norm_obs, norm_reward=cfg.norm_reward, clip_obs=cfg.clip_obs, gamma=cfg.gamma
    )
    rows = envs.num_envs
    total_rows = cfg.total_steps * net.n_nodes
    lr = cfg.lr
    schedule = (lambda p: lr * p) if cfg.anneal_lr else lr
    last_ep = {"cost": float("nan"), "fill_rate": float("nan")}
    if resume is None:
        model = PPO(
            "MlpPolicy",
            venv,
            learning_rate=schedule,
            n_steps=cfg.n_steps,
            batch_size=max(1, rows * cfg.n_steps // cfg.minibatches),
            n_epochs=cfg.epochs,
            gamma=cfg.gamma,
            gae_lambda=cfg.gae_lambda,
            clip_range=cfg.clip_coef,
            ent_coef=cfg.ent_coef,
            vf_coef=cfg.vf_coef,
            max_grad_norm=cfg.max_grad_norm,
            policy_kwargs={
                "net_arch": {"pi": list(cfg.hidden), "vf": list(cfg.hidden)},
                "log_std_init": cfg.log_std_init,
            },
            seed=cfg.seed,
            device="cpu",
            verbose=0,
        )
        with torch.no_grad():
            model.policy.action_net.bias.copy_(torch.as_tensor(mapper.init_bias(), dtype=torch.float32))
        start, remaining, reset = 0, total_rows, True
    else:
        envs.set_state(resume["env"])
        vn = resume["vecnorm"]
        venv.obs_rms, venv.ret_rms, venv.returns = vn["obs_rms"], vn["ret_rms"], vn["returns"]
        model = PPO.load(io.BytesIO(resume["model"]), env=venv, device="cpu")
        model._last_obs = resume["last_obs"]
        model._last_episode_starts = np.zeros(rows, dtype=bool)
        rng = resume["rng"]
        torch.set_rng_state(rng["torch"])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])
        start = int(resume["iteration"])
        last_ep = dict(resume["last_ep"])
        remaining, reset = total_rows - model.num_timesteps, False
    cb = _SessionCallback(cfg, session, envs, start, last_ep)
    if remaining > 0:
        model.learn(remaining, callback=cb, log_interval=None, reset_num_timesteps=reset)
    final = cb.snapshot()
    session.pending_checkpoint = lambda: final
    session.save_checkpoint(final)
