"""SB3 VecEnv contract of InventoryVecEnv: shapes, auto-reset, terminal_observation, seeding, CRN, attrs."""

from __future__ import annotations

import numpy as np
import pytest
from invnet.agents.simple import OrderUpTo
from invnet.envs import BatchedInventoryEnv, compile_network, load_scenario, rollout
from invnet.training.actions import ActionMapper
from invnet.training.vecenv import InventoryVecEnv
from stable_baselines3.common.vec_env import VecEnv, VecNormalize


def _net(name: str = "two_stores", periods: int | None = None):
    sc = load_scenario(name, overrides={"periods": periods, "warmup": 2} if periods else None)
    return compile_network(sc)


def _env(net, B: int = 3, seed: int = 7, mode: str = "quantity", base=None) -> InventoryVecEnv:
    mapper = ActionMapper.build(net, mode, "neighbours", base)
    env = InventoryVecEnv(net, mapper, B, seed=seed)
    env.seed(seed)
    return env


def _actions(env: InventoryVecEnv, rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(-1, 1, (env.num_envs, env.action_space.shape[0])).astype(np.float32)


def test_shapes_and_spaces() -> None:
    net = _net()
    env = _env(net, B=3)
    assert isinstance(env, VecEnv)
    assert env.num_envs == 3 * net.n_nodes
    obs = env.reset()
    assert obs.shape == (env.num_envs, *env.observation_space.shape)
    assert obs.dtype == np.float32
    assert all(env.observation_space.contains(o) for o in obs)
    obs, rew, dones, infos = env.step(_actions(env, np.random.default_rng(0)))
    assert obs.shape == (env.num_envs, env.observation_space.shape[0])
    assert rew.shape == (env.num_envs,) and rew.dtype == np.float32
    assert dones.shape == (env.num_envs,) and dones.dtype == bool and not dones.any()
    assert isinstance(infos, list) and len(infos) == env.num_envs


def test_team_reward_is_minus_network_cost_for_every_agent_row() -> None:
    net = _net()
    env = _env(net, B=2)
    env.reset()
    _, rew, _, infos = env.step(_actions(env, np.random.default_rng(1)))
    N = net.n_nodes
    for b in range(2):
        rows = rew[b * N : (b + 1) * N]
        assert np.allclose(rows, rows[0])
        assert rows[0] == pytest.approx(-infos[b * N]["cost"], rel=1e-6)


def test_auto_reset_terminal_observation_and_equivalence_with_batched_env() -> None:
    net = _net(periods=6)
    B, seed = 2, 11
    env = _env(net, B=B, seed=seed)
    ref = BatchedInventoryEnv(net, B, seed=seed, visibility="neighbours", action_mode="quantity")
    obs = env.reset()
    ref_obs = ref.reset()
    assert np.array_equal(obs, ref_obs.reshape(obs.shape))
    rng = np.random.default_rng(3)
    for t in range(net.periods):
        a = _actions(env, rng)
        obs, rew, dones, infos = env.step(a)
        r_obs, r_rew, r_done, _ = ref.step(a.reshape(B, net.n_nodes, -1))
        assert np.allclose(rew, r_rew.reshape(-1))
        if t < net.periods - 1:
            assert not dones.any()
            assert np.array_equal(obs, r_obs.reshape(obs.shape))
            assert all("terminal_observation" not in i for i in infos)
        else:
            assert dones.all(), "every row is done at the horizon"
            term = np.stack([i["terminal_observation"] for i in infos])
            assert np.array_equal(term, r_obs.reshape(term.shape))
            fresh = ref.reset()  # the adapter reset itself: the next episode of the same seeds
            assert np.array_equal(obs, fresh.reshape(obs.shape))
            assert env.batched.state.t == 0
            assert all(i["episode"]["l"] == net.periods for i in infos)


def test_seed_reproduces_and_rows_follow_crn_seeding() -> None:
    net = _net("single_node", periods=8)
    a = _env(net, B=3, seed=5)
    b = _env(net, B=3, seed=5)
    single = _env(net, B=1, seed=6)  # row 1 of a batch seeded 5 == a single env seeded 6
    assert a.seed(5) == [5, 6, 7]
    a.reset(), b.reset(), single.reset()
    rng = np.random.default_rng(0)
    for _ in range(net.periods):
        act = _actions(a, rng)
        oa, ra, _, _ = a.step(act)
        ob, rb, _, _ = b.step(act)
        os_, rs, _, _ = single.step(act[1:2])
        assert np.array_equal(oa, ob) and np.array_equal(ra, rb)
        assert np.array_equal(oa[1:2], os_) and np.array_equal(ra[1:2], rs)


def test_episode_info_matches_rollout_of_the_same_policy() -> None:
    """Residual action 0 on orders and -1 on transfers is exactly the base policy: same costs as rollout."""
    net = _net()
    base = OrderUpTo(net)
    B, seed = 4, 21
    env = _env(net, B=B, seed=seed, mode="residual", base=base)
    env.reset()
    a = np.full((env.num_envs, env.action_space.shape[0]), -1.0, dtype=np.float32)
    a[:, 0] = 0.0  # one SKU: column 0 is the order adjustment
    for _ in range(net.periods):
        _, _, dones, infos = env.step(a)
    assert dones.all()
    got = np.array([infos[b * net.n_nodes]["episode"]["cost"] for b in range(B)])
    want = rollout(net, base, B, seed).cost_per_period()
    assert np.allclose(got, want)


def test_get_set_attr_env_method_and_wrapping() -> None:
    net = _net()
    env = _env(net, B=2)
    env.reset()
    assert env.get_attr("render_mode") == [None] * env.num_envs
    assert env.get_attr("batch_size", indices=[0, 3]) == [2, 2]
    assert env.env_method("info", indices=[1])[0]["t"] == 0
    assert env.env_is_wrapped(VecNormalize) == [False] * env.num_envs
    env.set_attr("reward_mode", "local")
    assert env.batched.reward_mode == "local"
    assert len(env.get_images()) == env.num_envs


def test_state_round_trip_resumes_identically() -> None:
    net = _net()
    env = _env(net, B=2)
    env.reset()
    rng = np.random.default_rng(0)
    env.step(_actions(env, rng))
    snap = env.get_state()
    acts = [_actions(env, rng) for _ in range(3)]
    first = [env.step(a)[1] for a in acts]
    env.set_state(snap)
    second = [env.step(a)[1] for a in acts]
    assert all(np.array_equal(x, y) for x, y in zip(first, second, strict=True))


def test_wraps_in_vecnormalize_and_sb3_ppo_runs() -> None:
    from stable_baselines3 import PPO

    net = _net("single_node", periods=10)
    env = _env(net, B=2)
    venv = VecNormalize(env)
    model = PPO("MlpPolicy", venv, n_steps=8, batch_size=8, n_epochs=1, seed=0, device="cpu")
    model.learn(32)
    assert model.num_timesteps == 32


@pytest.mark.parametrize("mode", ["quantity", "order_up_to"])
def test_action_mode_of_the_mapper_wins_over_the_scenarios(mode: str) -> None:
    """single_node's scenario says order_up_to; the adapter decodes with the mode it was built with."""
    net = _net("single_node", periods=5)
    env = _env(net, B=2, mode=mode)
    env.reset()
    state = env.batched.state
    a = np.full((env.num_envs, env.action_space.shape[0]), 0.5, dtype=np.float32)
    want = env.mapper.decode(a.reshape(2, 1, -1), state).orders  # [B, N, K]
    env.step(a)
    assert np.allclose(env.batched.state.pipeline[..., 0], want)  # lead time 2: arrives at the start of t + 2
