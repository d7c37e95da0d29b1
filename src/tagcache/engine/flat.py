"""One record type of the compiled engine's flat state: a numba structref, or a plain object.

Why not numba's own ``structref.define_proxy``: its constructor is compiled afresh in every
process (about 0.3 s a type, never cached), its proxy has no Python attributes, and under
``NUMBA_DISABLE_JIT=1`` constructing it recurses forever. A state type here is declared once,
as ``(name, numba type)`` pairs, and :func:`state_class` gives the class to construct it with:

* compiled: a ``StructRefProxy`` built by the module's own ``@njit(cache=True)`` constructor
  (``structref.new`` then one assignment per field), whose Python attributes read the fields
  through one cached getter that returns them all as a tuple (an array field replaced by a
  step function, a grown buffer, reads as the new array);
* ``NUMBA_DISABLE_JIT=1``: a plain object with the same attributes, which the step functions,
  then plain Python, read and assign as they would the structref.

Each module keeps the StructRef subclass, the constructor and the getter at module level,
named, so numba's cache and pickle find them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from numba.core import config
from numba.experimental import structref


def state_class(typeclass: type, fields: Sequence[str], new: Callable, unpack: Callable,
                name: str, module: str, doc: str) -> type:
    """The Python class of a state record with ``fields`` (in ``new``'s argument order);
    ``name`` and ``module`` are where it is assigned, for pickling."""
    fields = tuple(fields)
    if config.DISABLE_JIT:
        def __init__(self, *args):
            if len(args) != len(fields):
                raise TypeError(f"{name} takes {len(fields)} fields, {len(args)} given")
            for f, v in zip(fields, args, strict=True):
                setattr(self, f, v)

        cls = type(name, (), {"__slots__": fields, "__init__": __init__, "__doc__": doc,
                              "__module__": module})
        return cls

    def __new__(cls, *args):
        return new(*args)

    ns = {"__new__": __new__, "__doc__": doc, "__module__": module}
    for i, f in enumerate(fields):
        ns[f] = property(lambda self, i=i: unpack(self)[i])
    cls = type(name, (structref.StructRefProxy,), ns)
    cls.__qualname__ = name
    structref.define_boxing(typeclass, cls)
    return cls
