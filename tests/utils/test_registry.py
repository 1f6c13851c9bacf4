"""utils.registry: building a component by a config name, unknown names named with the choices."""

import pytest
from detectron2.utils.registry import Registry

from personsearch.utils.registry import build_from_registry

REGISTRY = Registry("PS_TEST_PARTS")


@REGISTRY.register()
class Part:
    def __init__(self, a, b):
        self.args = (a, b)


def test_builds_the_registered_name_with_the_arguments():
    assert build_from_registry(REGISTRY, "MODEL.PART.NAME", "Part", 1, 2).args == (1, 2)


def test_unknown_name_names_the_key_the_value_and_the_choices():
    with pytest.raises(ValueError, match=r"^MODEL.PART.NAME 'X' is not registered; registered: "):
        build_from_registry(REGISTRY, "MODEL.PART.NAME", "X")
    with pytest.raises(ValueError, match=r"'X' is not a registered part; registered: \['Part'\]"):
        build_from_registry(REGISTRY, "MODEL.PART.NAME", "X", kind="part")
