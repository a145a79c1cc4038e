"""What each layer of caching buys: the same cells timed with the layer on and switched off.

A cache must buy at least a fifth of a path a person can feel. The paths timed here are the
ones people repeat: re-running a ``%jgrad`` line on an existing function, and re-running a
``%%jgrad`` cell (which defines the function anew every time). Each layer is switched off by
replacing it with its uncached equivalent in this process only; rounds alternate the variants
(after warming each) and the table quotes each variant's time as a ratio of the full package.

Layers (two more were measured and removed: a memo of function keys, which saved 13-19% of a
0.3-0.8 ms re-run, and a per-function "plan" reusing the last call's checks and evaluator on a
repeated line, 14-27%; neither is a path a person can feel):

* ``transform cache``: compiled programs kept under the function's content key. Off: every
  call builds and compiles ``jax.jit(...)`` anew (what plain JAX does on a re-run cell).
* ``array digest memo``: a JAX array read as a global is hashed once. Off: hashed every call.

Run with ``.venv/bin/python benchmarks/bench_cache_layers.py`` (``--quick`` for fewer rounds).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence

import jax
from harness import FEWER_ROUNDS, alternate, arguments, new_shell, run, table, us

import jaxgrad_magic.cache as cache


@contextlib.contextmanager
def _patched(obj: object, name: str, value: object) -> Iterator[None]:
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def _no_transform_cache() -> contextlib.AbstractContextManager[None]:
    return _patched(cache.CACHE, "get_or_build", lambda key, refs, build: build())


def _no_array_memo() -> contextlib.AbstractContextManager[None]:
    return _patched(cache, "_remember", lambda value, key: None)


LAYERS: dict[str, Callable[[], contextlib.AbstractContextManager[None]]] = {
    "transform cache": _no_transform_cache,
    "array digest memo": _no_array_memo,
}


def _variant_cell(source: str, layer: str | None) -> str:
    """``source`` run with ``layer`` switched off (the switch lives in the shell's namespace)."""
    if layer is None:
        return source
    return f"with _off[{layer!r}]():\n" + "".join(f"    {line}\n" for line in source.splitlines())


def main(argv: Sequence[str] | None = None) -> int:
    """Time each path with every layer on, and with each layer off in turn; print the ratios."""
    args = arguments(__doc__, FEWER_ROUNDS, strict=False).parse_args(argv)
    rounds, calls = (6, 10) if args.quick else (20, 20)
    shell = new_shell("import jax\nimport jax.numpy as jnp\nimport numpy as np")
    shell.user_ns["_off"] = LAYERS
    run(
        shell,
        "x = jnp.linspace(0.1, 1.0, 3)\n"
        "data = jax.random.normal(jax.random.key(0), (200_000,))\n"
        "def f(x):\n    return jnp.sum(jnp.sin(x) ** 2)\n"
        "def fit(x):\n    return jnp.mean((data[:3] * x - 1.0) ** 2) + jnp.sum(data) * 0.0\n",
    )
    paths = {
        "r = %jgrad f at=x  (line, re-run)": "r = %jgrad f at=x",
        "r = %jgrad fit at=x  (line, reads a 200k array)": "r = %jgrad fit at=x",
        "%%jgrad cell re-run": "r = get_ipython().run_cell_magic('jgrad', 'at=x', "
        "'def g(x):\\n    return jnp.sum(jnp.sin(x) ** 2)\\n')",
    }
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; medians of {rounds} alternating rounds\n")
    rows: list[list[str]] = []
    for path, source in paths.items():
        cells = {"all layers": source} | {f"no {layer}": _variant_cell(source, layer) for layer in LAYERS}
        warm = 3 if "transform" in "".join(cells) else 20
        t = alternate(shell, cells, rounds, calls, warm=warm)
        for label in cells:
            ratio = t.ratio(label, "all layers")
            saved = 1 - 1 / ratio if ratio > 0 else 0.0
            rows.append([path, label, us(t[label]), f"{ratio:.2f}x", f"{saved:+.0%}"])
    print(table(rows, ["path", "variant", "time", "vs all layers", "share the layer saves"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
