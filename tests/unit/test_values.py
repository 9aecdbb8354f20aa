"""`handlers.core.values.valueclass`: a class declared with it behaves like the frozen
dataclass it stands for, and every such class's hand-written `__init__` takes exactly
its fields, in order, with the fields' defaults."""

from __future__ import annotations

import copy
import dataclasses
import importlib
import inspect
import pickle
from dataclasses import dataclass, field
from typing import Any

import pytest

from handlers.core.values import FACTORY, valueclass

#: Every module that declares value classes (the Lambda entry imports them, or its first
#: request does).
MODULES = ("handlers.core.app", "handlers.core.engine", "handlers.core.events",
           "handlers.core.ports", "handlers.core.schedule", "adapters.aws.settings",
           "adapters.aws.eventbridge_publisher")


@dataclass(frozen=True)
class Reference:
    name: str
    size: int = 0
    tags: tuple[str, ...] = field(default_factory=tuple)
    note: str = field(default="", compare=False, repr=False)


@valueclass
class Value:
    name: str
    size: int = 0
    tags: tuple[str, ...] = field(default_factory=tuple)
    note: str = field(default="", compare=False, repr=False)

    def __init__(self, name: str, size: int = 0, tags: tuple[str, ...] = FACTORY,
                 note: str = "") -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "tags", () if tags is FACTORY else tags)
        object.__setattr__(self, "note", note)


@valueclass
class Slotted:
    __slots__ = ("name", "size")
    name: str
    size: int

    def __init__(self, name: str, size: int = 0) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "size", size)


@valueclass(frozen=False)
class Mutable:
    name: str

    def __init__(self, name: str) -> None:
        self.name = name


def _same(value: Any, reference: Any) -> None:
    assert repr(value).replace("Value", "Reference") == repr(reference)
    assert hash(value) == hash(reference)


def test_behaves_like_the_frozen_dataclass() -> None:
    for args in [("a",), ("a", 2, ("x",), "n")]:
        _same(Value(*args), Reference(*args))
    a, b = Value("a", 1, note="one"), Value("a", 1, note="two")
    assert a == b and hash(a) == hash(b)  # `note` is not compared
    assert a != Value("a", 2) and a != Reference("a", 1) and a != ("a", 1)
    assert Value("a").tags == () and Value.__match_args__ == Reference.__match_args__
    assert [(f.name, f.repr, f.compare) for f in dataclasses.fields(Value)] == \
        [(f.name, f.repr, f.compare) for f in dataclasses.fields(Reference)]
    assert dataclasses.replace(a, size=5) == Value("a", 5)
    assert dataclasses.asdict(a) == dataclasses.asdict(Reference("a", 1, note="one"))
    for target in (a, Slotted("s", 1)):
        for name in ("name", "other"):
            with pytest.raises(dataclasses.FrozenInstanceError):
                setattr(target, name, "x")
            with pytest.raises(dataclasses.FrozenInstanceError):
                delattr(target, name)
        assert pickle.loads(pickle.dumps(target)) == target
        assert copy.copy(target) == target and copy.deepcopy(target) == target


def test_mutable_is_unhashable_and_assignable() -> None:
    m = Mutable("a")
    m.name = "b"
    assert m == Mutable("b") and repr(m) == "Mutable(name='b')"
    with pytest.raises(TypeError):
        hash(m)


def test_a_value_class_writes_its_init() -> None:
    with pytest.raises(TypeError, match="must define __init__"):
        @valueclass
        class NoInit:
            name: str


def _value_classes() -> list[type]:
    found = []
    for module in MODULES:
        for item in vars(importlib.import_module(module)).values():
            if isinstance(item, type) and item.__module__ == module \
                    and dataclasses.is_dataclass(item) and "__init__" in vars(item) \
                    and not item.__dataclass_params__.init:  # type: ignore[attr-defined]
                found.append(item)
    return found


def test_every_value_class_init_takes_its_fields() -> None:
    classes = _value_classes()
    assert {c.__name__ for c in classes} >= {"App", "Event", "Ports", "Settings", "Update"}
    for cls in classes:
        parameters = list(inspect.signature(cls).parameters.values())
        fields = [f for f in dataclasses.fields(cls) if f.init]
        assert [p.name for p in parameters] == [f.name for f in fields], cls
        for p, f in zip(parameters, fields, strict=True):
            if f.default_factory is not dataclasses.MISSING:
                assert p.default is FACTORY, (cls, f.name)
            elif f.default is not dataclasses.MISSING:
                assert p.default == f.default, (cls, f.name)
            elif "__slots__" not in vars(cls):  # slots keep the defaults in __init__ only
                assert p.default is inspect.Parameter.empty, (cls, f.name)
