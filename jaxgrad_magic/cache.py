"""A key for "the same function reading the same values", so re-runs compile nothing.

Plain JAX recompiles whenever ``jax.grad(f)`` is rebuilt or a cell re-defines ``f``. The
key here is built from what decides the traced program: the code object (CPython
compares code by bytecode, constants, names and line table, not by file name, so a re-run
cell matches), defaults, closure values and the globals the code reads (nested code included),
through every notebook helper it calls, and objects by their attributes (properties, static
and class methods by their functions; deques, bytearrays and ``array.array`` by content). A
changed global, attribute, closure value or default gives a different key; shapes and dtypes
are left to ``jax.jit``'s own cache. Functions of other modules are keyed by code and
identity: like ``jax.jit``, rebinding a module global they read is not seen. Modules are keyed
by name.

Two rules keep a hit from ever being stale:

* Whatever the walk cannot read by content (C objects with no attributes, objects whose
  attributes raise, data past the walk's bounds) makes the key volatile: unique to the call,
  never stored, so such a function is rebuilt every time.
* JAX keeps the converted copy of a NumPy constant keyed by the array's identity while any
  traced program holds it, so after ``w[0] = 10`` a *new* trace still computes with the old
  ``w``. A NumPy array seen again with other contents clears JAX's caches (``jax.clear_caches``)
  before anything is rebuilt; JAX's own small programs then compile once more.
"""

from __future__ import annotations

import array
import builtins
import collections
import contextlib
import functools
import hashlib
import itertools
import re
import types
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import jax
import numpy as np

_MAX_DEPTH = 32  # nesting of containers and objects (an object and its __dict__ count two); functions restart it
_MAX_NESTING = 64  # notebook functions calling notebook functions
_MAX_VISITS = 1 << 16  # containers, objects and container items walked for one key
_HASH_LIMIT = 1 << 20  # elements; larger arrays are keyed by identity (JAX arrays are immutable)
_names_cache: dict[types.CodeType, tuple[str, ...]] = {}
_BUILTINS = builtins.__dict__  # live: IPython adds names while a cell runs


def _global_names(code: types.CodeType) -> tuple[str, ...]:
    """Every name ``code`` and its nested code objects may look up as a global."""
    names = _names_cache.get(code)
    if names is None:
        found: dict[str, None] = dict.fromkeys(code.co_names)
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                found.update(dict.fromkeys(_global_names(const)))
        names = _names_cache[code] = tuple(found)
        if len(_names_cache) > 4096:
            _names_cache.clear()
    return names


# id -> (weakref, key) of JAX arrays already hashed. JAX arrays are immutable, so a data array a
# function reads (a global A, X, y) is copied to the host and hashed once, not on every call.
_array_keys: dict[int, tuple[weakref.ref[Any], Hashable]] = {}


def _remember(value: Any, key: Hashable) -> None:
    ident = id(value)

    def forget(ref: weakref.ref[Any]) -> None:
        if _array_keys.get(ident, (None,))[0] is ref:  # not a newer array that reused the id
            del _array_keys[ident]

    with contextlib.suppress(TypeError):  # an array type without weak references: hashed every time
        _array_keys[ident] = (weakref.ref(value, forget), key)


# id -> (weakref, digest) of every NumPy array keyed so far. JAX keeps the converted copy of a
# NumPy constant keyed by the array's identity for as long as a traced program holds it, so after
# an in-place change every new trace, jit or not, still sees the old values. An array seen again
# with new contents is the sign: JAX's caches are cleared before anything is rebuilt.
_numpy_digests: dict[int, tuple[weakref.ref[Any], bytes]] = {}


def _saw_numpy(value: np.ndarray, digest: bytes) -> bool:
    """Record ``value``'s digest; True when the same array was seen before with other contents."""
    ident = id(value)
    known = _numpy_digests.get(ident)
    changed = known is not None and known[0]() is value and known[1] != digest
    if known is None or known[0]() is not value or changed:

        def forget(ref: weakref.ref[Any]) -> None:
            if _numpy_digests.get(ident, (None,))[0] is ref:  # not a newer array that reused the id
                del _numpy_digests[ident]

        with contextlib.suppress(TypeError):
            _numpy_digests[ident] = (weakref.ref(value, forget), digest)
    return changed


_volatile_keys = itertools.count()


class _Keyer:
    """Builds one key; holds strong references to everything keyed by identity."""

    def __init__(self) -> None:
        self.refs: list[Any] = []
        self.volatile = False  # something was keyed by identity that can change in place
        self.changed_in_place = False  # a NumPy array seen before now holds other values
        self._active: set[int] = set()
        self._functions: dict[int, Hashable] = {}  # each function is walked once per key
        self._home: dict[str, Any] | None = None  # the namespace of the first function: the notebook's
        self._nesting = 0
        self._visits = 0

    def ident(self, tag: str, value: Any) -> Hashable:
        self.refs.append(value)
        return (tag, id(value))

    def beyond(self, tag: str, value: Any) -> Hashable:
        """A value past the walk's bounds: by identity, and the key is volatile if it can change in place."""
        if not _immutable(value):
            self.volatile = True
        return self.ident(tag, value)

    def array(self, value: Any) -> Hashable:
        if isinstance(value, jax.Array) and jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key):
            # Typed PRNG keys do not convert to NumPy; their raw key data does.
            return ("prng-key", str(value.dtype), self.array(jax.random.key_data(value)))
        if isinstance(value, jax.Array):
            known = _array_keys.get(id(value))
            if known is not None and known[0]() is value:
                return known[1]
        shape, dtype = tuple(np.shape(value)), str(value.dtype)
        if isinstance(value, jax.Array) and (value.size > _HASH_LIMIT or not value.is_fully_addressable):
            return ("jax.Array", shape, dtype, self.ident("array", value))
        if isinstance(value, np.ndarray) and value.dtype == object:
            return self.beyond("object-array", value)
        data = np.ascontiguousarray(np.asarray(value))
        digest = hashlib.blake2b(data.view(np.uint8).reshape(-1) if data.size else b"", digest_size=16).digest()
        weak = bool(getattr(value, "weak_type", False))
        key = ("array", shape, dtype, weak, digest)
        if isinstance(value, jax.Array):
            _remember(value, key)
        elif isinstance(value, np.ndarray) and _saw_numpy(value, digest):
            self.changed_in_place = True
        return key

    def value(self, value: Any, depth: int = 0) -> Hashable:
        if value is None or isinstance(value, bool | int | str | bytes):
            return (type(value).__name__, value)
        if isinstance(value, float | complex):
            return (type(value).__name__, repr(value))  # repr tells 0.0 from -0.0
        if isinstance(value, types.ModuleType):
            return ("module", value.__name__)
        if isinstance(value, jax.Array | np.ndarray | np.generic):
            return self.array(value)
        if isinstance(value, types.FunctionType):
            return self.function(value)
        if isinstance(value, list | tuple) and (packed := _packed(value)) is not None:
            return (type(value).__name__, packed)
        if id(value) in self._active:
            return ("cycle",)  # already being keyed further up
        # A container is charged its items too, so the bound holds however the data is nested.
        self._visits += 1 + (len(value) if isinstance(value, tuple | list | dict | set | frozenset) else 0)
        if depth >= _MAX_DEPTH or self._visits > _MAX_VISITS:
            return self.beyond("large", value)
        self._active.add(id(value))
        try:
            return self._compound(value, depth + 1)
        except Exception:  # an object whose attributes raise (a dict with __getattr__ = __getitem__)
            self.volatile = True
            return self.ident("unkeyable", value)
        finally:
            self._active.discard(id(value))

    def _compound(self, value: Any, depth: int) -> Hashable:
        if isinstance(value, functools.partial):
            return (
                "partial",
                self.value(value.func, depth),
                self.value(value.args, depth),
                self.value(value.keywords, depth),
            )
        jax_wrapper = callable(value) and type(value).__module__.startswith("jax")
        wrapped = getattr(value, "__wrapped__", None) if jax_wrapper else None
        if wrapped is not None:
            # Public attributes hold what changes the derivative (a custom_jvp's rule, a custom_vjp's
            # fwd/bwd); private ones hold source locations that differ on every cell run.
            public = {k: v for k, v in getattr(value, "__dict__", {}).items() if not k.startswith("_")}
            return ("jax-wrapped", type(value).__name__, self.value(wrapped, depth), self.value(public, depth))
        if isinstance(value, property):  # a notebook class's property reads what its getter reads
            return ("property", self.value(value.fget, depth), self.value(value.fset, depth))
        if isinstance(value, staticmethod | classmethod | functools.cached_property):
            return (type(value).__name__, self.value(value.__func__ if hasattr(value, "__func__") else value.func))
        if isinstance(value, collections.deque):
            return ("deque", value.maxlen, tuple(self.value(v, depth) for v in value))
        if isinstance(value, bytearray | array.array | memoryview):
            return (type(value).__name__, getattr(value, "typecode", None), bytes(value))
        if isinstance(value, types.MethodType):  # a bound method reads its object
            return ("method", self.value(value.__func__, depth), self.value(value.__self__, depth))
        if isinstance(value, type) and self._home is not None and value.__module__ == self._home.get("__name__"):
            # A class defined in the notebook: by content, so a re-run cell defining it again hits.
            attrs = {k: v for k, v in vars(value).items() if k not in ("__dict__", "__weakref__")}
            return ("class", value.__qualname__, self.value(value.__bases__, depth), self.value(attrs, depth))
        if isinstance(value, type | types.BuiltinFunctionType):
            return self.ident(type(value).__name__, value)
        if isinstance(value, tuple | list):
            return (type(value).__name__, tuple(self.value(v, depth) for v in value))
        if isinstance(value, dict):
            return ("dict", tuple((self.value(k, depth), self.value(v, depth)) for k, v in value.items()))
        if isinstance(value, set | frozenset):  # `skip = {"bias"}` can change in place too
            return (type(value).__name__, frozenset(self.value(v, depth) for v in value))
        leaves, treedef = jax.tree_util.tree_flatten(value)
        if len(leaves) != 1 or leaves[0] is not value:  # a registered pytree: key its leaves
            return ("pytree", treedef, tuple(self.value(v, depth) for v in leaves))
        attrs = getattr(value, "__dict__", None)
        slots = _slot_names(type(value))
        if slots:  # e.g. a dataclass with slots=True: its fields live outside __dict__
            attrs = {**(attrs if isinstance(attrs, dict) else {}), **{n: getattr(value, n, _ABSENT) for n in slots}}
        if isinstance(attrs, dict):
            # By its attributes, not identity: `cfg.scale = 3.0` must give a new key.
            return ("object", self.value(type(value), depth), self.value(attrs, depth))
        # A C object with no attributes to read: by identity, and rebuilt each time if it could change.
        return self.beyond("object", value)

    def function(self, fn: types.FunctionType) -> Hashable:
        """A function's key: its code, defaults, closure and the globals it reads, helpers included.

        Functions of the notebook (sharing the first function's globals) are walked however
        deeply they call each other, so a global read by any helper is in the key. Functions
        from other modules are keyed by code and identity.
        """
        known = self._functions.get(id(fn))
        if known is not None:
            return known
        if id(fn) in self._active:
            return ("cycle",)  # recursion: already being keyed further up
        glb = fn.__globals__
        if self._home is None:
            self._home = glb
        if glb is not self._home:
            key: Hashable = ("library-function", fn.__qualname__, fn.__code__, self.ident("function", fn))
        elif self._nesting >= _MAX_NESTING:
            key = ("deep-function", fn.__code__, self.beyond("function", fn))
        else:
            self._active.add(id(fn))
            self._nesting += 1
            try:
                key = self._walk(fn)
            finally:
                self._nesting -= 1
                self._active.discard(id(fn))
        self._functions[id(fn)] = key
        return key

    def _walk(self, fn: types.FunctionType) -> Hashable:
        code = fn.__code__
        glb = fn.__globals__
        globals_key = []
        for name in _global_names(code):
            if name in glb:
                globals_key.append((name, self.value(glb[name])))
            elif name not in _BUILTINS:  # not hasattr: a failed lookup raises inside, ~1 us
                globals_key.append((name, "<unbound>"))
        closure = tuple(self.value(c.cell_contents) if _filled(c) else "<empty>" for c in (fn.__closure__ or ()))
        return (
            "function",
            code,
            self.value(fn.__defaults__),
            self.value(fn.__kwdefaults__),
            closure,
            tuple(globals_key),
            id(glb),
        )


def _packed(items: list[Any] | tuple[Any, ...]) -> Hashable | None:
    """A digest of a long list of Python floats, or of ints (data kept in a list), made at C speed
    rather than one key per item; None for anything else."""
    if len(items) < 32:
        return None
    kinds = set(map(type, items))
    code = "d" if kinds == {float} else "q" if kinds == {int} else None
    if code is None:
        return None
    try:
        data = array.array(code, items)  # a float's exact bits (0.0 and -0.0 differ)
    except OverflowError:  # ints beyond 64 bits
        return None
    return (code, len(items), hashlib.blake2b(data, digest_size=16).digest())


@functools.lru_cache(maxsize=1024)
def _slot_names(cls: type) -> tuple[str, ...]:
    """The attribute names ``cls`` and its bases declare in ``__slots__`` (private ones mangled)."""
    names: dict[str, None] = {}
    for base in cls.__mro__:
        declared = base.__dict__.get("__slots__", ())
        for name in (declared,) if isinstance(declared, str) else declared:
            if name.startswith("__") and not name.endswith("__"):
                name = f"_{base.__name__.lstrip('_')}{name}"
            if name not in ("__dict__", "__weakref__"):
                names[name] = None
    return tuple(names)


def _filled(cell: types.CellType) -> bool:
    try:
        cell.cell_contents  # noqa: B018
    except ValueError:
        return False
    return True


# Values whose key cannot change while the object stays the same (JAX arrays are immutable).
_IMMUTABLE = (
    type(None),
    bool,
    int,
    float,
    complex,
    str,
    bytes,
    range,
    slice,
    re.Pattern,
    types.ModuleType,
    np.number,
    np.bool_,
    np.dtype,
    np.ufunc,
    jax.Array,
    jax.sharding.Sharding,
    jax.sharding.Mesh,
)
_ABSENT = object()


def _immutable(value: Any) -> bool:
    if isinstance(value, tuple):
        return all(_immutable(v) for v in value)
    return isinstance(value, _IMMUTABLE)


def function_key(fn: Callable[..., Any]) -> tuple[Hashable, list[Any]]:
    """A hashable key for ``fn`` and the objects the key refers to by identity.

    Args:
      fn: any callable.

    Returns:
      ``(key, refs)``: equal keys mean the same traced program for the same argument
      shapes; keep ``refs`` alive as long as the key is stored, so identities stay unique.
      A volatile key (see the module docstring) equals no other key.
    """
    keyer = _Keyer()
    key = keyer.value(fn)
    if keyer.changed_in_place:
        # The only public way to drop JAX's identity-keyed copy of the old values; without it the
        # rebuilt program (and the user's own jitted functions) would compute with them.
        jax.clear_caches()
    if keyer.volatile:
        return ("volatile", next(_volatile_keys), key), keyer.refs
    return key, keyer.refs


def _is_volatile(key: Hashable) -> bool:
    """Whether ``key`` (a tuple of parts, one of which may be a function key) contains a volatile key."""
    parts = key if isinstance(key, tuple) else (key,)
    # p[0] is checked to be a str first: a PyTreeDef compared with a str raises in older jaxlib.
    return any(isinstance(p, tuple) and p and isinstance(p[0], str) and p[0] == "volatile" for p in parts)


class TransformCache:
    """A bounded LRU map from (function key, transform options) to built transforms."""

    def __init__(self, maxsize: int = 256) -> None:
        self.maxsize = maxsize
        self._entries: OrderedDict[Hashable, tuple[Any, list[Any]]] = OrderedDict()

    def get_or_build(self, key: Hashable, refs: list[Any], build: Callable[[], Any]) -> Any:
        """Return the cached value for ``key``, building and storing it on a miss."""
        entry = self._entries.get(key)
        if entry is not None:
            # The panel's run thread uses the cache too: another thread may evict the entry
            # between get and move_to_end; the value in hand is still right.
            with contextlib.suppress(KeyError):
                self._entries.move_to_end(key)
            return entry[0]
        value = build()
        if _is_volatile(key):  # it can never be asked for again: keeping it only holds memory
            return value
        self._entries[key] = (value, refs)
        if len(self._entries) > self.maxsize:
            self._entries.popitem(last=False)
        return value

    def clear(self) -> None:
        """Forget every entry."""
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


CACHE = TransformCache()
