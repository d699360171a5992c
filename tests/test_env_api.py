"""API conformance of the PettingZoo, AEC and Gymnasium envs on every shipped scenario."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from invnet.envs import (
    ENV_ID,
    BatchedInventoryEnv,
    env,
    gym_env,
    list_builtin_scenarios,
    load_scenario,
    parallel_env,
)
from invnet.envs.inventory_network import INFO_KEYS
from pettingzoo.test import api_test, parallel_api_test, parallel_seed_test

SCENARIOS = list_builtin_scenarios()


def cycles(name: str) -> int:
    return 20 if name == "large_50" else 60


@pytest.mark.parametrize("name", SCENARIOS)
def test_parallel_api(name: str) -> None:
    parallel_api_test(parallel_env(load_scenario(name)), num_cycles=cycles(name))


@pytest.mark.parametrize("name", SCENARIOS)
def test_parallel_seed(name: str) -> None:
    sc = load_scenario(name)
    parallel_seed_test(lambda: parallel_env(sc), num_cycles=cycles(name) // 2)


@pytest.mark.parametrize("name", SCENARIOS)
def test_aec_api(name: str) -> None:
    api_test(env(load_scenario(name)), num_cycles=cycles(name) // 2)


@pytest.mark.parametrize("name", SCENARIOS)
def test_gymnasium_check_env(name: str) -> None:
    e = gym_env(load_scenario(name))
    check_env(e, skip_render_check=True)


@pytest.mark.parametrize("name", ["two_stores", "hub_spoke"])
@pytest.mark.parametrize("visibility", ["own", "neighbours", "all"])
@pytest.mark.parametrize("action_mode", ["quantity", "order_up_to"])
def test_options_keep_spaces_consistent(name: str, visibility: str, action_mode: str) -> None:
    e = parallel_env(load_scenario(name), visibility=visibility, action_mode=action_mode)
    obs, _ = e.reset(seed=1)
    for _ in range(5):
        for a in e.agents:
            assert e.observation_space(a).contains(obs[a]), (a, obs[a])
        acts = {a: e.action_space(a).sample() for a in e.agents}
        obs, *_ = e.step(acts)
    assert e.state().shape == e.state_space.shape


def test_env_card_and_metadata() -> None:
    e = parallel_env(load_scenario("hub_spoke"))
    assert e.metadata["name"] == ENV_ID == "inventory_network_v0"
    card = importlib.import_module(type(e).__module__).__doc__
    for section in ("What it models", "Event order", "Spaces", "Reward", "Infos"):
        assert section in card


def test_agents_are_node_ids_and_infos_carry_flows() -> None:
    sc = load_scenario("hub_spoke")
    e = parallel_env(sc)
    _, infos = e.reset(seed=0)
    assert e.agents == [n.id for n in sc.nodes] == e.possible_agents
    _, rew, term, trunc, infos = e.step({a: e.action_space(a).sample() for a in e.agents})
    for a in e.possible_agents:
        assert set(INFO_KEYS) <= set(infos[a])
        assert all(isinstance(v, float) for v in infos[a].values())
        cost = sum(infos[a][k] for k in ("holding_cost", "shortage_cost", "order_cost", "transfer_cost"))
        assert cost >= 0
    terms = ("holding_cost", "shortage_cost", "order_cost", "transfer_cost")
    team = -sum(sum(infos[a][k] for k in terms) for a in e.agents)
    assert all(r == pytest.approx(team) for r in rew.values())


def test_episode_truncates_at_horizon_and_step_after_end_fails() -> None:
    sc = load_scenario("two_stores")
    e = parallel_env(sc)
    e.reset(seed=0)
    for t in range(sc.periods):
        _, _, term, trunc, _ = e.step({a: e.action_space(a).sample() for a in e.agents})
        assert not any(term.values())
        assert all(trunc.values()) == (t == sc.periods - 1)
    assert e.agents == []
    with pytest.raises(RuntimeError, match="reset"):
        e.step({})


def test_bad_actions_name_the_problem() -> None:
    e = parallel_env(load_scenario("two_stores"))
    e.reset(seed=0)
    first, *rest = e.agents
    ok = {a: e.action_space(a).sample() for a in e.agents}
    with pytest.raises(ValueError, match="missing agent"):
        e.step({a: ok[a] for a in rest})
    with pytest.raises(ValueError, match="unknown agent"):
        e.step({**ok, "nope": ok[first]})
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        e.step({**ok, first: np.full_like(ok[first], 3.0)})
    with pytest.raises(ValueError, match="NaN"):
        e.step({**ok, first: np.full_like(ok[first], np.nan)})


def test_batched_env_rejects_bad_options_and_quantities() -> None:
    sc = load_scenario("two_stores")
    with pytest.raises(ValueError, match="batch_size"):
        BatchedInventoryEnv(sc, 0)
    with pytest.raises(ValueError, match="reward"):
        BatchedInventoryEnv(sc, 1, reward="selfish")
    be = BatchedInventoryEnv(sc, 2, seed=0)
    with pytest.raises(RuntimeError, match="reset"):
        be.step(np.zeros((2, be.n_agents, be.spaces.action_dim)))
    be.reset()
    from invnet.envs.core import Action

    bad = Action(orders=-np.ones((2, be.net.n_nodes, 1)), transfers=np.zeros((2, be.net.n_lanes, 1)))
    with pytest.raises(ValueError, match="action.orders"):
        be.step_quantities(bad)
    with pytest.raises(ValueError, match="action.transfers: expected shape"):
        be.step_quantities(Action(orders=np.zeros((2, be.net.n_nodes, 1)), transfers=np.zeros((2, 99, 1))))


def test_render_ansi() -> None:
    e = parallel_env(load_scenario("two_stores"), render_mode="ansi")
    e.reset(seed=0)
    text = e.render()
    assert text.startswith("t=0") and all(a in text for a in e.agents)


def test_gym_wrapper_reward_is_minus_network_cost() -> None:
    e = gym_env(load_scenario("hub_spoke"))
    obs, _ = e.reset(seed=3)
    assert e.observation_space.contains(obs)
    obs, r, term, trunc, info = e.step(e.action_space.sample())
    cost = sum(info[k] for k in ("holding_cost", "shortage_cost", "order_cost", "transfer_cost"))
    assert r == pytest.approx(-cost) and not term


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("name", ["network_10", "launch_surge"])
def test_batched_reset_observation_and_lead_times(name: str, backend: str) -> None:
    """A reset's observation (one row observed and repeated) is the observation of every row of the initial
    state; fixed lead times are one array reused across episodes, never an exogenous assigned from outside."""
    env = BatchedInventoryEnv(load_scenario(name), 9, seed=2, backend=backend)
    obs = env.reset()
    np.testing.assert_array_equal(obs, env.spaces.observe(env.state))
    first = env.exo
    fixed = env.net.fixed_lead_times
    env.exo = type(first)(demand=first.demand, lead_time=first.lead_time + 7)  # assigned from outside
    env.reset()
    expected = np.broadcast_to(env.net.lt_values[:, 0], first.lead_time.shape)
    if fixed:
        assert env.exo.lead_time is first.lead_time
        np.testing.assert_array_equal(env.exo.lead_time, expected)
    else:
        assert env.exo.lead_time is not first.lead_time
        assert not np.array_equal(env.exo.lead_time, first.lead_time + 7)
