"""Two small regressions with an uncertainty, in numpy: Bayesian ridge, and a Gaussian
process on the Hamming distance between one-hot rows (what the drop model of
:mod:`qaev.search.predictor` combines: additive terms, then a learned correction)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["bayesian_ridge", "HammingGP", "fit_hamming_gp", "hamming"]

#: Kernel length scales tried (in differing genes).
LENGTHS = (0.5, 1.0, 2.0, 4.0)
#: Signal variances tried, as shares of the residuals' variance.
AMPLITUDES = (0.25, 0.5, 1.0, 2.0)
#: Noise variances tried, as shares of the residuals' variance.
NOISES = (0.01, 0.03, 0.1, 0.3)


def bayesian_ridge(X: np.ndarray, y: np.ndarray, *, iterations: int = 300,
                   tol: float = 1e-8) -> tuple[np.ndarray, np.ndarray, float]:
    """Bayesian linear regression with a Gaussian prior of precision ``lam`` on the weights
    and Gaussian noise of precision ``alpha``, both set by maximising the evidence with
    MacKay's fixed-point updates (MacKay, "Bayesian Interpolation", Neural Computation 1992;
    Bishop, "Pattern Recognition and Machine Learning", 2006, section 3.5.2).

    Args:
        X: ``[n, d]`` centred features.
        y: ``[n]`` centred targets.
        iterations: at most this many updates.
        tol: relative change of both precisions at which the updates stop.

    Returns:
        The posterior mean of the weights, their posterior covariance and the noise variance.
    """
    n = X.shape[0]
    eigen, V = np.linalg.eigh(X.T @ X)
    eigen = np.maximum(eigen, 0.0)
    projected = V.T @ (X.T @ y)
    alpha, lam = 1.0 / max(float(np.var(y)), 1e-6), 1.0
    for _ in range(iterations):
        mean = V @ (alpha * projected / (lam + alpha * eigen))
        gamma = float(np.sum(alpha * eigen / (lam + alpha * eigen)))
        new_lam = (gamma + 1e-6) / (float(mean @ mean) + 1e-6)
        residual = float(np.sum((y - X @ mean) ** 2))
        new_alpha = (n - gamma + 1e-6) / (residual + 1e-6)
        done = abs(new_lam - lam) <= tol * lam and abs(new_alpha - alpha) <= tol * alpha
        alpha, lam = new_alpha, new_lam
        if done:
            break
    mean = V @ (alpha * projected / (lam + alpha * eigen))
    covariance = (V / (lam + alpha * eigen)) @ V.T
    return mean, covariance, 1.0 / alpha


def hamming(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``[len(A), len(B)]`` Hamming distances between one-hot rows, in differing genes
    (half the differing entries)."""
    A, B = np.asarray(A, float), np.asarray(B, float)
    out = (A.sum(axis=1)[:, None] + B.sum(axis=1)[None, :] - 2.0 * A @ B.T) / 2.0
    return np.maximum(out, 0.0)


@dataclass(frozen=True)
class HammingGP:
    """A Gaussian process with kernel ``amplitude * exp(-hamming / length)`` (a product of
    one exponential kernel per gene, so positive definite) and Gaussian noise, conditioned
    on ``rows``: ``vectors`` and ``denominators`` are the eigenvectors and the eigenvalues
    (scaled, plus the noise) of the training kernel matrix, ``weights`` its inverse times
    the targets (Rasmussen and Williams, "Gaussian Processes for Machine Learning", 2006,
    algorithm 2.1, with an eigendecomposition in place of the Cholesky factor)."""

    rows: np.ndarray
    vectors: np.ndarray
    denominators: np.ndarray
    weights: np.ndarray
    amplitude: float
    length: float
    noise: float

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and predictive variance (noise included) at one-hot rows ``X``."""
        K = self.amplitude * np.exp(-hamming(X, self.rows) / self.length)
        projected = K @ self.vectors
        explained = np.sum(projected ** 2 / self.denominators, axis=1)
        return K @ self.weights, np.maximum(self.amplitude - explained, 0.0) + self.noise


def fit_hamming_gp(X: np.ndarray, y: np.ndarray, *, lengths: Sequence[float] = LENGTHS,
                   amplitudes: Sequence[float] = AMPLITUDES, noises: Sequence[float] = NOISES) -> HammingGP:
    """The :class:`HammingGP` on one-hot rows ``X`` and targets ``y`` (zero prior mean)
    whose length, amplitude and noise (the last two as shares of ``var(y)``) maximise the
    marginal likelihood over the grids given (ties: the first in grid order)."""
    X, y = np.asarray(X, float), np.asarray(y, float)
    scale = max(float(np.var(y)), 1e-6)
    distances = hamming(X, X)
    best = None
    for length in lengths:
        eigen, vectors = np.linalg.eigh(np.exp(-distances / length))
        eigen = np.maximum(eigen, 0.0)
        projected = vectors.T @ y
        for amplitude in amplitudes:
            for noise in noises:
                denominators = scale * (amplitude * eigen + noise)
                fit = -0.5 * float(np.sum(projected ** 2 / denominators)) - 0.5 * float(np.sum(np.log(denominators)))
                if best is None or fit > best[0]:
                    best = (fit, length, scale * amplitude, scale * noise, vectors, denominators, projected)
    _, length, amplitude, noise, vectors, denominators, projected = best
    return HammingGP(rows=X, vectors=vectors, denominators=denominators, weights=vectors @ (projected / denominators),
                     amplitude=amplitude, length=length, noise=noise)
