"""A vectorizable counter-based random stream, keyed from an explicit numpy Generator.

numpy's Generator inside ``@njit`` code costs one indirect call per variate (and a ziggurat
branch per normal), which no loop vectorizer can widen; on the HMC refresh it was a third of
the whole trajectory.  Here the ``x``-th 64-bit word of a stream is a pure function of a key
and ``x``, so whole buffers of variates are filled by loops LLVM turns into SIMD code:

* words: SplitMix64 (Steele, Lea, Flood 2014; Vigna's reference ``splitmix64.c``), i.e. the
  Weyl sequence key + (x + 1) * 0x9E3779B97F4A7C15 through the MurmurHash3-style finalizer
  (passes BigCrush); 64-bit xor, shift and multiply, all of which AVX2 code can do;
* uniforms: the top 52 bits as a mantissa, (w >> 12) * 2^-52 in [0, 1), or 1 minus that in
  (0, 1] (a bit pattern, not an int -> double conversion, which AVX2 lacks);
* standard exponentials: -log(u), u in (0, 1] (inverse CDF: exact in law);
* standard normals: Box-Muller from two words, exact in law, written with fdlibm's log
  polynomial and sin/cos kernels (errors below 1 ulp, like libm's) so that they vectorize:
  libm calls do not, and numba has no SVML here.

The key is drawn from the caller's ``numpy.random.Generator`` (:func:`draw_key`, one variate
per buffer fill), so one seed still reproduces a whole run, and no state hides anywhere.
Streams of different keys are different stretches of one period-2^64 Weyl sequence; for the
buffer sizes used here (<= millions of words per key) the chance that two of them overlap in
a run is negligible (about n_fills^2 * n_words / 2^64).

NumPy twins of the fills are in ``tests/test_samplers_kernels.py``.

Caution when editing: :func:`normal_pair` is inlined into ``kernels/hmc.py``, and numba's
on-disk cache of a function is invalidated only by changes to its own file, so after a change
here clear the cache (``__pycache__/*.nbi``, ``*.nbc`` or ``NUMBA_CACHE_DIR``).
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

__all__ = [
    "draw_key",
    "exponential_fill",
    "log_unit",
    "normal_fill",
    "normal_pair",
    "sincos_quarter_turn",
    "splitmix64",
    "uniform_fill",
]

#: Flags for the fills: FMA contraction only.  No reassociation, so the hi/lo splits of the
#: log stay exact; the loops have no reductions, so they vectorize without it.
FILL_FASTMATH = {"contract", "nsz"}

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S12 = np.uint64(12)
_TWO = np.uint64(2)
_S62 = np.uint64(62)
_EXP_ONE = np.uint64(0x3FF0000000000000)
_S32 = np.uint64(32)
_ONE = np.uint64(1)

# fdlibm e_log.c
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_LG1 = 6.666666666666735130e-01
_LG2 = 3.999999999940941908e-01
_LG3 = 2.857142874366239149e-01
_LG4 = 2.222219843214978396e-01
_LG5 = 1.818357216161805012e-01
_LG6 = 1.531383769920937332e-01
_LG7 = 1.479819860511658591e-01
# fdlibm k_sin.c / k_cos.c
_S1 = -1.66666666666666324348e-01
_S2 = 8.33333333332248946124e-03
_S3 = -1.98412698298579493134e-04
_S4 = 2.75573137070700676789e-06
_S5 = -2.50507602534068634195e-08
_S6 = 1.58969099521155010221e-10
_C1 = 4.16666666666666019037e-02
_C2 = -1.38888888888741095749e-03
_C3 = 2.48015872894767294178e-05
_C4 = -2.75573143513906633035e-07
_C5 = 2.08757232129817482790e-09
_C6 = -1.13596475577881948265e-11
_HALF_PI = 1.5707963267948966


@intrinsic
def _f64_bits(typingctx, x):  # noqa: ARG001
    """The IEEE bits of a float64 as an int64 (a free bitcast, vectorizable)."""
    sig = types.int64(types.float64)

    def codegen(context, builder, signature, args):  # noqa: ARG001
        return builder.bitcast(args[0], context.get_value_type(types.int64))

    return sig, codegen


@intrinsic
def _bits_f64(typingctx, x):  # noqa: ARG001
    """The float64 with the given IEEE bits (a 64-bit integer)."""
    if not (isinstance(x, types.Integer) and x.bitwidth == 64):
        return None
    sig = types.float64(x)

    def codegen(context, builder, signature, args):  # noqa: ARG001
        return builder.bitcast(args[0], context.get_value_type(types.float64))

    return sig, codegen


@njit(cache=True, inline="always")
def _unit_open_above(w: np.uint64) -> float:
    """(w >> 12) * 2^-52 in [0, 1): top 52 bits as a mantissa (no int -> double conversion)."""
    return _bits_f64((w >> _S12) | _EXP_ONE) - 1.0


@njit(cache=True, inline="always")
def _unit_open_below(w: np.uint64) -> float:
    """1 - (w >> 12) * 2^-52 in (0, 1]."""
    return 2.0 - _bits_f64((w >> _S12) | _EXP_ONE)


@njit(cache=True, inline="always")
def splitmix64(key: np.uint64, x: np.uint64) -> np.uint64:
    """Word ``x`` (0, 1, ...) of the SplitMix64 stream that starts after ``key``."""
    z = key + (x + _ONE) * _GAMMA
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(cache=True, inline="always", fastmath=FILL_FASTMATH, error_model="numpy")
def log_unit(u: float) -> float:
    """log(u) for a normal float64 u in (0, 1] (fdlibm's polynomial, < 1 ulp), branch-free.

    u = 2^k m with the mantissa m taken to [sqrt(2)/2, sqrt(2)) by bit operations (exponent
    1022 instead of 1023 when its bits exceed sqrt(2)'s), then fdlibm e_log.c's
    log(1 + f) = f - s (f - R(s^2)) in its accurate form for every f.  No special cases:
    zero, subnormals, negatives, inf and NaN never reach it.
    """
    bits = _f64_bits(u)
    mant = bits & 0xFFFFFFFFFFFFF
    big = mant > 0x6A09E667F3BCD  # sqrt(2)'s mantissa bits
    x = _bits_f64(mant | (0x3FE0000000000000 if big else 0x3FF0000000000000))
    k = (bits >> 52) - (1022 if big else 1023)
    f = x - 1.0
    s = f / (2.0 + f)
    dk = float(np.int32(k))  # int32 -> double is an AVX2 instruction; int64 -> double is not
    z = s * s
    w = z * z
    t1 = w * (_LG2 + w * (_LG4 + w * _LG6))
    t2 = z * (_LG1 + w * (_LG3 + w * (_LG5 + w * _LG7)))
    r = t2 + t1
    hfsq = 0.5 * f * f
    return dk * _LN2_HI - ((hfsq - (s * (hfsq + r) + dk * _LN2_LO)) - f)


@njit(cache=True, inline="always", fastmath=FILL_FASTMATH, error_model="numpy")
def sincos_quarter_turn(r: float) -> tuple[float, float]:
    """(sin, cos) of a = r * pi / 2 for r in [-1/2, 1/2] (fdlibm kernels, |a| <= pi / 4)."""
    a = r * _HALF_PI
    z = a * a
    v = z * a
    sin_a = a + v * (_S1 + z * (_S2 + z * (_S3 + z * (_S4 + z * (_S5 + z * _S6)))))
    hz = 0.5 * z
    w = 1.0 - hz
    cos_a = w + (
        ((1.0 - w) - hz) + z * z * (_C1 + z * (_C2 + z * (_C3 + z * (_C4 + z * (_C5 + z * _C6)))))
    )
    return sin_a, cos_a


@njit(cache=True, inline="always", fastmath=FILL_FASTMATH, error_model="numpy")
def normal_pair(key: np.uint64, x: np.uint64) -> tuple[float, float]:
    """Box-Muller pair from words 2x, 2x + 1: (R cos t, R sin t), R^2 = -2 log u, t uniform."""
    w1 = splitmix64(key, x + x)
    w2 = splitmix64(key, x + x + _ONE)
    radius = np.sqrt(-2.0 * log_unit(_unit_open_below(w1)))
    # angle = pi/2 (q + r): quadrant q from the top 2 bits, r in [-1/2, 1/2) from the next 52
    q = w2 >> _S62
    r = _bits_f64(((w2 << _TWO) >> _S12) | _EXP_ONE) - 1.5
    s, c = sincos_quarter_turn(r)
    odd = (q & _ONE) == _ONE
    cx = s if odd else c
    sx = c if odd else s
    cx = -cx if (q == _ONE) | (q == _TWO) else cx
    sx = -sx if q >= _TWO else sx
    return radius * cx, radius * sx


@njit(cache=True)
def draw_key(rng: np.random.Generator) -> np.uint64:
    """A fresh stream key from the caller's generator: one ``integers(0, 2^63 - 1)`` variate.

    (63 bits: numba's ``integers`` over the full int64 range overflows and leaves numpy's
    stream.)
    """
    return np.uint64(rng.integers(0, 2**63 - 1, dtype=np.int64))


@njit(cache=True, fastmath=FILL_FASTMATH, error_model="numpy")
def normal_fill(out: np.ndarray, key: np.uint64) -> None:
    """Fill the 1D array ``out`` (length n) with standard normals from stream ``key``.

    Pair x (words 2x and 2x + 1) gives out[x] and out[x + n // 2], x < n // 2; for odd n the
    last element is the cosine half of pair n // 2.
    """
    n = out.shape[0]
    half = n // 2
    lo = out[:half]
    hi = out[half : 2 * half]
    for x in range(half):
        a, b = normal_pair(key, np.uint64(x))
        lo[x] = a
        hi[x] = b
    if n % 2 == 1:
        a, _ = normal_pair(key, np.uint64(half))
        out[n - 1] = a


@njit(cache=True, fastmath=FILL_FASTMATH, error_model="numpy")
def uniform_fill(out: np.ndarray, key: np.uint64, offset: int, scale: float, shift: float) -> None:
    """out[x] = scale * u_x + shift, u_x = (word (offset + x) >> 12) * 2^-52 in [0, 1)."""
    base = np.uint64(offset)
    for x in range(out.shape[0]):
        w = splitmix64(key, base + np.uint64(x))
        out[x] = scale * _unit_open_above(w) + shift


@njit(cache=True, fastmath=FILL_FASTMATH, error_model="numpy")
def exponential_fill(out: np.ndarray, key: np.uint64, offset: int) -> None:
    """out[x] = -log(u_x), u_x = 1 - (word (offset + x) >> 12) * 2^-52 in (0, 1]."""
    base = np.uint64(offset)
    for x in range(out.shape[0]):
        w = splitmix64(key, base + np.uint64(x))
        out[x] = -log_unit(_unit_open_below(w))
