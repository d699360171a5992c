"""Scenario files: the validated, frozen description of an inventory network.

A scenario is YAML (see ``configs/scenarios/``). :func:`load_scenario` parses it into a
:class:`Scenario` (pydantic, frozen) and runs every semantic check, collecting *all* problems
into one :class:`ScenarioError` whose lines each name the field path and what is wrong.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SUPPLIER = "supplier"
RESERVED_DEMAND_KEYS = {"correlation", "shocks", "replay"}


class ScenarioError(ValueError):
    """A scenario failed validation. ``problems`` holds one ``"field.path: message"`` per problem."""

    def __init__(self, problems: list[str], source: str | None = None) -> None:
        self.problems = problems
        head = f"invalid scenario{f' {source}' if source else ''} ({len(problems)} problem(s)):"
        super().__init__("\n".join([head, *(f"  - {p}" for p in problems)]))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class LeadTimeDist(_Model):
    """A discrete lead-time distribution (periods)."""

    values: list[int] = Field(min_length=1)
    probs: list[float] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> LeadTimeDist:
        if len(self.values) != len(self.probs):
            raise ValueError("values and probs must have the same length")
        if any(v < 0 for v in self.values):
            raise ValueError("lead time values must be >= 0")
        if any(p < 0 for p in self.probs) or not math.isclose(sum(self.probs), 1.0, abs_tol=1e-6):
            raise ValueError("probs must be non-negative and sum to 1")
        return self

    @property
    def mean(self) -> float:
        return float(sum(v * p for v, p in zip(self.values, self.probs, strict=True)))

    @property
    def var(self) -> float:
        m = self.mean
        return float(sum(p * (v - m) ** 2 for v, p in zip(self.values, self.probs, strict=True)))


class Node(_Model):
    """A stock-holding location."""

    id: str = Field(min_length=1)
    kind: str = "store"
    capacity: float = Field(default=math.inf, gt=0, description="storage capacity, shared by all SKUs")
    holding_cost: float = Field(ge=0, description="per unit of end-of-period on-hand per period")
    source: str = Field(default=SUPPLIER, description="'supplier' or the id of the upstream node")
    lead_time: int | LeadTimeDist = Field(default=0, description="supplier lead time (source: supplier)")
    initial_stock: float | dict[str, float] = 0.0
    shortage_penalty: float | None = Field(default=None, ge=0, description="overrides costs.shortage_penalty")
    price: float | None = Field(default=None, ge=0, description="selling price per unit (GMROI)")
    unit_cost: float | None = Field(default=None, ge=0, description="purchase cost per unit (GMROI)")

    @field_validator("lead_time")
    @classmethod
    def _lt(cls, v: int | LeadTimeDist) -> int | LeadTimeDist:
        if isinstance(v, int) and v < 0:
            raise ValueError("must be >= 0")
        return v

    @property
    def lead_time_values(self) -> list[int]:
        return [self.lead_time] if isinstance(self.lead_time, int) else list(self.lead_time.values)

    @property
    def lead_time_mean(self) -> float:
        return float(self.lead_time) if isinstance(self.lead_time, int) else self.lead_time.mean

    @property
    def lead_time_var(self) -> float:
        return 0.0 if isinstance(self.lead_time, int) else self.lead_time.var


class Lane(_Model):
    """A directed lane. Upstream shipments (a node's source) and lateral transfers both use lanes."""

    from_: str = Field(alias="from")
    to: str
    lead_time: int = Field(default=0, ge=0)
    unit_cost: float = Field(default=0.0, ge=0)
    fixed_cost: float = Field(default=0.0, ge=0)
    capacity: float = Field(default=math.inf, gt=0)


class Seasonality(_Model):
    period: float = Field(gt=0)
    amplitude: float = Field(ge=0, le=1)
    phase: float = 0.0


class DemandSpec(_Model):
    """Demand of one node (and SKU) per period."""

    dist: Literal["poisson", "negative_binomial", "normal"] = "poisson"
    mean: float = Field(ge=0)
    cv: float | None = Field(default=None, gt=0, description="coefficient of variation (nbinom, normal)")
    std: float | None = Field(default=None, ge=0, description="standard deviation (normal)")
    round: bool = Field(default=True, description="round normal draws to whole units")
    seasonality: Seasonality | None = None
    trend: float = Field(default=0.0, description="relative growth of the mean per period")

    @model_validator(mode="after")
    def _check(self) -> DemandSpec:
        if self.dist == "negative_binomial":
            if self.cv is None:
                raise ValueError("negative_binomial needs cv")
            if self.mean > 0 and (self.cv * self.mean) ** 2 <= self.mean:
                raise ValueError(
                    f"negative_binomial needs variance > mean: cv^2 * mean = {self.cv**2 * self.mean:.3g}"
                    " must exceed 1 (use poisson)"
                )
        if self.dist == "normal" and self.cv is None and self.std is None:
            raise ValueError("normal needs std or cv")
        return self

    @property
    def sd(self) -> float:
        """Per-period standard deviation at the base mean."""
        if self.dist == "poisson":
            return math.sqrt(self.mean)
        if self.std is not None:
            return self.std
        return (self.cv or 0.0) * self.mean


class Shock(_Model):
    """Scheduled demand multiplier (launch surge, cold front)."""

    nodes: list[str] = Field(min_length=1)
    start: int = Field(ge=0)
    duration: int = Field(ge=1)
    multiplier: float = Field(ge=0)
    skus: list[str] | None = None


class Demand(_Model):
    """Per-node (optionally per-SKU) demand generators, or a replayed table."""

    model_config = ConfigDict(extra="allow", frozen=True)
    correlation: float = Field(default=0.0, ge=-0.99, le=0.99)
    shocks: list[Shock] = []
    replay: str | None = Field(default=None, description="CSV/Parquet with columns period,node,sku,demand")

    def node_specs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class Disruption(_Model):
    """A node that can neither ship nor receive for some periods."""

    node: str
    start: int = Field(ge=0)
    duration: int = Field(ge=1)


class Costs(_Model):
    shortage_penalty: float = Field(
        default=10.0, ge=0, description="lost sale per unit, or backorder per unit per period"
    )
    order_fixed: float = Field(default=0.0, ge=0, description="per order placed (node and period)")
    order_unit: float = Field(default=0.0, ge=0, description="per unit ordered")
    pipeline_holding: bool = Field(default=False, description="charge in-transit units at the sender's holding cost")
    supplier_holding_cost: float = Field(default=0.0, ge=0, description="holding rate of supplier in-transit units")


class AgentsConfig(_Model):
    reward: Literal["team", "local", "mixed"] = "team"
    reward_weight: float = Field(default=0.5, ge=0, le=1, description="mixed: weight of the local cost")
    visibility: Literal["own", "neighbours", "all"] = "neighbours"
    action_mode: Literal["quantity", "order_up_to"] = "quantity"
    max_order: float | dict[str, float] | None = Field(default=None, description="order bound per node")
    max_level: float | dict[str, float] | None = Field(default=None, description="order-up-to bound per node")
    max_transfer: float | None = Field(default=None, gt=0, description="transfer bound per lane")
    demand_history: int = Field(default=4, ge=1, le=52, description="recent demand periods observed")
    base_stock: dict[str, float] | None = Field(default=None, description="order_up_to levels per node")


class Scenario(_Model):
    """A validated inventory network. Build with :func:`load_scenario` or :func:`parse_scenario`."""

    name: str = Field(min_length=1)
    description: str = ""
    periods: int = Field(ge=1, description="episode length")
    warmup: int = Field(default=0, ge=0, description="first periods excluded from evaluation KPIs")
    shortage: Literal["lost_sales", "backorder"] = "lost_sales"
    skus: list[str] = Field(default_factory=lambda: ["sku"], min_length=1)
    nodes: list[Node] = Field(min_length=1)
    lanes: list[Lane] = []
    demand: Demand
    costs: Costs = Costs()
    disruptions: list[Disruption] = []
    agents: AgentsConfig = AgentsConfig()
    base_dir: str | None = Field(default=None, exclude=True, description="folder of the file (replay paths)")

    @property
    def node_ids(self) -> list[str]:
        return [n.id for n in self.nodes]

    def node(self, node_id: str) -> Node:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)

    def demand_spec(self, node_id: str, sku: str) -> DemandSpec | None:
        """The generator for ``node_id``/``sku``, or None when the node has no external demand."""
        raw = self.demand.node_specs().get(node_id)
        if raw is None:
            return None
        if isinstance(raw, DemandSpec):
            return raw
        if "dist" in raw or "mean" in raw:
            return DemandSpec.model_validate(raw)
        sku_raw = raw.get(sku)
        return None if sku_raw is None else DemandSpec.model_validate(sku_raw)

    def replay_path(self) -> Path | None:
        if self.demand.replay is None:
            return None
        p = Path(self.demand.replay)
        if not p.is_absolute() and self.base_dir:
            p = Path(self.base_dir) / p
        return p


def _loc(loc: tuple[Any, ...], data: dict[str, Any]) -> str:
    """Render a pydantic error location as ``nodes[2].lead_time`` (node ids where known)."""
    out = ""
    cur: Any = data
    for part in loc:
        if isinstance(part, int):
            label = str(part)
            if isinstance(cur, list) and 0 <= part < len(cur) and isinstance(cur[part], dict) and "id" in cur[part]:
                label = f"{part}:{cur[part]['id']}"
            out += f"[{label}]"
            cur = cur[part] if isinstance(cur, list) and 0 <= part < len(cur) else None
        else:
            if part in ("int", "LeadTimeDist", "float", "str", "dict[str,float]") or "[" in part or "(" in part:
                continue  # a union branch or validator name, not a field
            out += f".{part}" if out else str(part)
            cur = cur.get(part) if isinstance(cur, dict) else None
    return out or "(root)"


def _semantic_problems(s: Scenario) -> list[str]:
    """Cross-field checks pydantic cannot express. Returns one message per problem."""
    problems: list[str] = []
    ids = s.node_ids
    idx = {n: i for i, n in enumerate(ids)}
    seen: set[str] = set()
    for i, n in enumerate(s.nodes):
        if n.id in seen:
            problems.append(f"nodes[{i}].id: duplicate node id '{n.id}'")
        seen.add(n.id)
    if len(set(s.skus)) != len(s.skus):
        problems.append("skus: duplicate SKU names")
    lane_keys: set[tuple[str, str]] = set()
    for j, lane in enumerate(s.lanes):
        where = f"lanes[{j}]"
        if lane.from_ not in idx:
            problems.append(f"{where}.from: unknown node '{lane.from_}'")
        if lane.to not in idx:
            problems.append(f"{where}.to: unknown node '{lane.to}'")
        if lane.from_ == lane.to:
            problems.append(f"{where}: a lane from node '{lane.from_}' to itself")
        if (lane.from_, lane.to) in lane_keys:
            problems.append(f"{where}: duplicate lane {lane.from_} -> {lane.to}")
        lane_keys.add((lane.from_, lane.to))
    for i, n in enumerate(s.nodes):
        where = f"nodes[{i}:{n.id}]"
        if n.source != SUPPLIER:
            if n.source not in idx:
                problems.append(f"{where}.source: unknown node '{n.source}' (use 'supplier' or a node id)")
            elif n.source == n.id:
                problems.append(f"{where}.source: a node cannot be its own source")
            elif (n.source, n.id) not in lane_keys:
                problems.append(f"{where}.source: no lane from '{n.source}' to '{n.id}' for upstream shipments")
            if not isinstance(n.lead_time, int) or n.lead_time != 0:
                problems.append(f"{where}.lead_time: only supplier-fed nodes have a lead time; set it on the lane")
        init = n.initial_stock
        init_map = init if isinstance(init, dict) else {k: init for k in s.skus}
        for sku, q in init_map.items():
            if sku not in s.skus:
                problems.append(f"{where}.initial_stock: unknown SKU '{sku}'")
            elif q < 0 or not math.isfinite(q):
                problems.append(f"{where}.initial_stock: must be a finite number >= 0, got {q}")
        if sum(init_map.values()) > n.capacity:
            problems.append(f"{where}.capacity: {n.capacity:g} is below the initial stock {sum(init_map.values()):g}")
    # cycles among upstream sources: one message per cycle, at its first member in file order
    cycles: set[frozenset[str]] = set()
    for n in s.nodes:
        chain = [n.id]
        cur = n.source
        while cur != SUPPLIER and cur in idx:
            if cur in chain:
                members = chain[chain.index(cur) :]
                if frozenset(members) not in cycles:
                    cycles.add(frozenset(members))
                    first = min(members, key=idx.__getitem__)
                    k = members.index(first)
                    cyc = " -> ".join([*members[k:], *members[:k], first])
                    problems.append(f"nodes[{idx[first]}:{first}].source: cycle of upstream sources ({cyc})")
                break
            chain.append(cur)
            cur = s.node(cur).source
    problems = list(dict.fromkeys(problems))  # a cycle is reported once per member; keep order
    # demand
    specs = s.demand.node_specs()
    for key, raw in specs.items():
        where = f"demand.{key}"
        if key not in idx:
            problems.append(f"{where}: unknown node '{key}'")
            continue
        if not isinstance(raw, dict):
            problems.append(f"{where}: expected a mapping with dist and mean (or one per SKU)")
            continue
        per_sku = {None: raw} if ("dist" in raw or "mean" in raw) else raw
        for sku, spec in per_sku.items():
            w = where if sku is None else f"{where}.{sku}"
            if sku is not None and sku not in s.skus:
                problems.append(f"{w}: unknown SKU '{sku}'")
                continue
            try:
                DemandSpec.model_validate(spec)
            except ValidationError as e:
                for err in e.errors():
                    sub = ".".join(str(p) for p in err["loc"])
                    problems.append(f"{w}{'.' + sub if sub else ''}: {err['msg'].removeprefix('Value error, ')}")
    if s.demand.replay is None:
        for i, n in enumerate(s.nodes):
            if n.kind == "store" and n.id not in specs:
                problems.append(f"demand.{n.id}: missing demand for store node '{n.id}' (nodes[{i}])")
    else:
        p = s.replay_path()
        if p is not None and not p.exists():
            problems.append(f"demand.replay: file not found: {p}")
        elif not problems:  # read the table now so a bad file fails validation, not the first simulation
            from invnet.envs.demand import load_replay_table

            try:
                load_replay_table(s)
            except ScenarioError as e:
                problems.extend(e.problems)
    for j, sh in enumerate(s.demand.shocks):
        for nid in sh.nodes:
            if nid not in idx:
                problems.append(f"demand.shocks[{j}].nodes: unknown node '{nid}'")
        for sku in sh.skus or []:
            if sku not in s.skus:
                problems.append(f"demand.shocks[{j}].skus: unknown SKU '{sku}'")
        if sh.start >= s.periods:
            problems.append(f"demand.shocks[{j}].start: {sh.start} is past the horizon ({s.periods} periods)")
    for j, d in enumerate(s.disruptions):
        if d.node not in idx:
            problems.append(f"disruptions[{j}].node: unknown node '{d.node}'")
        if d.start >= s.periods:
            problems.append(f"disruptions[{j}].start: {d.start} is past the horizon ({s.periods} periods)")
    if s.warmup >= s.periods:
        problems.append(f"warmup: {s.warmup} must be below periods ({s.periods})")
    a = s.agents
    for fld in ("max_order", "max_level", "base_stock"):
        val = getattr(a, fld)
        if isinstance(val, dict):
            for k, v in val.items():
                if k not in idx:
                    problems.append(f"agents.{fld}.{k}: unknown node '{k}'")
                elif v < 0:
                    problems.append(f"agents.{fld}.{k}: must be >= 0")
        elif val is not None and val <= 0:
            problems.append(f"agents.{fld}: must be > 0")
    return problems


def parse_scenario(data: dict[str, Any], source: str | None = None, base_dir: str | None = None) -> Scenario:
    """Validate a scenario mapping. Raises :class:`ScenarioError` listing every problem."""
    if not isinstance(data, dict):
        raise ScenarioError(["(root): expected a mapping of scenario fields"], source)
    if base_dir is not None:
        data = {**data, "base_dir": base_dir}
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as e:
        found: list[tuple[str, str, str]] = []
        for err in e.errors():
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown field"
            elif err["type"] == "missing":
                msg = "required field is missing"
            found.append((_loc(err["loc"], data), msg, err["type"]))
        # a value that fails every branch of a union (int | distribution) reports each branch; when one
        # branch has a real complaint, drop the bare "not an int/float/dict" of the others
        specific = {loc for loc, _, kind in found if not kind.endswith(("_type", "_parsing"))}
        problems = [
            f"{loc}: {msg}"
            for loc, msg, kind in found
            if loc not in specific or not kind.endswith(("_type", "_parsing"))
        ]
        raise ScenarioError(list(dict.fromkeys(problems)), source) from None
    problems = _semantic_problems(scenario)
    if problems:
        raise ScenarioError(problems, source)
    return scenario


def builtin_scenario_dir() -> Path:
    """Folder of the scenarios shipped with invnet."""
    return _configs_dir() / "scenarios"


def _configs_dir() -> Path:
    import invnet.configs as cfg

    return Path(cfg.__file__).resolve().parent


def resolve_scenario_path(path: str | Path) -> Path:
    """A path as given, or the name of a shipped scenario (``hub_spoke`` -> configs/scenarios/hub_spoke.yaml)."""
    p = Path(path)
    if p.is_file():
        return p
    for cand in (builtin_scenario_dir() / f"{path}.yaml", builtin_scenario_dir() / str(path)):
        if cand.is_file():
            return cand
    names = ", ".join(sorted(q.stem for q in builtin_scenario_dir().glob("*.yaml")))
    raise ScenarioError([f"scenario: file not found: {path} (shipped scenarios: {names})"])


def load_scenario(path: str | Path, overrides: dict[str, Any] | None = None) -> Scenario:
    """Load and validate a scenario YAML file (or a shipped scenario name).

    ``overrides`` is merged at the top level (e.g. ``{"costs": {...}}`` replaces the costs block).
    """
    p = resolve_scenario_path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ScenarioError([f"(file): not valid YAML: {e}"], str(p)) from None
    if overrides:
        data = {**(data or {}), **overrides}
    return parse_scenario(data, source=str(p), base_dir=str(p.parent))


def list_builtin_scenarios() -> list[str]:
    return sorted(q.stem for q in builtin_scenario_dir().glob("*.yaml"))
