"""Request and response bodies of the policy server (pydantic v2, strict types, unknown fields refused).

Units are the scenario's units of stock; periods are the scenario's periods (e.g. days or weeks).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

MAX_UNITS = 1e12
Quantity = Annotated[float, Field(ge=0, le=MAX_UNITS, allow_inf_nan=False)]
"""A finite number of units in [0, 1e12] (int or float; strings, booleans, NaN and inf are refused)."""

_STRICT = ConfigDict(extra="forbid", strict=True)


class NodeSkuState(BaseModel):
    """Stock of one SKU at one node, at decision time of period ``t`` (after this period's arrivals)."""

    model_config = _STRICT

    node: str = Field(min_length=1, max_length=200, description="Node id as in the scenario.")
    sku: str | None = Field(
        None, min_length=1, max_length=200, description="SKU id; may be omitted when the network has a single SKU."
    )
    on_hand: Quantity = Field(description="Units physically at the node.")
    backlog: Quantity = Field(0.0, description="Unmet demand waiting (backorder networks; 0 under lost sales).")
    in_transit: list[Quantity] | None = Field(
        None,
        max_length=1000,
        description="Units on their way to the node by arrival period: slot j arrives at the start of period "
        "t+1+j. Exactly the network's pipeline length P (see GET /v1/policies); omitted = nothing in transit.",
    )
    recent_demand: list[Quantity] | None = Field(
        None,
        min_length=1,
        max_length=1000,
        description="Demand of the last periods, most recent last. The policy sees the last H of them (H = the "
        "scenario's demand_history); missing older periods are filled with the forecast. Omitted = the forecast.",
    )
    forecast: Quantity | None = Field(
        None, description="Expected demand per period; omitted = the scenario's mean demand for period t."
    )


class RecommendationRequest(BaseModel):
    """The network state: one entry per node and SKU (every node of the network, each once)."""

    model_config = _STRICT

    t: int = Field(0, ge=0, description="Period index in the scenario's horizon (seasonality, forecasts).")
    nodes: list[NodeSkuState] = Field(min_length=1, max_length=100_000)


class BatchRequest(BaseModel):
    """Many states at once, answered by one batched policy call (same order as given)."""

    model_config = _STRICT

    states: list[RecommendationRequest] = Field(min_length=1)


class NodeRecommendation(BaseModel):
    node: str
    sku: str
    order: float = Field(description="Units the policy orders from the node's source (supplier or upstream node).")
    order_shippable: float = Field(
        description="Part of the order the source can ship now (upstream on-hand, lane and storage capacity)."
    )
    reference_order: float = Field(description="What the reference base-stock policy would order.")
    inventory_position: float = Field(description="On-hand + in transit - backlog, before the action.")
    inventory_position_after: float = Field(
        description="Inventory position after the (feasible) orders and transfers are placed."
    )
    on_hand_after: float = Field(description="On-hand after shipments leave and lead-time-0 transfers arrive.")
    days_of_supply: float | None = Field(
        description="on_hand_after / demand per period (periods of cover); null when the node sees no demand."
    )


class Transfer(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: str = Field(alias="from")
    to: str
    sku: str
    quantity: float = Field(description="Units to ship, feasible against the sender's on-hand and lane capacity.")
    requested: float = Field(description="Units the policy asked for (larger when rationed).")
    lead_time: int


class PolicyRef(BaseModel):
    name: str
    version: str
    spec: str


class RecommendationResponse(BaseModel):
    policy: PolicyRef
    reference_policy: str
    scenario: str
    t: int
    nodes: list[NodeRecommendation]
    transfers: list[Transfer] = Field(description="Transfers with quantity > 0 only.")
    warnings: list[str] = Field(default_factory=list)


class BatchResponse(BaseModel):
    results: list[RecommendationResponse]


class ReloadRequest(BaseModel):
    model_config = _STRICT

    policy: str = Field(min_length=1, max_length=4096, description="Policy SPEC (name, bundle path, MLflow URI).")
    params: dict[str, Any] = Field(default_factory=dict, description="Parameters for a named policy.")


class PolicyInfo(BaseModel):
    name: str
    version: str
    spec: str
    params: dict[str, Any]
    loaded_at: str
    scenario: str
    trained_on: str | None = Field(description="Scenario the bundle was trained on, when known.")
    metadata: dict[str, Any] = Field(description="Bundle metadata and evaluation figures, when the bundle has them.")
    reference_policy: str
    network: dict[str, Any] = Field(description="Nodes, SKUs, lanes, pipeline length P and demand history H.")


class ErrorItem(BaseModel):
    loc: list[str | int] = Field(description="Where the problem is, e.g. ['body', 'nodes', 3, 'in_transit'].")
    msg: str
    type: str


class ErrorResponse(BaseModel):
    """Every 4xx/5xx answer: one item per problem."""

    detail: list[ErrorItem]
