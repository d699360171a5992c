"""invnet.envs: scenarios, the batched simulator core, the PettingZoo env and its wrappers."""

from invnet.envs.batched import BatchedInventoryEnv, batched_env
from invnet.envs.core import Action, Exogenous, State, StepOutput, initial_state, step
from invnet.envs.inventory_network import (
    ENV_ID,
    CentralizedInventoryEnv,
    InventoryNetworkEnv,
    env,
    gym_env,
    parallel_env,
)
from invnet.envs.network import Network, compile_network
from invnet.envs.rollout import Trajectory, mean_ci95, rollout
from invnet.envs.scenario import (
    Scenario,
    ScenarioError,
    list_builtin_scenarios,
    load_scenario,
    parse_scenario,
)
from invnet.envs.spaces import AgentSpaces

__all__ = [
    "ENV_ID",
    "Action",
    "AgentSpaces",
    "BatchedInventoryEnv",
    "CentralizedInventoryEnv",
    "Exogenous",
    "InventoryNetworkEnv",
    "Network",
    "Scenario",
    "ScenarioError",
    "State",
    "StepOutput",
    "Trajectory",
    "batched_env",
    "compile_network",
    "env",
    "gym_env",
    "initial_state",
    "list_builtin_scenarios",
    "load_scenario",
    "mean_ci95",
    "parallel_env",
    "parse_scenario",
    "rollout",
    "step",
]
