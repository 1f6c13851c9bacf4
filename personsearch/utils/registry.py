"""Building a component by the name a config gives it, from a detectron2 ``Registry``."""

from typing import Any

from detectron2.utils.registry import Registry

__all__ = ["build_from_registry"]


def build_from_registry(registry: Registry, key: str, name: str, *args: Any, kind: str = ""):
    """``registry.get(name)(*args)``; an unknown name is a ``ValueError`` that names the config
    key, the value and every registered name (detectron2's own ``KeyError`` names neither the key
    nor the choices).

    Args:
        registry: the registry.
        key: the config key that holds ``name`` (e.g. ``"MODEL.REID_HEAD.NAME"``).
        name: the registered name to build.
        args: the constructor's arguments.
        kind: what the registry holds, for the message (``"re-ID head"``: "... is not a
            registered re-ID head"); empty: "... is not registered".
    """
    if name not in registry:
        what = f"a registered {kind}" if kind else "registered"
        raise ValueError(
            f"{key} {name!r} is not {what}; registered: {sorted(k for k, _ in registry)}"
        )
    return registry.get(name)(*args)
