"""The installed package exposes every subpackage under the invnet namespace (guards the wheel)."""

import importlib

import pytest

SUBPACKAGES = [
    "invnet",
    "invnet.envs",
    "invnet.agents",
    "invnet.training",
    "invnet.evaluation",
    "invnet.serving",
    "invnet.configs",
]


@pytest.mark.parametrize("name", SUBPACKAGES)
def test_subpackage_imports(name: str) -> None:
    mod = importlib.import_module(name)
    assert mod.__name__ == name


def test_no_generic_top_level_modules() -> None:
    for generic in ("envs", "agents", "training", "evaluation", "serving"):
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(generic)


def test_shipped_scenarios_are_packaged() -> None:
    from invnet.envs.scenario import list_builtin_scenarios

    assert {"hub_spoke", "two_stores", "single_node", "serial_3stage", "large_50"} <= set(list_builtin_scenarios())
