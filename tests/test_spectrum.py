"""The Hessian's spectrum from Hessian-vector products: against the dense eigendecomposition and closed forms.

Small problems are compared with ``jnp.linalg.eigh`` of the dense Hessian (``jax.hessian``);
large ones are rotated diagonal quadratics ``f(x) = ½ Σ λᵢ (U x)ᵢ²`` with ``U`` an orthogonal
transform (a sign flip, then the orthonormal DCT), whose Hessian ``Uᵀ diag(λ) U`` has exactly
the eigenvalues ``λ`` and the trace ``Σ λ`` at any size, with no matrix anywhere.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import png_pixels, run_json_script
from jax.flatten_util import ravel_pytree

import jaxgrad_magic as jgm
from jaxgrad_magic import curvature
from jaxgrad_magic.curvature import Spectrum
from jaxgrad_magic.errors import JaxGradUsageError
from jaxgrad_magic.objective import make_objective
from jaxgrad_magic.spectrum_plot import HEIGHT, WIDTH


def rotated_quadratic(lam: np.ndarray, seed: int = 0) -> Callable[[jax.Array], jax.Array]:
    """``½ Σ λᵢ (U x)ᵢ²`` with ``U = DCT · diag(±1)``: its Hessian's eigenvalues are exactly ``lam``."""
    signs = jnp.asarray(np.random.default_rng(seed).choice([-1.0, 1.0], len(lam)).astype(np.float32))
    lam_j = jnp.asarray(np.asarray(lam, dtype=np.float32))

    def f(x: jax.Array) -> jax.Array:
        y = jax.scipy.fft.dct(signs * x, norm="ortho")
        return 0.5 * jnp.sum(lam_j * y**2)

    return f


def dense_eigenvalues(fn: Callable[..., Any], args: tuple[Any, ...], argnums: Any = 0) -> np.ndarray:
    """The eigenvalues of the dense Hessian over the arguments at ``argnums``, ascending (``jnp.linalg.eigh``)."""
    positions = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    picked = tuple(args[i] for i in positions)
    flat, unravel = ravel_pytree(picked)

    def of_flat(v: jax.Array) -> jax.Array:
        values = list(args)
        for i, value in zip(positions, unravel(v), strict=True):
            values[i] = value
        return fn(*values)

    return np.asarray(jnp.linalg.eigh(jax.hessian(of_flat)(flat))[0], dtype=np.float64)


def wavy(x: jax.Array, y: dict[str, jax.Array], scale: float) -> jax.Array:
    """A non-quadratic function of a vector and a dict: its Hessian has both signs."""
    a = jnp.arange(1.0, 1.0 + x.size)
    return scale * jnp.sum(jnp.sin(a * x) ** 2) + jnp.sum(x[:4] * y["w"]) ** 2 - 0.3 * jnp.sum(jnp.cos(y["v"] @ x[:3]))


WAVY_AT = (
    jnp.linspace(-1.0, 1.0, 9),
    {"w": jnp.array([0.5, -1.0, 2.0, 0.25]), "v": jnp.array([[1.0, 2.0, -1.0], [0.5, 0.0, 1.5]])},
    1.5,
)


@pytest.fixture(scope="module")
def small() -> tuple[Spectrum, np.ndarray]:
    """The spectrum of ``wavy`` over a vector and a dict (19 parameters), and the dense eigenvalues."""
    return jgm.spectrum(wavy, at=WAVY_AT, argnums=(0, 1), k=3), dense_eigenvalues(wavy, WAVY_AT, (0, 1))


# ---------------------------------------------------------------------------- exactness, small


def test_small_problems_match_the_dense_eigendecomposition(small: tuple[Spectrum, np.ndarray]) -> None:
    sp, ev = small
    scale = np.max(np.abs(ev))
    np.testing.assert_allclose(sp.top, ev[::-1][:3], atol=2e-5 * scale)
    np.testing.assert_allclose(sp.bottom, ev[:3], atol=2e-5 * scale)
    assert sp.size == 19 and sp.iterations <= 19 and sp.converged
    assert np.all(np.diff(sp.top) <= 0) and np.all(np.diff(sp.bottom) >= 0)


def test_the_products_are_counted(small: tuple[Spectrum, np.ndarray]) -> None:
    sp, _ = small
    # The extreme run, then every probe's steps (as many as there are parameters, here fewer than 32).
    assert sp.hvps == sp.iterations + sp.probes * min(curvature.PROBE_STEPS, sp.size)


def test_the_trace_is_within_its_standard_error(small: tuple[Spectrum, np.ndarray]) -> None:
    sp, ev = small
    assert sp.trace_error > 0
    assert abs(sp.trace - ev.sum()) < 4 * sp.trace_error


def test_many_probes_give_hutchinsons_standard_error_and_the_true_density() -> None:
    probes = 96
    sp = jgm.spectrum(wavy, at=WAVY_AT, argnums=(0, 1), probes=probes, seed=3)
    flat, unravel = ravel_pytree(WAVY_AT[:2])
    h = np.asarray(jax.hessian(lambda v: wavy(*unravel(v), WAVY_AT[2]))(flat), dtype=np.float64)
    ev = np.linalg.eigvalsh(h)
    # Var(zᵀHz) = 2 (‖H‖²_F - Σ H_ii²) for Rademacher z.
    expected = math.sqrt(2 * (np.sum(h**2) - np.sum(np.diag(h) ** 2)) / probes)
    assert 0.6 * expected < sp.trace_error < 1.6 * expected
    assert abs(sp.trace - ev.sum()) < 4 * expected
    # Each probe's quadrature is exact here (19 steps span everything): the average tends to the
    # eigenvalues broadened by the same Gaussians.
    d = sp.density
    want = np.exp(-0.5 * ((d.grid[:, None] - ev[None]) / d.sigma) ** 2).sum(1) / (d.sigma * math.sqrt(2 * math.pi))
    want /= len(ev)
    step = d.grid[1] - d.grid[0]
    assert np.sum(np.abs(d.values - want)) * step < 0.25


def test_the_density_integrates_to_one_and_its_mean_is_the_trace(small: tuple[Spectrum, np.ndarray]) -> None:
    sp, _ = small
    d = sp.density
    step = d.grid[1] - d.grid[0]
    assert np.allclose(np.diff(d.grid), step, rtol=1e-4)  # evenly spaced, to float32 rounding
    assert abs(np.sum(d.values) * step - 1) < 1e-3
    # Each probe's first Lanczos coefficient is zᵀHz / n: the density's mean is the trace over n.
    span = d.grid[-1] - d.grid[0]
    assert abs(np.sum(d.grid * d.values) * step - sp.trace / sp.size) < 1e-3 * span
    assert d.grid[0] <= sp.bottom[0] and d.grid[-1] >= sp.top[0]


def test_the_hessian_vector_product_is_the_dense_hessian_times_v() -> None:
    x = jnp.array([0.3, -1.2, 2.0])

    def f(p: jax.Array, dyn: Any) -> jax.Array:
        return jnp.sum(jnp.sin(p) * p**3) + p[0] * p[2]

    v = jnp.array([1.0, -2.0, 0.5])
    got = curvature.hvp_of(f, False, x, None)(v)
    np.testing.assert_allclose(got, jax.hessian(f)(x, None) @ v, rtol=1e-5)


# ---------------------------------------------------------------------------- closed forms, large


N = 20_000


@pytest.fixture(scope="module")
def saddle_spectrum() -> tuple[Spectrum, np.ndarray]:
    # Three separated eigenvalues at each end around a bulk in [-0.5, 2]: both ends converge fast.
    lam = np.concatenate([[10.0, 9.0, 8.0], np.linspace(-0.5, 2.0, N - 6), [-2.0, -3.0, -4.0]])
    return jgm.spectrum(rotated_quadratic(lam), at=jnp.ones(N)), lam


def test_a_large_rotated_quadratic_has_its_closed_form_eigenvalues(
    saddle_spectrum: tuple[Spectrum, np.ndarray],
) -> None:
    sp, lam = saddle_spectrum
    assert sp.converged and sp.size == N
    np.testing.assert_allclose(sp.top, [10.0, 9.0, 8.0], atol=1e-3 * 10)
    np.testing.assert_allclose(sp.bottom, [-4.0, -3.0, -2.0], atol=1e-3 * 10)
    assert np.all(np.abs(sp.top - [10.0, 9.0, 8.0]) <= sp.top_error + 1e-4)  # each within its residual
    assert abs(sp.trace - lam.sum()) < 4 * sp.trace_error
    assert sp.iterations < 100 and sp.hvps == sp.iterations + sp.probes * curvature.PROBE_STEPS


def test_a_negative_bottom_is_a_saddle_and_has_no_condition_number(
    saddle_spectrum: tuple[Spectrum, np.ndarray],
) -> None:
    sp, _ = saddle_spectrum
    assert sp.saddle
    assert sp.condition is None
    assert "3 saddle directions" in str(sp)
    assert "condition" not in str(sp)


def test_a_positive_definite_hessian_has_its_condition_number() -> None:
    lam = np.concatenate([[100.0], np.linspace(5.0, 50.0, N - 2), [1.0]])
    sp = jgm.spectrum(rotated_quadratic(lam, seed=1), at=jnp.ones(N), k=1)
    assert not sp.saddle
    assert sp.condition == pytest.approx(100.0, rel=1e-3)
    assert re.search(r"condition = 100(\.0*)? \(λmax / λmin\)", str(sp))
    assert "saddle" not in str(sp)


def test_pytree_arguments_have_the_eigenvalues_of_their_flattened_hessian() -> None:
    lam = np.concatenate([[7.0, 6.5], np.linspace(0.0, 3.0, 1994), [-1.5, -1.0]])
    rotate = rotated_quadratic(lam, seed=2)

    def f(p: dict[str, jax.Array], q: jax.Array) -> jax.Array:
        return rotate(jnp.concatenate([p["a"], p["b"].ravel(), q]))

    at = ({"a": jnp.ones(98), "b": jnp.full((30, 30), 0.5)}, jnp.zeros(1000))
    sp = jgm.spectrum(f, at=at, argnums=(0, 1), k=2)
    assert sp.size == 1998
    np.testing.assert_allclose(sp.top, [7.0, 6.5], atol=1e-3 * 7)
    np.testing.assert_allclose(sp.bottom, [-1.5, -1.0], atol=1e-3 * 7)
    assert abs(sp.trace - lam.sum()) < 4 * sp.trace_error


def test_a_repeated_eigenvalue_is_found_as_often_as_it_occurs() -> None:
    # The Krylov space of one start vector reaches a repeated eigenvalue once; Lanczos restarts
    # from a fresh direction when it runs out, so all three copies are found.
    lam = np.concatenate([[5.0, 5.0, 5.0], np.ones(197)])
    sp = jgm.spectrum(rotated_quadratic(lam, seed=4), at=jnp.ones(200), k=3)
    np.testing.assert_allclose(sp.top, [5.0, 5.0, 5.0], atol=1e-4)
    np.testing.assert_allclose(sp.bottom, [1.0, 1.0, 1.0], atol=1e-4)


# ---------------------------------------------------------------------------- cost


def test_a_rerun_and_a_new_tolerance_compile_nothing(compiles: Any) -> None:
    f = rotated_quadratic(np.linspace(1.0, 2.0, 64), seed=5)
    jgm.spectrum(f, at=jnp.ones(64), tol=1e-3)
    compiles.reset()
    again = jgm.spectrum(f, at=jnp.ones(64), tol=1e-5, seed=9)
    assert compiles.count == 0
    np.testing.assert_allclose(again.top[0], 2.0, rtol=1e-5)


def test_the_memory_grows_with_the_basis_not_with_a_matrix() -> None:
    n = 50_000
    f = rotated_quadratic(np.linspace(-1.0, 1.0, n), seed=6)
    objective = make_objective(f, (jnp.ones(n),), 0, "f", False)
    plan = curvature.check_request(3, 1e-3, n)
    program = curvature._spectrum_program(objective.loss_fn, False, plan, None)
    compiled = jax.jit(program).lower(objective.params0, objective.dynamic, np.uint32(0), 1e-3).compile()
    memory = compiled.memory_analysis()
    vectors = plan.iterations + 1 + 16  # the Lanczos basis and a few working vectors: the probes keep none
    assert memory.temp_size_in_bytes < vectors * n * 4 + (1 << 20)
    # Only a handful of numbers come back: the loss and the packed eigenvalues, trace and density.
    assert memory.output_size_in_bytes < 8 * (curvature._packed_length(plan) + 8)


@pytest.mark.slow
def test_a_million_parameters_fit_in_a_few_hundred_megabytes() -> None:
    out = run_json_script(["-c", MILLION])
    assert out["temp_mb"] < 500
    assert out["top"] == pytest.approx([10.0, 9.0, 8.0], abs=1e-2)
    assert out["bottom"] == pytest.approx([-4.0, -3.0, -2.0], abs=1e-2)


MILLION = r"""
import json, resource
import jax, jax.numpy as jnp, numpy as np
import jaxgrad_magic as jgm
from jaxgrad_magic import curvature
from jaxgrad_magic.objective import make_objective
n = 1_000_000
lam = jnp.asarray(np.concatenate([[10.0, 9.0, 8.0], np.linspace(-0.5, 2.0, n - 6), [-2.0, -3.0, -4.0]]), jnp.float32)
def f(x):
    return 0.5 * jnp.sum(lam * jax.scipy.fft.dct(x, norm="ortho") ** 2)
o = make_objective(f, (jnp.ones(n),), 0, "f", False)
plan = curvature.check_request(3, 1e-3, n)
program = curvature._spectrum_program(o.loss_fn, False, plan, None)
memory = jax.jit(program).lower(o.params0, o.dynamic, np.uint32(0), 1e-3).compile().memory_analysis()
sp = jgm.spectrum(f, at=jnp.ones(n))
print("RESULT " + json.dumps({"temp_mb": memory.temp_size_in_bytes / 2**20, "top": sp.top.tolist(),
                              "bottom": sp.bottom.tolist()}))
"""


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"k": 0}, r"k=0 must be a whole number of at least 1"),
        ({"k": 20}, r"k=20 asks for more eigenvalues than the Hessian has: it is 19x19.*Use k=19 or less"),
        ({"k": 2.5}, r"k=2.5 must be a whole number"),
        ({"tol": 0}, r"tol=0 must be a number between 0 and 1"),
        ({"tol": -1e-3}, r"tol=-0.001 must be a number between 0 and 1"),
        ({"tol": 1.0}, r"tol=1.0 must be a number between 0 and 1"),
        ({"probes": 1}, r"probes=1 must be a whole number of at least 2"),
    ],
)
def test_bad_options_say_what_to_use(options: dict[str, Any], says: str) -> None:
    with pytest.raises(JaxGradUsageError, match=says):
        jgm.spectrum(wavy, at=WAVY_AT, argnums=(0, 1), **options)


def test_a_function_that_is_not_scalar_has_no_spectrum() -> None:
    with pytest.raises(JaxGradUsageError, match=r"needs vec to return one real number.*shape \(3,\).*jnp.sum"):
        jgm.spectrum(lambda x: jnp.sin(x), at=jnp.ones(3), fn_name="vec")


def test_no_point_no_spectrum() -> None:
    def f(x: jax.Array) -> jax.Array:
        return jnp.sum(x**2)

    with pytest.raises(JaxGradUsageError, match=r"needs a point to evaluate f at: add at="):
        jgm.spectrum(f)


@jax.custom_vjp
def reverse_only(x: jax.Array) -> jax.Array:
    return jnp.sum(x**2)


reverse_only.defvjp(lambda x: (reverse_only(x), x), lambda x, g: (2 * g * x,))


def branchy(x: jax.Array) -> jax.Array:
    if x[0] > 0:
        return jnp.sum(x**2)
    return jnp.sum(x)


def test_functions_the_program_cannot_take_are_explained() -> None:
    with pytest.raises(JaxGradUsageError, match=r"custom_vjp.*forward over reverse.*jax.custom_jvp"):
        jgm.spectrum(reverse_only, at=jnp.ones(3))
    with pytest.raises(JaxGradUsageError, match=r"branchy uses Python control flow.*lax loops.*jnp.where"):
        jgm.spectrum(branchy, at=jnp.ones(3))


def test_aux_is_passed_through() -> None:
    def f(x: jax.Array) -> tuple[jax.Array, jax.Array]:
        return jnp.sum(x**2) + x[0] * x[1], x * 2

    r = jgm.api.derive("hess", f, at=jnp.array([1.0, 2.0]), aux=True, spectrum=curvature.Request(k=1))
    np.testing.assert_allclose(r.aux, [2.0, 4.0])
    assert float(r.value) == pytest.approx(7.0)
    np.testing.assert_allclose([r.spectrum.top[0], r.spectrum.bottom[0]], [3.0, 1.0], rtol=1e-5)  # [[2, 1], [1, 2]]


# ---------------------------------------------------------------------------- the magic


def test_hess_spectrum_true_in_a_real_shell(ip: Any, small: tuple[Spectrum, np.ndarray]) -> None:
    ip.ns.update({"wavy": wavy, "x": WAVY_AT[0], "y": WAVY_AT[1]})
    r = ip.run_cell("r = %hess wavy at=(x, y, 1.5) argnums=0,1 spectrum=True\nr")
    sp, ev = small
    assert r.derivative is None  # the matrix was not formed
    np.testing.assert_allclose(r.spectrum.top, sp.top, rtol=1e-6)
    np.testing.assert_allclose(r.spectrum.bottom, ev[:3], atol=2e-5 * np.max(np.abs(ev)))
    assert float(r.value) == pytest.approx(float(wavy(*WAVY_AT)), rel=1e-6)
    assert callable(ip.ns["wavy_hess"])  # bound as every %hess is (built lazily, never called here)
    text = str(r)
    assert "spectrum" in text and "matrix was not formed" in text and "saddle direction" in text
    html = r._repr_html_()
    png = re.search(r"src='data:image/png;base64,([^']+)' width='(\d+)' height='(\d+)'", html)
    assert png is not None and (int(png.group(2)), int(png.group(3))) == (WIDTH, HEIGHT)
    import base64

    assert png_pixels(base64.b64decode(png.group(1))).shape == (HEIGHT, WIDTH)


def test_k_and_tol_on_the_line(ip: Any) -> None:
    ip.ns["f"] = rotated_quadratic(np.linspace(0.5, 4.0, 300), seed=7)
    ip.ns["x"] = jnp.ones(300)
    r = ip.line("hess", "f at=x spectrum=True k=5 tol=1e-5")
    assert r.spectrum.k == 5 and r.spectrum.tol == 1e-5
    np.testing.assert_allclose(r.spectrum.top, np.linspace(0.5, 4.0, 300)[::-1][:5], rtol=1e-4)


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("f at=x k=5", r"k= goes with spectrum=True.*add `spectrum=True`"),
        ("f at=x tol=1e-4 k=2", r"k= and tol= go with spectrum=True"),
        ("f at=x spectrum=True k=0", r"k=0 must be a whole number of at least 1"),
        ("f at=x spectrum=True tol=0", r"tol=0 must be a number between 0 and 1"),
        ("f at=x spectrum=True check=True", r"spectrum=True goes with the Hessian alone, and without check=True"),
        ("f at=x spectrum=maybe", r"Could not evaluate spectrum=maybe"),
    ],
)
def test_magic_option_errors_are_usage_errors(ip: Any, capsys: Any, line: str, says: str) -> None:
    ip.ns["f"] = lambda x: jnp.sum(x**4)
    ip.ns["x"] = jnp.ones(4)
    assert re.search(says, ip.usage_error(f"%hess {line}", capsys))


def test_spectrum_is_an_option_of_hess_alone(ip: Any, capsys: Any) -> None:
    ip.ns["f"] = lambda x: jnp.sum(x**4)
    assert "has no option 'spectrum'" in ip.usage_error("%jgrad f at=1.0 spectrum=True", capsys)


def test_the_usage_teaches_spectrum(ip: Any) -> None:
    from jaxgrad_magic.magics import JaxGradMagics

    doc = JaxGradMagics.hess.__doc__
    assert "spectrum=True" in doc and "k=3" in doc and "tol=1e-3" in doc and ".spectrum" in doc


SHARDED = r"""
import json
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
import jaxgrad_magic as jgm
from jaxgrad_magic import curvature
from jaxgrad_magic.objective import make_objective

mesh = Mesh(np.array(jax.devices()), ("d",))
n = 4096
lam = np.concatenate([[6.0, 5.0], np.linspace(-0.5, 2.0, n - 4), [-2.0, -1.5]]).astype(np.float32)
lam_rows = jax.device_put(jnp.asarray(lam[: n // 2].reshape(64, 32)), NamedSharding(mesh, PartitionSpec("d", None)))
lam_vec = jax.device_put(jnp.asarray(lam[n // 2 :]), NamedSharding(mesh, PartitionSpec("d")))

def f(p):
    return 0.5 * jnp.sum(lam_rows * p["m"] ** 2) + 0.5 * jnp.sum(lam_vec * p["v"] ** 2)

at = {"m": jax.device_put(jnp.ones((64, 32)), lam_rows.sharding),
      "v": jax.device_put(jnp.ones(n // 2), lam_vec.sharding)}
sp = jgm.spectrum(f, at=at, k=2)
o = make_objective(f, (at,), 0, "f", False)
plan = curvature.check_request(2, 1e-3, n)
def temp(shardings):
    program = curvature._spectrum_program(o.loss_fn, False, plan, shardings)
    compiled = jax.jit(program).lower(o.params0, o.dynamic, np.uint32(0), 1e-3).compile()
    return compiled.memory_analysis().temp_size_in_bytes
print("RESULT " + json.dumps({
    "devices": len(jax.devices()),
    "sharded": not at["v"].sharding.is_fully_replicated,
    "top": sp.top.tolist(), "bottom": sp.bottom.tolist(), "trace": sp.trace, "trace_error": sp.trace_error,
    "want_trace": float(lam.sum()),
    "temp_pinned": temp(curvature._basis_shardings(o.params0)),
    "basis_bytes": (plan.iterations + 1) * n * 4,
}))
"""


@pytest.mark.slow
def test_sharded_arguments_keep_their_sharding_and_their_eigenvalues() -> None:
    out = run_json_script(["-c", SHARDED], env={"XLA_FLAGS": "--xla_force_host_platform_device_count=4"})
    assert out["devices"] == 4 and out["sharded"]
    assert out["top"] == pytest.approx([6.0, 5.0], abs=6e-3)
    assert out["bottom"] == pytest.approx([-2.0, -1.5], abs=6e-3)
    # A diagonal Hessian: every Rademacher probe gives the trace exactly (zᵀHz = Σ λᵢ zᵢ² = Σ λᵢ).
    assert out["trace"] == pytest.approx(out["want_trace"], rel=1e-5) and out["trace_error"] < 1e-3
    # Each device holds its quarter of every Lanczos vector, not the whole basis.
    assert out["temp_pinned"] < 0.6 * out["basis_bytes"]


FLOAT64 = r"""
import json
import jax, jax.numpy as jnp, numpy as np
import jaxgrad_magic as jgm
rng = np.random.default_rng(0)
a = rng.normal(size=(30, 30))
def f(x):
    return jnp.sum(jnp.sin(a @ x) ** 2) + 0.1 * jnp.sum(x ** 4)
x = jnp.asarray(rng.normal(size=30))
sp = jgm.spectrum(f, at=x, tol=1e-12)
ev = np.linalg.eigvalsh(np.asarray(jax.hessian(f)(x)))
scale = float(np.abs(ev).max())
print("RESULT " + json.dumps({"dtype": sp.dtype, "top": float(np.abs(sp.top - ev[::-1][:3]).max() / scale),
                              "bottom": float(np.abs(sp.bottom - ev[:3]).max() / scale)}))
"""


@pytest.mark.slow
def test_float64_parameters_give_float64_accuracy() -> None:
    out = run_json_script(["-c", FLOAT64], env={"JAX_ENABLE_X64": "1"})
    assert out["dtype"] == "float64"
    assert out["top"] < 1e-12 and out["bottom"] < 1e-12
