"""Probe fitting: MASC (n = 0.99) + VeLPIC, the fast path against the plain reference.

The reference is the straightforward method: for each class, `np.cov` of [X_c; −X_c]
and `np.linalg.eigh` of that d×d matrix in float64, k_c from the cumulative rule, the
top eigenvector for VeLPIC. The fast path is `fit_spectral_probes(method="fast")`.
Both fit the same synthetic ReLU slab, timed side by side (interleaved per slab; a slab
both fit in under `REPEAT_BELOW` seconds is timed `REPEATS` times, interleaved, and the
medians compared, so the small slabs' ratios are not one timer tick); predictions on
held-out rows must agree and k_c must be identical. The grid includes d = 64, the
quickstart's width, where both are cheap and the fast path must still not be slower.
"""

from __future__ import annotations

import os
import time

import numpy as np
from threadpoolctl import threadpool_limits

from analyze.probes import fit_spectral_probes
from common import summary_line

FULL_GRID = [(d, n) for d in (64, 512, 2048, 4096) for n in (2000, 20000)]
QUICK_GRID = [(d, n) for d in (64, 512, 2048) for n in (2000, 8000)]
REPEAT_BELOW = 1.0
REPEATS = 9
N_CLASSES = 10
N_COMPONENTS = 0.99


def relu_slab(n: int, d: int, n_classes: int = N_CLASSES, seed: int = 0, latent: int = 256,
              noise: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """ReLU-like activations: class prototypes plus a decaying-spectrum latent spread,
    through a random projection to d units, noise, ReLU, stored as float16 (read as
    float32, as analysis reads a slab). Balanced classes of n / n_classes rows."""
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((latent, d), dtype=np.float32) / np.sqrt(latent)
    protos = rng.standard_normal((n_classes, latent), dtype=np.float32)
    y = np.repeat(np.arange(n_classes), -(-n // n_classes))[:n]
    rng.shuffle(y)
    scale = (0.98 ** np.arange(latent)).astype(np.float32)
    Z = protos[y] + rng.standard_normal((n, latent), dtype=np.float32) * scale
    H = Z @ W
    H += noise * rng.standard_normal((n, d), dtype=np.float32)
    np.maximum(H, 0, out=H)
    return H.astype(np.float16).astype(np.float32), y


def reference_fit(X: np.ndarray, y: np.ndarray, n: float = N_COMPONENTS):
    """The straightforward method: per class np.cov of [X_c; −X_c], eigh (d×d, float64)."""
    classes = np.unique(y)
    bases, vectors, ks = [], [], []
    for c in classes:
        Xc = X[y == c].astype(np.float64)
        C = np.cov(np.vstack([Xc, -Xc]), rowvar=False)
        w, W = np.linalg.eigh(C)
        w, W = w[::-1], W[:, ::-1]
        k = int(np.count_nonzero(np.cumsum(w) / w.sum() <= n)) + 1
        bases.append(W[:, :k].copy())
        vectors.append(W[:, 0].copy())
        ks.append(k)
    V = np.stack(vectors)
    V[(X.astype(np.float64) @ V.T).mean(axis=0) < 0] *= -1
    return classes, bases, V, np.asarray(ks)


def reference_predict(fit, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    classes, bases, V, _ = fit
    X = X.astype(np.float64)
    masc = np.stack([np.linalg.norm(X @ B, axis=1) for B in bases], axis=1)
    return classes[masc.argmax(1)], classes[(X @ V.T).argmax(1)]


def _timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def run(quick: bool = False, root: str | None = None, threads: int | None = None,
        device: str | None = None) -> list[dict]:
    """One row per slab: reference and fast fit times, k and prediction agreement
    (everything in memory: `root` is not used)."""
    threads = threads or os.cpu_count() or 1
    rows = []
    for d, n in QUICK_GRID if quick else FULL_GRID:
        X, y = relu_slab(n + 2000, d, seed=d + n)
        X_test, X, y = X[n:], X[:n], y[:n]
        with threadpool_limits(threads):
            _set_torch_threads(threads)
            t_fast, t_ref, (masc, vel), ref = _fits(X, y, device)
            t_pred_fast, (p_masc, p_vel) = _timed(
                lambda: (masc.predict(X_test), vel.predict(X_test)))
            r_masc, r_vel = reference_predict(ref, X_test)
        n_c = np.bincount(y)
        rows.append({
            "d": d, "n": n, "min_class": int(n_c.min()), "d_gt_nc": bool(n_c.min() < d),
            "ref_s": t_ref, "fast_s": t_fast, "ratio": t_ref / t_fast,
            "k_equal": bool(np.array_equal(masc.n_components_, ref[3])),
            "k_max": int(ref[3].max()),
            "masc_agree": float(np.mean(p_masc == r_masc)),
            "velpic_agree": float(np.mean(p_vel == r_vel)),
            "fast_predict_s": t_pred_fast, "device": device or "numpy",
        })
        print(f"  probes d={d} n={n}: ref {t_ref:.2f}s fast {t_fast:.2f}s "
              f"k_equal={rows[-1]['k_equal']} agree={rows[-1]['masc_agree']:.4f}/"
              f"{rows[-1]['velpic_agree']:.4f}", flush=True)
    return rows


def _fits(X: np.ndarray, y: np.ndarray, device: str | None):
    """(fast seconds, reference seconds, fast fit, reference fit), the medians of
    `REPEATS` interleaved fits where one of each takes under `REPEAT_BELOW` s."""
    t_fast, fast = _timed(fit_spectral_probes, X, y, N_COMPONENTS, method="fast", device=device)
    t_ref, ref = _timed(reference_fit, X, y)
    if t_fast + t_ref >= REPEAT_BELOW:
        return t_fast, t_ref, fast, ref
    fast_s, ref_s = [t_fast], [t_ref]
    for _ in range(REPEATS - 1):
        fast_s.append(_timed(fit_spectral_probes, X, y, N_COMPONENTS, method="fast", device=device)[0])
        ref_s.append(_timed(reference_fit, X, y)[0])
    return float(np.median(fast_s)), float(np.median(ref_s)), fast, ref


def _set_torch_threads(threads: int) -> None:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return
    torch.set_num_threads(threads)


def summarize(rows: list[dict]) -> list[dict]:
    """The benchmark lines: the whole grid (>= 5x), the d > n_c slabs (>= 15x) and the
    slowest slab relative to its reference (>= 1: the fast path is never the slower)."""
    ok = all(r["k_equal"] and min(r["masc_agree"], r["velpic_agree"]) >= 0.999 for r in rows)
    lines = []
    for name, sub, target in (("probes_grid", rows, ">=5"),
                              ("probes_d_gt_nc", [r for r in rows if r["d_gt_nc"]], ">=15")):
        if not sub:
            continue
        ratio = sum(r["ref_s"] for r in sub) / sum(r["fast_s"] for r in sub)
        worst = max(sub, key=lambda r: r["fast_s"])
        note = "predictions or k differ from the reference" if not ok else (
            f"the fast time is the n_c~{worst['min_class']} slabs' deflated "
            f"{worst['min_class']}x{worst['min_class']} float32 eigendecompositions: "
            f"d={worst['d']}, n={worst['n']} takes {worst['fast_s']:.1f}s of "
            f"{sum(r['fast_s'] for r in sub):.1f}s")
        lines.append(summary_line(name, ratio, target, f"ref/fast fit time over {len(sub)} slabs",
                                  note, valid=ok))
    if rows:
        slow = min(rows, key=lambda r: r["ratio"])
        lines.append(summary_line(
            "probes_worst_slab", slow["ratio"], ">=1", "min over slabs of ref/fast fit time",
            f"d={slow['d']}, n={slow['n']}: ref {slow['ref_s']:.3f}s, fast {slow['fast_s']:.3f}s",
            valid=ok))
    return lines
