"""Value classes that behave like dataclasses without compiling code at import.

`@dataclass(frozen=True, slots=True)` writes `__init__`, `__repr__`, `__eq__`, `__hash__`,
`__setattr__` and `__delattr__` as source text and compiles each (and `slots=True` then
builds the class a second time): about a millisecond per class, which on a cold start
(a Lambda importing its entry) adds up to a good part of the whole import. `valueclass`
gives a class the same behaviour from shared functions instead, so declaring one costs
about what a plain class does:

- the dataclass metadata (`dataclasses.fields`, `replace`, `asdict`, `__match_args__`),
  with `field(...)` options honoured for `repr`, `compare` and `hash`;
- equality over the compared fields between instances of the same class (else
  NotImplemented), and, when frozen, the hash of those fields;
- the dataclass `repr`;
- when frozen, assignment and deletion refused with `dataclasses.FrozenInstanceError`
  (and, with `__slots__`, pickling and copying that still work); assigning a name that
  is not a field is refused too (a slotted frozen dataclass fails there with a TypeError
  from its `super()` call instead).

The class writes its own `__init__`, setting its fields with `object.__setattr__` (or
its slots' setters): hand-written construction is as fast as the generated one, and a
class that validates does it there. Type checkers see a (frozen) dataclass.
"""

from __future__ import annotations

import dataclasses
import operator
import reprlib
from collections.abc import Callable
from typing import Any, Final, TypeVar, dataclass_transform, overload

_T = TypeVar("_T")

#: The default of an `__init__` parameter whose field's default is made per instance (a
#: dataclass `default_factory`): `__init__` makes it when it gets this.
FACTORY: Final[Any] = object()


@overload
def valueclass(cls: type[_T], /) -> type[_T]: ...


@overload
def valueclass(*, frozen: bool = True) -> Callable[[type[_T]], type[_T]]: ...


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field,))
def valueclass(cls: type[_T] | None = None, /, *,
          frozen: bool = True) -> type[_T] | Callable[[type[_T]], type[_T]]:
    """Make `cls` a value class: frozen (by default) like `@dataclass(frozen=True)`."""

    def make(target: type[_T]) -> type[_T]:
        return _make(target, frozen)

    return make if cls is None else make(cls)


def _key(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    """The tuple of these attributes of an object (what the generated methods build)."""
    if len(names) > 1:
        return operator.attrgetter(*names)
    if names:
        name = names[0]
        return lambda obj: (getattr(obj, name),)
    return lambda obj: ()


def _make(cls: type[_T], frozen: bool) -> type[_T]:
    if "__init__" not in cls.__dict__:
        raise TypeError(f"value class {cls.__qualname__} must define __init__")
    # Fields and the metadata only: no method is generated (none is compiled).
    cls = dataclasses.dataclass(cls, init=False, repr=False, eq=False)
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    names = tuple(f.name for f in fields)
    compared = _key(tuple(f.name for f in fields if f.compare))
    shown = tuple(f.name for f in fields if f.repr)

    @reprlib.recursive_repr()
    def __repr__(self: Any) -> str:
        return (f"{self.__class__.__qualname__}("
                + ", ".join(f"{name}={getattr(self, name)!r}" for name in shown) + ")")

    def __eq__(self: Any, other: Any) -> Any:
        if other.__class__ is self.__class__:
            return compared(self) == compared(other)
        return NotImplemented

    cls.__repr__ = __repr__  # type: ignore[method-assign]
    cls.__eq__ = __eq__  # type: ignore[method-assign]
    if not frozen:
        cls.__hash__ = None  # type: ignore[assignment, method-assign]  # as a mutable dataclass
        return cls

    hashed = _key(tuple(f.name for f in fields if (f.compare if f.hash is None else f.hash)))

    def __hash__(self: Any) -> int:
        return hash(hashed(self))

    def __setattr__(self: Any, name: str, value: Any) -> None:
        if type(self) is cls or name in names:
            raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")
        super(cls, self).__setattr__(name, value)

    def __delattr__(self: Any, name: str) -> None:
        if type(self) is cls or name in names:
            raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")
        super(cls, self).__delattr__(name)

    cls.__hash__ = __hash__  # type: ignore[method-assign]
    cls.__setattr__ = __setattr__  # type: ignore[method-assign]
    cls.__delattr__ = __delattr__  # type: ignore[method-assign]
    if "__slots__" in cls.__dict__:
        # No __dict__ to restore: pickle and copy set the slots through these.
        def __getstate__(self: Any) -> list[Any]:
            return [getattr(self, name) for name in names]

        def __setstate__(self: Any, state: list[Any]) -> None:
            for name, item in zip(names, state, strict=False):
                object.__setattr__(self, name, item)

        cls.__getstate__ = __getstate__  # type: ignore[method-assign]
        cls.__setstate__ = __setstate__  # type: ignore[attr-defined]
    return cls
