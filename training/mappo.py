"""MAPPO: one shared Gaussian actor on per-agent observations, a centralised critic on the global state.

One readable loop in the style of CleanRL's ``ppo_continuous_action.py``; the library supplies the
env (:class:`~invnet.training.vecenv.InventoryVecEnv`), the networks, the normalisers and the session
(evaluation, checkpoints, MLflow). References: Yu et al. 2022 "The Surprising Effectiveness of PPO
in Cooperative Multi-Agent Games" (MAPPO); Schulman et al. 2017 (PPO clipped objective);
Schulman et al. 2016 (GAE).

Rows are (env b, agent i) pairs, ``R = B * N``. The critic sees the env's global state plus the
agent's one-hot id, so it works for team and local rewards alike. Every iteration starts by taking an
in-memory snapshot (networks, optimiser, RNG, normalisers, env state); checkpoints and Ctrl-C write
that snapshot, so a resumed run continues bit for bit like an uninterrupted one.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from invnet.training.config import TrainConfig
from invnet.training.networks import Actor, Critic
from invnet.training.normalize import ObsNormalizer, RewardScaler
from invnet.training.session import Session
from invnet.training.vecenv import InventoryVecEnv


def train_mappo(cfg: TrainConfig, session: Session, resume: dict[str, Any] | None = None) -> None:
    # ---- setup: determinism (same seed, same machine -> same curve) -------------------------------
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    torch.use_deterministic_algorithms(True)
    gen = torch.Generator().manual_seed(cfg.seed)  # action noise and minibatch order

    net, mapper = session.net, session.mapper
    B, N, T = cfg.n_envs, net.n_nodes, cfg.n_steps
    R = B * N
    envs = InventoryVecEnv(net, mapper, B, seed=cfg.seed, reward=cfg.reward)
    obs_dim, act_dim, state_dim = mapper.spaces.obs_dim, mapper.spaces.action_dim, mapper.spaces.state_dim

    actor = Actor(obs_dim, act_dim, cfg.hidden, cfg.log_std_init)
    actor.set_bias(mapper.init_bias())
    critic = Critic(state_dim + N, cfg.hidden)
    optimizer = torch.optim.Adam([*actor.parameters(), *critic.parameters()], lr=cfg.lr, eps=1e-5)
    obs_norm = ObsNormalizer(obs_dim, cfg.clip_obs, enabled=cfg.norm_obs)
    state_norm = ObsNormalizer(state_dim, cfg.clip_obs, enabled=cfg.norm_obs)
    rew_scale = RewardScaler(R, cfg.gamma, enabled=cfg.norm_reward)
    agent_id = np.tile(np.eye(N, dtype=np.float32), (B, 1))  # [R, N]
    last_ep = {"cost": float("nan"), "fill_rate": float("nan")}

    start = 0
    if resume is not None:
        actor.load_state_dict(resume["actor"])
        critic.load_state_dict(resume["critic"])
        optimizer.load_state_dict(resume["optimizer"])
        gen.set_state(resume["gen"])
        obs_norm.rms.load_state_dict(resume["obs_norm"])
        state_norm.rms.load_state_dict(resume["state_norm"])
        rew_scale.load_state_dict(resume["reward"])
        envs.set_state(resume["env"])
        next_obs = envs._obs
        last_ep = dict(resume["last_ep"])
        start = int(resume["iteration"])
    else:
        envs.seed(cfg.seed)
        next_obs = envs.reset()  # [R, obs_dim]

    def export() -> tuple[list[tuple[np.ndarray, np.ndarray]], dict[str, Any]]:
        return actor.export(), obs_norm.export()

    def snapshot(iteration: int) -> dict[str, Any]:
        return {
            "algo": "mappo",
            "config": cfg.model_dump(),
            "iteration": iteration,
            "actor": copy.deepcopy(actor.state_dict()),
            "critic": copy.deepcopy(critic.state_dict()),
            "optimizer": copy.deepcopy(optimizer.state_dict()),
            "gen": gen.get_state(),
            "obs_norm": obs_norm.rms.state_dict(),
            "state_norm": state_norm.rms.state_dict(),
            "reward": copy.deepcopy(rew_scale.state_dict()),
            "env": envs.get_state(),
            "last_ep": dict(last_ep),
            "session": session.state_dict(),
        }

    # rollout storage, [T, R, ...]
    obs_buf = torch.zeros(T, R, obs_dim)
    cin_buf = torch.zeros(T, R, state_dim + N)
    act_buf = torch.zeros(T, R, act_dim)
    logp_buf = torch.zeros(T, R)
    rew_buf = torch.zeros(T, R)
    done_buf = torch.zeros(T, R)  # 1 if the episode ended with this step
    val_buf = torch.zeros(T, R)

    def critic_input(update: bool) -> np.ndarray:
        s = state_norm(envs.global_state(), update=update)  # [B, S]
        return np.concatenate([np.repeat(s, N, axis=0), agent_id], axis=1)

    for iteration in range(start, cfg.iterations):
        snap = snapshot(iteration)
        session.pending_checkpoint = lambda snap=snap: snap
        if iteration > start and iteration % cfg.checkpoint_every == 0:
            session.save_checkpoint(snap)
        lr = cfg.lr * (1.0 - iteration / cfg.iterations) if cfg.anneal_lr else cfg.lr
        for g in optimizer.param_groups:
            g["lr"] = lr

        # ---- collect T periods from B envs ------------------------------------------------------
        ep_costs, ep_fill = [], []
        for t in range(T):
            o = torch.as_tensor(obs_norm(next_obs, update=True))
            c = torch.as_tensor(critic_input(update=True))
            with torch.no_grad():
                mean = actor(o)
                std = actor.log_std.exp().expand_as(mean)
                a = mean + std * torch.randn(mean.shape, generator=gen)
                logp = torch.distributions.Normal(mean, std).log_prob(a).sum(-1)
                v = critic(c)
            next_obs, r, d, infos = envs.step(a.numpy())
            obs_buf[t], cin_buf[t], act_buf[t], logp_buf[t], val_buf[t] = o, c, a, logp, v
            rew_buf[t] = torch.as_tensor(rew_scale(r, d))
            done_buf[t] = torch.as_tensor(d, dtype=torch.float32)
            if d[0]:
                ep_costs += [infos[b * N]["episode"]["cost"] for b in range(B)]
                ep_fill += [infos[b * N]["episode"]["fill_rate"] for b in range(B)]
        if ep_costs:
            last_ep = {"cost": float(np.mean(ep_costs)), "fill_rate": float(np.mean(ep_fill))}

        # ---- GAE(lambda); the horizon is a true terminal (no bootstrap past it) -------------------
        with torch.no_grad():
            next_v = critic(torch.as_tensor(critic_input(update=False)))
            adv = torch.zeros(T, R)
            last = torch.zeros(R)
            for t in reversed(range(T)):
                nonterminal = 1.0 - done_buf[t]
                nv = next_v if t == T - 1 else val_buf[t + 1]
                delta = rew_buf[t] + cfg.gamma * nv * nonterminal - val_buf[t]
                last = delta + cfg.gamma * cfg.gae_lambda * nonterminal * last
                adv[t] = last
            ret = adv + val_buf

        # ---- PPO update on T * R rows -----------------------------------------------------------
        b_obs, b_cin, b_act = obs_buf.reshape(T * R, -1), cin_buf.reshape(T * R, -1), act_buf.reshape(T * R, -1)
        b_logp, b_adv, b_ret, b_val = logp_buf.reshape(-1), adv.reshape(-1), ret.reshape(-1), val_buf.reshape(-1)
        mb = (T * R) // cfg.minibatches
        stats: dict[str, list[float]] = {
            "pg_loss": [],
            "value_loss": [],
            "entropy": [],
            "approx_kl": [],
            "clipfrac": [],
        }
        for _ in range(cfg.epochs):
            perm = torch.randperm(T * R, generator=gen)
            for k in range(cfg.minibatches):
                idx = perm[k * mb : (k + 1) * mb]
                dist = actor.dist(b_obs[idx])
                new_logp = dist.log_prob(b_act[idx]).sum(-1)
                entropy = dist.entropy().sum(-1).mean()
                log_ratio = new_logp - b_logp[idx]
                ratio = log_ratio.exp()
                with torch.no_grad():  # Schulman's k3 KL estimator (CleanRL)
                    stats["approx_kl"].append(float(((ratio - 1) - log_ratio).mean()))
                    stats["clipfrac"].append(float(((ratio - 1.0).abs() > cfg.clip_coef).float().mean()))
                a_mb = b_adv[idx]
                a_mb = (a_mb - a_mb.mean()) / (a_mb.std() + 1e-8)
                pg_loss = torch.max(-a_mb * ratio, -a_mb * ratio.clamp(1 - cfg.clip_coef, 1 + cfg.clip_coef)).mean()
                v_loss = 0.5 * ((critic(b_cin[idx]) - b_ret[idx]) ** 2).mean()
                loss = pg_loss - cfg.ent_coef * entropy + cfg.vf_coef * v_loss
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_([*actor.parameters(), *critic.parameters()], cfg.max_grad_norm)
                optimizer.step()
                stats["pg_loss"].append(pg_loss.item())
                stats["value_loss"].append(v_loss.item())
                stats["entropy"].append(entropy.item())

        var_y = float(b_ret.var())
        metrics = {k: float(np.mean(v)) for k, v in stats.items()}
        metrics.update(
            {
                "explained_variance": float("nan") if var_y == 0 else 1.0 - float((b_ret - b_val).var()) / var_y,
                "lr": lr,
                "action_std": actor.log_std.detach().exp().mean().item(),
                "reward_scale": rew_scale.scale,
                "train_episode_cost": last_ep["cost"],
                "train_fill_rate": last_ep["fill_rate"],
            }
        )
        session.end_iteration(iteration, (iteration + 1) * cfg.steps_per_iter, metrics, export)

    final = snapshot(cfg.iterations)
    session.pending_checkpoint = lambda: final
    session.save_checkpoint(final)
