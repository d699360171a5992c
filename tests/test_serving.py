"""Policy server (issue 6): status codes per route, recommendations equal the policy's own ``act``,
unit conservation of the transfers it returns, settings, metrics, and a fuzz of the request body."""

from __future__ import annotations

import copy
import json
import threading
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from invnet.agents.registry import make_policy
from invnet.agents.simple import OrderUpTo
from invnet.envs.core import Action, State
from invnet.envs.network import Network, compile_network
from invnet.envs.scenario import load_scenario, parse_scenario
from invnet.serving.app import create_app
from invnet.serving.service import LoadedPolicy, load_policy, wrap_policy
from invnet.serving.settings import ServingSettings, load_settings, settings_error_message
from pydantic import ValidationError

KEY = "test-key-0123456789"
ADMIN = {"X-API-Key": KEY}


class GreedyTransfers:
    """Test stand-in: order-up-to orders, and on every lane asks 3x the sender's on-hand (so asks exceed
    both the sender's stock and the lane capacity, and the core must ration them). Deterministic."""

    name = "test_greedy_transfers"

    def __init__(self, net: Network, factor: float = 3.0) -> None:
        self.net = net
        self.factor = factor
        self.base = OrderUpTo(net)

    def act(self, state: State) -> Action:
        orders = self.base.act(state).orders
        transfers = self.factor * state.on_hand[:, self.net.lane_from, :]  # [B, E, K]
        return Action(orders=orders, transfers=transfers)

    def params(self) -> dict[str, Any]:
        return {"factor": self.factor}


def _settings(**kw: Any) -> ServingSettings:
    base = {"scenario": "network_10", "policy": GreedyTransfers.name, "api_key": KEY, "gc_freeze": False}
    return ServingSettings(**{**base, **kw})


def _greedy(net: Network) -> LoadedPolicy:
    """The stand-in served without registering it (the registry is shared by the whole test session)."""
    return wrap_policy(GreedyTransfers(net), GreedyTransfers.name)


def _app(**kw: Any) -> FastAPI:
    """An app for ``_settings(**kw)``; the default policy is the greedy stand-in, preloaded."""
    s = _settings(**kw)
    if s.policy != GreedyTransfers.name:
        return create_app(s)
    return create_app(s, preloaded=_greedy(_net(s.scenario)))


@pytest.fixture(scope="module")
def client() -> TestClient:
    with TestClient(_app()) as c:
        yield c


@pytest.fixture(scope="module")
def example(client: TestClient) -> dict[str, Any]:
    r = client.get("/v1/example-state")
    assert r.status_code == 200
    return r.json()


def _net(name: str = "network_10") -> Network:
    return compile_network(load_scenario(name))


def _state_from_body(net: Network, body: dict[str, Any]) -> State:
    """Independent conversion of a request body to a core State (single SKU, full rows), for checks."""
    N, K, P = net.n_nodes, net.n_skus, net.pipeline_len
    H = net.scenario.agents.demand_history
    idx = {n: i for i, n in enumerate(net.node_ids)}
    on_hand, backlog, pipe, hist = (
        np.zeros((1, N, K)),
        np.zeros((1, N, K)),
        np.zeros((1, N, K, P)),
        np.zeros((1, N, K, H)),
    )
    for e in body["nodes"]:
        i, k = idx[e["node"]], net.skus.index(e.get("sku") or net.skus[0])
        on_hand[0, i, k] = e["on_hand"]
        backlog[0, i, k] = e.get("backlog", 0.0)
        pipe[0, i, k] = e["in_transit"]
        hist[0, i, k] = e["recent_demand"][-H:]
    return State(body["t"], on_hand, backlog, pipe, np.zeros_like(pipe), np.zeros_like(on_hand), hist)


# ---- 200 paths --------------------------------------------------------------------------------


def test_health_ready_policies_page_and_docs(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["policy"] == GreedyTransfers.name
    info = client.get("/v1/policies").json()
    assert info["name"] == GreedyTransfers.name and info["scenario"] == "network_10"
    assert info["network"]["pipeline_length"] == 3 and len(info["network"]["nodes"]) == 10
    assert info["reference_policy"] == "base_stock"
    assert len(info["version"]) == 12
    page = client.get("/")
    assert page.status_code == 200 and "<title>invnet" in page.text and "https://" not in page.text
    for asset in ("/static/app.js", "/static/style.css"):
        a = client.get(asset)
        assert a.status_code == 200 and "https://" not in a.text  # self-contained: no CDN
    spec = client.get("/openapi.json").json()
    assert {"/v1/recommendations", "/v1/recommendations:batch", "/v1/policies", "/v1/policies/reload"} <= set(
        spec["paths"]
    )
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "/static-docs/swagger-ui-bundle.js" in docs.text  # self-hosted, no CDN
    assert client.get("/static-docs/swagger-ui-bundle.js").status_code == 200


def test_example_state_is_valid_and_answered(client: TestClient, example: dict[str, Any]) -> None:
    assert {e["node"] for e in example["nodes"]} == set(_net().node_ids)
    r = client.post("/v1/recommendations", json=example)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["policy"]["name"] == GreedyTransfers.name and body["scenario"] == "network_10"
    assert len(body["nodes"]) == 10 and body["t"] == example["t"]
    assert all(t["quantity"] > 0 for t in body["transfers"])
    assert body["warnings"], "greedy asks exceed stock: the rationing must be reported"


def test_recommendations_equal_policy_act(client: TestClient, example: dict[str, Any]) -> None:
    """Orders are the policy's own act on the same state; transfers are its asks made feasible by the core."""
    from invnet.envs.core import Exogenous, step

    net = _net()
    pol = GreedyTransfers(net)
    state = _state_from_body(net, example)
    a = pol.act(state)
    ref = make_policy("base_stock", net).act(state)
    body = client.post("/v1/recommendations", json=example).json()
    got_orders = np.array([n["order"] for n in body["nodes"]])
    np.testing.assert_allclose(got_orders, a.orders[0, :, 0], atol=1e-8)
    np.testing.assert_allclose([n["reference_order"] for n in body["nodes"]], ref.orders[0, :, 0], atol=1e-8)
    # feasible transfers: the core's own rationing of the same action (zero demand)
    exo = Exogenous(
        np.zeros((1, net.periods, net.n_nodes, 1)), np.broadcast_to(net.lt_values[:, 0], (1, net.periods, 10))
    )
    out = step(net, state, a, exo)[1]
    lanes = {
        (net.node_ids[f], net.node_ids[t]): e for e, (f, t) in enumerate(zip(net.lane_from, net.lane_to, strict=True))
    }
    got = np.zeros(net.n_lanes)
    for tr in body["transfers"]:
        e = lanes[(tr["from"], tr["to"])]
        got[e] = tr["quantity"]
        assert tr["requested"] == pytest.approx(a.transfers[0, e, 0])
    np.testing.assert_allclose(got, out.lane_shipped[0, :, 0], atol=1e-8)


def test_policy_without_rationing_returns_its_transfers_unchanged(example: dict[str, Any]) -> None:
    """A real transfer baseline (base_stock+tie) on a state where all asks are feasible: response == act."""
    net = _net("hub_spoke")
    with TestClient(_app(scenario="hub_spoke", policy="base_stock+tie")) as c:
        ex = c.get("/v1/example-state").json()
        # make stores unbalanced so TIE moves stock
        for e in ex["nodes"]:
            e["on_hand"] = {"store_north": 120.0, "store_south": 2.0}.get(e["node"], e["on_hand"])
        body = c.post("/v1/recommendations", json=ex).json()
    a = make_policy("base_stock+tie", net).act(_state_from_body(net, ex))
    got = {(t["from"], t["to"]): t["quantity"] for t in body["transfers"]}
    want = {
        (net.node_ids[f], net.node_ids[t]): q
        for f, t, q in zip(net.lane_from, net.lane_to, a.transfers[0, :, 0], strict=True)
        if q > 1e-9
    }
    assert want, "the state should make TIE transfer"
    assert got.keys() == want.keys()
    for k, q in want.items():
        assert got[k] == pytest.approx(q)
    np.testing.assert_allclose([n["order"] for n in body["nodes"]], a.orders[0, :, 0], atol=1e-8)


def test_inventory_position_after_and_days_of_supply(client: TestClient, example: dict[str, Any]) -> None:
    net = _net()
    body = client.post("/v1/recommendations", json=example).json()
    rows = {n["node"]: n for n in body["nodes"]}
    state = _state_from_body(net, example)
    ip = state.inventory_position[0, :, 0]
    # network-wide: only supplier orders enter the network; transfers and upstream shipments move units
    supplier_in = sum(rows[n]["order_shippable"] for i, n in enumerate(net.node_ids) if net.is_supplier_fed[i])
    assert sum(r["inventory_position_after"] for r in rows.values()) == pytest.approx(ip.sum() + supplier_in)
    # a store's days of supply = on-hand after the action / its forecast per period
    s = next(e for e in example["nodes"] if e["node"] == "s1_0")
    assert rows["s1_0"]["days_of_supply"] == pytest.approx(rows["s1_0"]["on_hand_after"] / s["forecast"])
    # a DC sees no own demand: its cover is measured against the demand of the stores it supplies
    dc_rate = net.mean_demand.mean(axis=0)[[i for i in range(10) if net.source_node[i] == 0], 0].sum()
    assert rows["dc0"]["days_of_supply"] == pytest.approx(rows["dc0"]["on_hand_after"] / dc_rate)


def _assert_conserving(net: Network, body: dict[str, Any], req: dict[str, Any]) -> None:
    """No sender ships more than its on-hand; no lane carries more than its capacity."""
    on_hand = {e["node"]: e["on_hand"] for e in req["nodes"]}
    out = dict.fromkeys(net.node_ids, 0.0)
    lane_load: dict[tuple[str, str], float] = {}
    for t in body["transfers"]:
        assert 0 < t["quantity"] <= t["requested"] + 1e-9
        out[t["from"]] += t["quantity"]
        lane_load[(t["from"], t["to"])] = lane_load.get((t["from"], t["to"]), 0.0) + t["quantity"]
    for n in body["nodes"]:
        assert 0 <= n["order_shippable"] <= n["order"] + 1e-9
        i = net.node_ids.index(n["node"])
        up = int(net.source_node[i])
        if up >= 0:  # an upstream shipment leaves the source node and rides the source lane
            out[net.node_ids[up]] += n["order_shippable"]
            key = (net.node_ids[up], n["node"])
            lane_load[key] = lane_load.get(key, 0.0) + n["order_shippable"]
    for node, q in out.items():
        assert q <= on_hand[node] + 1e-6, f"{node} ships {q} > on-hand {on_hand[node]}"
    caps = {
        (net.node_ids[f], net.node_ids[t]): c for f, t, c in zip(net.lane_from, net.lane_to, net.lane_cap, strict=True)
    }
    for lane, q in lane_load.items():
        assert q <= caps[lane] + 1e-6, f"lane {lane} carries {q} > capacity {caps[lane]}"


def test_transfers_conserve_units_on_example(client: TestClient, example: dict[str, Any]) -> None:
    body = client.post("/v1/recommendations", json=example).json()
    _assert_conserving(_net(), body, example)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    stock=st.lists(st.floats(0, 400, allow_nan=False, allow_subnormal=False), min_size=10, max_size=10),
    t=st.integers(0, 51),
)
def test_transfers_conserve_units_property(
    client: TestClient, example: dict[str, Any], stock: list[float], t: int
) -> None:
    req = copy.deepcopy(example)
    req["t"] = t
    for e, s in zip(req["nodes"], stock, strict=True):
        e["on_hand"] = s
    r = client.post("/v1/recommendations", json=req)
    assert r.status_code == 200, r.text
    _assert_conserving(_net(), r.json(), req)


def test_batch_equals_single_requests(client: TestClient, example: dict[str, Any]) -> None:
    states = [copy.deepcopy(example) for _ in range(3)]
    states[1]["t"] = 3
    states[2]["nodes"][1]["on_hand"] = 0.0
    for path in ("/v1/recommendations:batch", "/v1/recommendations/batch"):
        r = client.post(path, json={"states": states})
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert len(results) == 3
        for s, got in zip(states, results, strict=True):
            assert got == client.post("/v1/recommendations", json=s).json()


def test_multi_sku_network() -> None:
    data = {
        "name": "two_sku",
        "periods": 10,
        "skus": ["red", "blue"],
        "nodes": [
            {"id": "a", "source": "supplier", "lead_time": 1, "initial_stock": 20, "holding_cost": 1},
            {"id": "b", "source": "supplier", "lead_time": 2, "initial_stock": 20, "holding_cost": 1},
        ],
        "lanes": [{"from": "a", "to": "b", "lead_time": 0, "capacity": 15}],
        "demand": {"a": {"red": {"mean": 3}, "blue": {"mean": 5}}, "b": {"red": {"mean": 4}, "blue": {"mean": 1}}},
    }
    net = compile_network(parse_scenario(data))
    lp = _greedy(net)
    with TestClient(create_app(_settings(scenario="unused"), preloaded=lp)) as c:  # preloaded: any network
        ex = c.get("/v1/example-state").json()
        assert len(ex["nodes"]) == 4 and len(ex["nodes"][0]["in_transit"]) == 2
        body = c.post("/v1/recommendations", json=ex).json()
        assert {(n["node"], n["sku"]) for n in body["nodes"]} == {(a, s) for a in "ab" for s in ("red", "blue")}
        _assert_conserving_multi = sum(t["quantity"] for t in body["transfers"])
        assert _assert_conserving_multi <= 15 + 1e-9  # one lane, capacity shared by the SKUs
        for t in body["transfers"]:
            sent = next(e for e in ex["nodes"] if e["node"] == t["from"] and e["sku"] == t["sku"])
            assert t["quantity"] <= sent["on_hand"] + 1e-9
        bad = copy.deepcopy(ex)
        del bad["nodes"][0]["sku"]
        bad["nodes"][1]["sku"] = "green"
        r = c.post("/v1/recommendations", json=bad)
        assert r.status_code == 422
        msgs = {tuple(d["loc"]): d["msg"] for d in r.json()["detail"]}
        assert "required" in msgs[("body", "nodes", 0, "sku")]
        assert "unknown SKU 'green'" in msgs[("body", "nodes", 1, "sku")]


# ---- 422 paths ----------------------------------------------------------------------------------


def _mutate(example: dict[str, Any], fn: Any) -> dict[str, Any]:
    body = copy.deepcopy(example)
    fn(body)
    return body


BAD_BODIES = [
    ("negative on_hand", lambda b: b["nodes"][0].update(on_hand=-1), ("body", "nodes", 0, "on_hand"), "greater than"),
    ("string quantity", lambda b: b["nodes"][2].update(on_hand="5"), ("body", "nodes", 2, "on_hand"), "valid number"),
    ("bool quantity", lambda b: b["nodes"][2].update(backlog=True), ("body", "nodes", 2, "backlog"), "valid number"),
    ("too large", lambda b: b["nodes"][2].update(on_hand=1e300), ("body", "nodes", 2, "on_hand"), "less than"),
    (
        "negative pipeline",
        lambda b: b["nodes"][1]["in_transit"].__setitem__(0, -3),
        ("body", "nodes", 1, "in_transit", 0),
        "",
    ),
    (
        "pipeline length",
        lambda b: b["nodes"][1].update(in_transit=[1, 2]),
        ("body", "nodes", 1, "in_transit"),
        "expected 3",
    ),
    ("unknown node", lambda b: b["nodes"][3].update(node="mars"), ("body", "nodes", 3, "node"), "unknown node 'mars'"),
    ("unknown sku", lambda b: b["nodes"][3].update(sku="socks"), ("body", "nodes", 3, "sku"), "unknown SKU 'socks'"),
    ("missing node", lambda b: b["nodes"].pop(4), ("body", "nodes"), "missing node(s): s0_3"),
    ("duplicate node", lambda b: b["nodes"].append(copy.deepcopy(b["nodes"][0])), ("body", "nodes", 10), "duplicate"),
    ("t beyond horizon", lambda b: b.update(t=52), ("body", "t"), "must be < 52"),
    ("negative t", lambda b: b.update(t=-1), ("body", "t"), "greater than"),
    ("t as float", lambda b: b.update(t=1.5), ("body", "t"), "valid integer"),
    ("unknown field", lambda b: b["nodes"][0].update(onhand=3), ("body", "nodes", 0, "onhand"), "not permitted"),
    (
        "backlog under lost sales",
        lambda b: b["nodes"][5].update(backlog=2),
        ("body", "nodes", 5, "backlog"),
        "lost sales",
    ),
    ("nodes not a list", lambda b: b.update(nodes={"dc0": 1}), ("body", "nodes"), "valid array"),
    ("missing on_hand", lambda b: b["nodes"][0].pop("on_hand"), ("body", "nodes", 0, "on_hand"), "required"),
    (
        "empty recent demand",
        lambda b: b["nodes"][0].update(recent_demand=[]),
        ("body", "nodes", 0, "recent_demand"),
        "",
    ),
]


@pytest.mark.parametrize("case", BAD_BODIES, ids=[c[0] for c in BAD_BODIES])
def test_bad_state_is_422_naming_the_field(client: TestClient, example: dict[str, Any], case: Any) -> None:
    _, fn, loc, msg = case
    r = client.post("/v1/recommendations", json=_mutate(example, fn))
    assert r.status_code == 422, r.text
    details = r.json()["detail"]
    hit = [d for d in details if tuple(d["loc"]) == loc]
    assert hit, details
    assert msg.lower() in hit[0]["msg"].lower()
    # the same state inside a batch: 422 located at its index
    states = [example, _mutate(example, fn)]
    rb = client.post("/v1/recommendations:batch", json={"states": states})
    assert rb.status_code == 422
    assert any(tuple(d["loc"][:3]) == ("body", "states", 1) for d in rb.json()["detail"]), rb.json()


@pytest.mark.parametrize(
    "raw",
    [
        b'{"t": 0, "nodes": [{"node": "dc0", "on_hand": NaN}]}',
        b'{"t": 0, "nodes": [{"node": "dc0", "on_hand": Infinity}]}',
    ],
)
def test_nan_and_infinity_are_422(client: TestClient, raw: bytes) -> None:
    r = client.post("/v1/recommendations", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "nodes", 0, "on_hand"]
    assert "finite" in r.json()["detail"][0]["msg"]


@pytest.mark.parametrize("raw", [b"{not json", b"[]", b"42", b""])
def test_malformed_bodies_are_422(client: TestClient, raw: bytes) -> None:
    r = client.post("/v1/recommendations", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text


def test_batch_limits_and_empty_batch() -> None:
    with TestClient(_app(max_batch=2)) as c:
        ex = c.get("/v1/example-state").json()
        r = c.post("/v1/recommendations:batch", json={"states": [ex] * 3})
        assert r.status_code == 422 and "at most 2 states" in r.json()["detail"][0]["msg"]
        assert c.post("/v1/recommendations:batch", json={"states": []}).status_code == 422
        assert c.post("/v1/recommendations:batch", json={"states": [ex] * 2}).status_code == 200


# ---- 413 ------------------------------------------------------------------------------------------


def test_oversized_bodies_are_413() -> None:
    with TestClient(_app(max_body_bytes=4096)) as c:
        ex = c.get("/v1/example-state").json()
        big = json.dumps({"states": [ex] * 20}).encode()
        assert len(big) > 4096
        for path in ("/v1/recommendations", "/v1/recommendations:batch", "/v1/policies/reload"):
            r = c.post(path, content=big, headers={"content-type": "application/json", **ADMIN})
            assert r.status_code == 413, (path, r.status_code)
            assert "max_body_bytes" in r.json()["detail"][0]["msg"]

        def chunks() -> Any:  # no Content-Length: counted while streaming
            for _ in range(10):
                yield b" " * 1000

        r = c.post("/v1/recommendations", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert c.post("/v1/recommendations", json=ex).status_code == 200  # a normal one still passes
        assert c.app.state.server.unhandled == 0


# ---- 401 / 403 ------------------------------------------------------------------------------------


def test_api_key_required_when_configured() -> None:
    with TestClient(_app(require_api_key=True)) as c:
        assert c.get("/healthz").status_code == 200  # probes stay open
        assert c.get("/readyz").status_code == 200
        ex = c.get("/v1/example-state", headers=ADMIN).json()
        calls = [
            ("get", "/v1/policies", None),
            ("get", "/v1/example-state", None),
            ("post", "/v1/recommendations", ex),
            ("post", "/v1/recommendations:batch", {"states": [ex]}),
            ("post", "/v1/policies/reload", {"policy": "base_stock"}),
        ]
        for method, path, body in calls:
            for headers in ({}, {"X-API-Key": "wrong-key-123"}, {"X-API-Key": b"\xe9\xe9-non-ascii-key"}):
                r = (
                    getattr(c, method)(path, json=body, headers=headers)
                    if body
                    else getattr(c, method)(path, headers=headers)
                )
                assert r.status_code == 401, (path, headers, r.status_code)
                assert r.json()["detail"][0]["loc"] == ["header", "X-API-Key"]
            r = getattr(c, method)(path, json=body, headers=ADMIN) if body else getattr(c, method)(path, headers=ADMIN)
            assert r.status_code == 200, (path, r.text)


def test_reload_needs_the_admin_key(client: TestClient) -> None:
    # the shared client does not require keys for reads, but reload always does
    assert client.post("/v1/policies/reload", json={"policy": "base_stock"}).status_code == 401
    assert (
        client.post(
            "/v1/policies/reload", json={"policy": "base_stock"}, headers={"X-API-Key": "nope-nope"}
        ).status_code
        == 401
    )
    assert client.get("/v1/policies").json()["name"] == GreedyTransfers.name  # unchanged
    with TestClient(_app(api_key=None)) as c:
        r = c.post("/v1/policies/reload", json={"policy": "base_stock"}, headers=ADMIN)
        assert r.status_code == 403 and "no api_key" in r.json()["detail"][0]["msg"]


# ---- 503 ------------------------------------------------------------------------------------------


def test_not_ready_is_503_on_every_route() -> None:
    c = TestClient(_app())  # no `with`: the lifespan (policy loading) has not run
    assert c.get("/healthz").status_code == 200
    assert c.get("/readyz").status_code == 503
    body = {"t": 0, "nodes": [{"node": "dc0", "on_hand": 1}]}
    for method, path, payload in [
        ("get", "/v1/policies", None),
        ("get", "/v1/example-state", None),
        ("post", "/v1/recommendations", body),
        ("post", "/v1/recommendations:batch", {"states": [body]}),
        ("post", "/v1/policies/reload", {"policy": "base_stock"}),
    ]:
        r = getattr(c, method)(path, json=payload, headers=ADMIN) if payload else getattr(c, method)(path)
        assert r.status_code == 503, (path, r.status_code)
        assert "not loaded" in r.json()["detail"][0]["msg"]


# ---- reload -------------------------------------------------------------------------------------


def test_reload_swaps_policy_and_reports_errors() -> None:
    with TestClient(_app(policy="base_stock")) as c:
        ex = c.get("/v1/example-state").json()
        v0 = c.get("/v1/policies").json()["version"]
        r = c.post("/v1/policies/reload", json={"policy": "order_up_to"}, headers=ADMIN)
        assert r.status_code == 200 and r.json()["name"] == "order_up_to" and r.json()["version"] != v0
        assert c.post("/v1/recommendations", json=ex).json()["policy"]["name"] == "order_up_to"
        r = c.post("/v1/policies/reload", json={"policy": "no_such_policy"}, headers=ADMIN)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "policy"]
        assert "no_such_policy" in r.json()["detail"][0]["msg"]
        r = c.post("/v1/policies/reload", json={"policy": "order_up_to", "params": {"bogus": 1}}, headers=ADMIN)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "params"]
        r = c.post("/v1/policies/reload", json={"policy": "/no/such/bundle"}, headers=ADMIN)
        assert r.status_code == 422
        r = c.post("/v1/policies/reload", json={"policie": "x"}, headers=ADMIN)
        assert r.status_code == 422
        assert c.get("/v1/policies").json()["name"] == "order_up_to"  # failed reloads keep the old policy
        metrics = c.get("/metrics").text
        assert 'invnet_policy_reloads_total{outcome="ok"} 1.0' in metrics
        assert 'invnet_policy_reloads_total{outcome="failed"} 3.0' in metrics


def test_reload_during_requests_drops_none() -> None:
    with TestClient(_app(policy="base_stock")) as c:
        ex = c.get("/v1/example-state").json()
        statuses: list[int] = []
        names: set[str] = set()
        stop = threading.Event()

        def hammer() -> None:
            while not stop.is_set():
                r = c.post("/v1/recommendations", json=ex)
                statuses.append(r.status_code)
                names.add(r.json()["policy"]["name"])

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for th in threads:
            th.start()
        for i in range(6):
            spec = "order_up_to" if i % 2 == 0 else "base_stock"
            assert c.post("/v1/policies/reload", json={"policy": spec}, headers=ADMIN).status_code == 200
        stop.set()
        for th in threads:
            th.join(timeout=30)
        assert statuses and set(statuses) == {200}
        assert names == {"order_up_to", "base_stock"}


# ---- ops, settings, CORS --------------------------------------------------------------------------


def test_metrics_count_requests_by_route_and_status() -> None:
    with TestClient(_app()) as c:
        ex = c.get("/v1/example-state").json()
        for _ in range(3):
            c.post("/v1/recommendations", json=ex)
        c.post("/v1/recommendations", json={"t": 0})
        c.post("/v1/recommendations:batch", json={"states": [ex, ex]})
        c.get("/no/such/path")
        text = c.get("/metrics").text
    assert 'invnet_http_requests_total{method="POST",route="/v1/recommendations",status="200"} 3.0' in text
    assert 'invnet_http_requests_total{method="POST",route="/v1/recommendations",status="422"} 1.0' in text
    assert 'invnet_http_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text
    assert 'invnet_http_errors_total{kind="4xx",route="/v1/recommendations"} 1.0' in text
    assert 'invnet_http_request_duration_seconds_count{method="POST",route="/v1/recommendations"} 4.0' in text
    assert "invnet_recommendations_total 5.0" in text  # 3 singles + a batch of 2
    assert f'invnet_policy_info{{name="{GreedyTransfers.name}"' in text


def test_cors_only_when_configured() -> None:
    origin = {"Origin": "https://erp.example.com"}
    with TestClient(_app()) as c:
        assert "access-control-allow-origin" not in c.get("/v1/policies", headers=origin).headers
    with TestClient(_app(cors_origins=["https://erp.example.com"])) as c:
        assert c.get("/v1/policies", headers=origin).headers["access-control-allow-origin"] == origin["Origin"]


def test_settings_from_environment_and_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVNET_SCENARIO", "hub_spoke")
    monkeypatch.setenv("INVNET_POLICY", "base_stock")
    monkeypatch.setenv("INVNET_PORT", "9123")
    monkeypatch.setenv("INVNET_CORS_ORIGINS", "http://a, http://b")
    s = load_settings(port=None, host="0.0.0.0")
    assert (s.scenario, s.policy, s.port, s.host, s.cors_origins) == (
        "hub_spoke",
        "base_stock",
        9123,
        "0.0.0.0",
        ["http://a", "http://b"],
    )
    assert load_settings(port=8001).port == 8001  # options beat the environment
    assert ServingSettings.model_fields["host"].default == "127.0.0.1"
    monkeypatch.setenv("INVNET_PORT", "eighty")
    with pytest.raises(ValidationError) as e:
        load_settings()
    assert "port (INVNET_PORT)" in settings_error_message(e.value)
    monkeypatch.setenv("INVNET_PORT", "8000")
    monkeypatch.setenv("INVNET_REQUIRE_API_KEY", "true")
    with pytest.raises(ValidationError) as e:
        load_settings()
    assert "INVNET_API_KEY" in settings_error_message(e.value)
    monkeypatch.delenv("INVNET_POLICY")
    monkeypatch.delenv("INVNET_REQUIRE_API_KEY")
    with pytest.raises(ValidationError) as e:
        load_settings()
    assert "policy (INVNET_POLICY): missing" in settings_error_message(e.value)


# ---- fuzz -----------------------------------------------------------------------------------------

_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
_value = st.recursive(
    _scalar,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
_FIELDS = ["node", "sku", "on_hand", "backlog", "in_transit", "recent_demand", "forecast", "extra"]


@st.composite
def _fuzzed_body(draw: Any, example: dict[str, Any]) -> Any:
    kind = draw(st.sampled_from(["mutate", "mutate", "mutate", "random"]))
    if kind == "random":
        return draw(_value)
    body = copy.deepcopy(example)
    for _ in range(draw(st.integers(1, 4))):
        target = draw(st.sampled_from(["t", "entry", "drop_entry", "list"]))
        if target == "t":
            body["t"] = draw(_value | st.integers(-5, 60))
        elif target == "drop_entry" and body.get("nodes"):
            body["nodes"].pop(draw(st.integers(0, len(body["nodes"]) - 1)))
        elif target == "list" and body.get("nodes"):
            e = body["nodes"][draw(st.integers(0, len(body["nodes"]) - 1))]
            e[draw(st.sampled_from(["in_transit", "recent_demand"]))] = draw(
                st.lists(st.floats(allow_nan=True, allow_infinity=True) | st.integers(-3, 10**6), max_size=6)
            )
        elif body.get("nodes"):
            e = body["nodes"][draw(st.integers(0, len(body["nodes"]) - 1))]
            e[draw(st.sampled_from(_FIELDS))] = draw(
                _value | st.floats(0, 1e6) | st.sampled_from(["dc0", "s0_1", "sku"])
            )
    return body


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_bodies_never_5xx(client: TestClient, example: dict[str, Any], data: Any) -> None:
    body = data.draw(_fuzzed_body(example))
    raw = json.dumps(body, allow_nan=True).encode()
    batch = data.draw(st.booleans())
    if batch:
        raw = b'{"states": [' + raw + b"]}"
    r = client.post(
        "/v1/recommendations:batch" if batch else "/v1/recommendations",
        content=raw,
        headers={"content-type": "application/json"},
    )
    assert r.status_code in (200, 422), (r.status_code, r.text[:300])
    if r.status_code == 422:
        assert r.json()["detail"] and all("loc" in d and d["msg"] for d in r.json()["detail"])
    assert client.app.state.server.unhandled == 0


# ---- coalescing -----------------------------------------------------------------------------------


def test_coalescer_batches_concurrent_requests_and_matches_single_answers(example: dict[str, Any]) -> None:
    import asyncio

    from invnet.serving.batching import Coalescer
    from invnet.serving.schemas import RecommendationRequest
    from invnet.serving.service import build_state, recommend

    net = _net()
    lp_a, lp_b = _greedy(net), load_policy(net, "base_stock")
    bodies = []
    for j in range(6):
        b = copy.deepcopy(example)
        b["nodes"][1 + j]["on_hand"] = 5.0 * j
        b["t"] = 3 if j == 5 else example["t"]
        bodies.append(RecommendationRequest.model_validate(b))
    jobs = [(lp_a if j < 4 else lp_b, build_state(lp_a, [r])) for j, r in enumerate(bodies)]

    async def go() -> tuple[list[dict[str, Any]], Coalescer]:
        c = Coalescer(max_batch=3)
        out = await asyncio.gather(*(c.submit(lp, state, rate) for lp, (state, rate) in jobs))
        return list(out), c

    got, co = asyncio.run(go())
    # groups: policy A at t (4 states -> chunks of 3 + 1), policy B at t (1), policy B at t=3 (1)
    assert co.calls == 4 and co.states == 6
    for (lp, (state, rate)), g in zip(jobs, got, strict=True):
        assert g == recommend(lp, state, rate)[0]


def test_coalescing_on_and_off_give_the_same_answers(example: dict[str, Any]) -> None:
    answers = []
    for flag in (True, False):
        with TestClient(_app(coalesce=flag)) as c:
            answers.append(c.post("/v1/recommendations", json=example).json())
    assert answers[0] == answers[1]


@pytest.mark.parametrize("scenario", ["single_node", "serial_3stage", "two_stores", "disrupted", "launch_surge"])
def test_every_kind_of_network_is_served(scenario: str) -> None:
    """Backorders (serial), disruptions, surges, a single node: the example state is answered, units conserved."""
    net = _net(scenario)
    with TestClient(_app(scenario=scenario)) as c:
        ex = c.get("/v1/example-state").json()
        for t in (ex["t"], net.periods - 1):
            r = c.post("/v1/recommendations", json={**ex, "t": t})
            assert r.status_code == 200, r.text
            _assert_conserving(net, r.json(), ex)
        if net.backorder:
            ex["nodes"][0]["backlog"] = 3.0
            assert c.post("/v1/recommendations", json=ex).status_code == 200
        assert c.app.state.server.unhandled == 0


def test_disrupted_node_ships_nothing_and_says_so() -> None:
    """During the dc's disruption (periods 20-22 of `disrupted`) the core refuses its order and its
    shipments; the response reports what can ship (nothing) and warns, as the simulator would."""
    with TestClient(_app(scenario="disrupted", policy="base_stock")) as c:
        ex = c.get("/v1/example-state").json()
        body = c.post("/v1/recommendations", json={**ex, "t": 21}).json()
    dc = next(n for n in body["nodes"] if n["node"] == "dc")
    assert dc["order"] > 0 and dc["order_shippable"] == 0
    assert any(w.startswith("order dc/") for w in body["warnings"])
    assert all(t["from"] != "dc" for t in body["transfers"])
