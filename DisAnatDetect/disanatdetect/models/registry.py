"""Model registry: a name in the bundle's manifest selects the class, instead of if/elif chains."""

from __future__ import annotations

from torch import nn

MODELS: dict[str, type[nn.Module]] = {}


def register(name: str):
    """Class decorator that makes a model constructible by name."""

    def decorate(cls: type[nn.Module]) -> type[nn.Module]:
        MODELS[name] = cls
        return cls

    return decorate


def build_model(name: str, config: dict | None = None) -> nn.Module:
    """Instantiate the registered model ``name`` with its config dataclass filled from ``config``."""
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(sorted(MODELS))}")
    cls = MODELS[name]
    config_type = cls.__init__.__annotations__.get("config")
    if isinstance(config_type, str):  # postponed annotations
        config_type = getattr(__import__(cls.__module__, fromlist=["_"]), config_type)
    return cls(config_type(**(config or {})))
