"""Property-based invariants on random small scenarios and random actions (hypothesis).

Conservation of units, nothing negative, reward = minus the cost terms, observations inside their
spaces, determinism, batched row b == single env seeded seed + b, PettingZoo env == batched env.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from invnet.envs import BatchedInventoryEnv, compile_network, parallel_env, parse_scenario
from invnet.envs.core import Action, StepOutput
from invnet.envs.inventory_network import INFO_KEYS
from invnet.envs.network import Network

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    """A random valid scenario: a forest of upstream sources, lateral lanes, capacities, disruptions."""
    n = draw(st.integers(1, 4))
    skus = ["a", "b"][: draw(st.integers(1, 2))]
    periods = draw(st.integers(3, 7))
    ids = [f"n{i}" for i in range(n)]
    nodes, lanes, demand = [], [], {}
    pairs: set[tuple[str, str]] = set()
    for i, nid in enumerate(ids):
        init = draw(st.sampled_from([0.0, 3.0, 10.0, 25.0]))
        node: dict[str, Any] = {
            "id": nid,
            "holding_cost": draw(st.sampled_from([0.0, 0.5, 2.0])),
            "initial_stock": init,
        }
        if draw(st.booleans()):
            node["capacity"] = init * len(skus) + draw(st.sampled_from([1.0, 10.0, 40.0]))
        if i > 0 and draw(st.booleans()):  # fed by an earlier node: no cycles by construction
            src = ids[draw(st.integers(0, i - 1))]
            node["source"] = src
            lanes.append({"from": src, "to": nid, "lead_time": draw(st.integers(0, 2))})
            pairs.add((src, nid))
        elif draw(st.booleans()):
            node["lead_time"] = draw(st.integers(0, 3))
        else:
            node["lead_time"] = {"values": [0, 1, 3], "probs": [0.2, 0.5, 0.3]}
        nodes.append(node)
        dist = draw(st.sampled_from(["poisson", "negative_binomial", "normal"]))
        spec: dict[str, Any] = {"dist": dist, "mean": draw(st.sampled_from([0.0, 2.0, 6.0]))}
        if dist == "negative_binomial":
            spec = {"dist": dist, "mean": 6.0, "cv": 0.8}
        elif dist == "normal":
            spec["std"] = 2.0
            spec["round"] = draw(st.booleans())
        demand[nid] = spec
    for a in ids:
        for b in ids:
            if a != b and (a, b) not in pairs and draw(st.integers(0, 2)) == 0:
                lane = {
                    "from": a,
                    "to": b,
                    "lead_time": draw(st.integers(0, 2)),
                    "unit_cost": draw(st.sampled_from([0.0, 0.3])),
                    "fixed_cost": draw(st.sampled_from([0.0, 2.0])),
                }
                if draw(st.booleans()):
                    lane["capacity"] = draw(st.sampled_from([1.0, 5.0]))
                lanes.append(lane)
                pairs.add((a, b))
    data: dict[str, Any] = {
        "name": "random",
        "periods": periods,
        "shortage": draw(st.sampled_from(["lost_sales", "backorder"])),
        "skus": skus,
        "nodes": nodes,
        "lanes": lanes,
        "demand": {**demand, "correlation": draw(st.sampled_from([0.0, 0.0, 0.5]))},
        "costs": {
            "shortage_penalty": draw(st.sampled_from([1.0, 9.0])),
            "order_fixed": draw(st.sampled_from([0.0, 3.0])),
            "order_unit": draw(st.sampled_from([0.0, 0.5])),
            "pipeline_holding": draw(st.booleans()),
            "supplier_holding_cost": 0.25,
        },
        "agents": {
            "visibility": draw(st.sampled_from(["own", "neighbours", "all"])),
            "action_mode": draw(st.sampled_from(["quantity", "order_up_to"])),
        },
    }
    if draw(st.booleans()):
        data["disruptions"] = [{"node": draw(st.sampled_from(ids)), "start": 1, "duration": draw(st.integers(1, 3))}]
    return data


def random_action(net: Network, rng: np.random.Generator, batch: int) -> Action:
    """Random quantities, often zero, sometimes far above what is on hand."""
    shape_o, shape_t = (batch, net.n_nodes, net.n_skus), (batch, net.n_lanes, net.n_skus)
    orders = rng.choice([0.0, 1.0, 4.0, 30.0], size=shape_o) * rng.random(shape_o)
    transfers = rng.choice([0.0, 2.0, 20.0], size=shape_t) * rng.random(shape_t)
    return Action(orders=orders, transfers=transfers)


def run_quantities(net: Network, seed: int, batch: int, action_seed: int) -> list[tuple[Any, StepOutput, Any]]:
    env = BatchedInventoryEnv(net, batch, seed=seed)
    env.reset(observe=False)
    rng = np.random.default_rng(action_seed)
    steps = []
    while not env.done:
        before = env.state
        _, rewards, _, out = env.step_quantities(random_action(net, rng, batch), observe=False)
        steps.append((before, out, rewards))
    return steps


@SETTINGS
@given(data=scenarios(), seed=st.integers(0, 2**20), action_seed=st.integers(0, 1000))
def test_conservation_nonnegativity_and_reward(data: dict[str, Any], seed: int, action_seed: int) -> None:
    net = compile_network(parse_scenario(data))
    for before, out, rewards in run_quantities(net, seed, 2, action_seed):
        start = before.on_hand.sum(axis=(1, 2)) + before.pipeline.sum(axis=(1, 2, 3))  # [B]
        end = out.on_hand.sum(axis=(1, 2)) + out.in_transit.sum(axis=(1, 2))
        flow = out.supplier_in.sum(axis=(1, 2)) - out.sales.sum(axis=(1, 2))
        np.testing.assert_allclose(start + flow, end, atol=1e-7)
        for f in fields(out):
            assert np.all(getattr(out, f.name) >= -1e-9), f.name
        assert np.all(out.sales <= out.demand + before.backlog + 1e-9)
        assert np.all(out.lane_flow.sum(axis=2) <= net.lane_cap[None] + 1e-9)
        if net.backorder:
            assert np.all(out.lost_sales == 0)
        else:
            assert np.all(out.backlog == 0)
            np.testing.assert_allclose(out.sales + out.lost_sales, out.demand, atol=1e-9)
        # team reward: every agent gets minus the network's cost (the sum of the four terms)
        terms = out.holding_cost + out.shortage_cost + out.order_cost + out.transfer_cost
        np.testing.assert_allclose(rewards, -terms.sum(axis=1, keepdims=True) * np.ones((1, net.n_nodes)))


@SETTINGS
@given(data=scenarios(), seed=st.integers(0, 2**20))
def test_receiver_capacity_never_exceeded(data: dict[str, Any], seed: int) -> None:
    net = compile_network(parse_scenario(data))
    for _, out, _ in run_quantities(net, seed, 1, seed):
        held = out.on_hand.sum(axis=2) + out.in_transit.sum(axis=2)  # [B, N]
        # arrivals only come from asks accepted within capacity; initial stock <= capacity
        assert np.all(held <= net.capacity[None] + 1e-7)


@SETTINGS
@given(data=scenarios(), seed=st.integers(0, 2**20), action_seed=st.integers(0, 1000))
def test_same_seed_same_trajectory(data: dict[str, Any], seed: int, action_seed: int) -> None:
    net = compile_network(parse_scenario(data))
    a = run_quantities(net, seed, 2, action_seed)
    b = run_quantities(net, seed, 2, action_seed)
    for (_, oa, ra), (_, ob, rb) in zip(a, b, strict=True):
        for f in fields(oa):
            np.testing.assert_array_equal(getattr(oa, f.name), getattr(ob, f.name))
        np.testing.assert_array_equal(ra, rb)


@SETTINGS
@given(data=scenarios(), seed=st.integers(0, 2**20), action_seed=st.integers(0, 1000))
def test_batched_row_equals_single_env_seeded_seed_plus_b(data: dict[str, Any], seed: int, action_seed: int) -> None:
    net = compile_network(parse_scenario(data))
    B = 3
    rng = np.random.default_rng(action_seed)
    actions = [random_action(net, rng, B) for _ in range(net.periods)]
    big = BatchedInventoryEnv(net, B, seed=seed)
    obs_big = [big.reset()]
    outs_big = []
    for a in actions:
        obs, _, _, out = big.step_quantities(a)
        obs_big.append(obs)
        outs_big.append(out)
    for b in range(B):
        one = BatchedInventoryEnv(net, 1, seed=seed + b)
        np.testing.assert_array_equal(one.reset()[0], obs_big[0][b])
        for t, a in enumerate(actions):
            row = Action(orders=a.orders[b : b + 1], transfers=a.transfers[b : b + 1])
            obs, _, _, out = one.step_quantities(row)
            np.testing.assert_allclose(obs[0], obs_big[t + 1][b], rtol=1e-6, atol=1e-6)
            for f in fields(out):
                np.testing.assert_allclose(getattr(out, f.name)[0], getattr(outs_big[t], f.name)[b], atol=1e-9)


@SETTINGS
@given(data=scenarios(), seed=st.integers(0, 2**20), action_seed=st.integers(0, 1000))
def test_pettingzoo_env_equals_batched_env(data: dict[str, Any], seed: int, action_seed: int) -> None:
    sc = parse_scenario(data)
    pz = parallel_env(sc)
    be = BatchedInventoryEnv(sc, 1, seed=seed)
    obs_pz, _ = pz.reset(seed=seed)
    obs_be = be.reset()
    rng = np.random.default_rng(action_seed)
    names = pz.possible_agents
    while pz.agents:
        for i, n in enumerate(names):
            np.testing.assert_array_equal(obs_pz[n], obs_be[0, i])
            assert pz.observation_space(n).contains(obs_pz[n]), (n, obs_pz[n])
        np.testing.assert_array_equal(pz.state(), be.global_state()[0])
        assert pz.state_space.contains(pz.state())
        acts = rng.uniform(-1.0, 1.0, (1, len(names), be.spaces.action_dim)).astype(np.float32)
        obs_pz, rew, _, trunc, infos = pz.step({n: acts[0, i] for i, n in enumerate(names)})
        obs_be, rewards, done, out = be.step(acts.astype(float))
        assert all(v == done for v in trunc.values())
        for i, n in enumerate(names):
            assert rew[n] == rewards[0, i]
            for key in INFO_KEYS:
                assert infos[n][key] == float(getattr(out, key)[0, i].sum()), key
    assert be.done


@SETTINGS
@given(data=scenarios(), seed=st.integers(0, 2**20))
def test_infos_audit_conservation_from_outside(data: dict[str, Any], seed: int) -> None:
    """Sum of infos over agents: on_hand + in_transit changes by supplier_in - sales every period."""
    sc = parse_scenario(data)
    pz = parallel_env(sc)
    pz.reset(seed=seed)
    be = pz.batched
    rng = np.random.default_rng(seed)
    prev = float(be.state.on_hand.sum() + be.state.pipeline.sum())
    while pz.agents:
        _, _, _, _, infos = pz.step({a: rng.uniform(-1, 1, pz.action_space(a).shape) for a in pz.agents})
        tot = {k: sum(infos[a][k] for a in pz.possible_agents) for k in INFO_KEYS}
        now = tot["on_hand"] + tot["in_transit"]
        assert abs(prev + tot["supplier_in"] - tot["sales"] - now) < 1e-6
        prev = now
