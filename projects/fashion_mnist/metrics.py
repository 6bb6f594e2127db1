"""What the studies measure of a classifier, and how they fit a trend."""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np
import torch
from torch import Tensor


def classification_metrics(logits: Tensor,
                           labels: Tensor,
                           num_bins: int = 15) -> Dict[str, float]:
    """Top-1, expected calibration error and negative log-likelihood.

    ECE (Guo et al., 2017): the samples are binned by confidence (the top
    probability) into ``num_bins`` equal-width bins of (0, 1];
    ``ECE = sum_b |B_b| / n * |accuracy(B_b) - confidence(B_b)|``.

    Args:
        logits (Tensor): (N, C) logits.
        labels (Tensor): (N,) integer labels.
        num_bins (int): confidence bins. Defaults to 15.

    Returns:
        dict: ``top1`` (%), ``ece`` (%) and ``nll`` (nats per sample).
    """
    if logits.dim() != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f'logits (N, C) and labels (N,) expected, got '
                         f'{tuple(logits.shape)} and {tuple(labels.shape)}')
    if num_bins < 1:
        raise ValueError(f'num_bins must be >= 1, got {num_bins!r}')
    log_probs = logits.double().log_softmax(-1)
    confidence, predicted = log_probs.exp().max(-1)
    correct = (predicted == labels).double()
    # Bin b holds confidences in (b / num_bins, (b + 1) / num_bins].
    bins = (confidence * num_bins).ceil().long().clamp_(1, num_bins) - 1
    count = torch.zeros(num_bins, dtype=torch.float64)
    count.index_add_(0, bins, torch.ones_like(confidence))
    gap = torch.zeros(num_bins, dtype=torch.float64)
    gap.index_add_(0, bins, correct - confidence)
    ece = gap.abs().sum() / max(labels.numel(), 1)
    nll = -log_probs.gather(-1, labels.long().unsqueeze(-1)).mean()
    return dict(
        top1=100 * float(correct.mean()),
        ece=100 * float(ece),
        nll=float(nll))


# A line through two points fits them exactly (R^2 1 whatever they are):
# a fit says something from three distinct x values on.
MIN_FIT_POINTS = 3
# Resampling one seed gives that seed back: an interval needs two.
MIN_BOOTSTRAP_SEEDS = 2


def linear_fit(x: Sequence[float], y: Sequence[float]) -> Dict[str, float]:
    """Least-squares line ``y = intercept + slope * x``, its R^2 and where it
    crosses zero (None for a flat line).

    Raises:
        ValueError: fewer than :data:`MIN_FIT_POINTS` distinct x values.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(np.unique(x)) < MIN_FIT_POINTS:
        raise ValueError(f'a fitted line needs at least {MIN_FIT_POINTS} '
                         f'distinct x values, got {x.tolist()}')
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (intercept + slope * x)
    total = ((y - y.mean())**2).sum()
    return dict(
        slope=float(slope),
        intercept=float(intercept),
        r2=float(1 - (residual**2).sum() / total) if total > 0 else 1.0,
        crossover=float(-intercept / slope) if slope != 0 else None)


def bootstrap_crossover(x: Sequence[float],
                        per_seed: Sequence[Sequence[float]],
                        repeats: int = 2000,
                        seed: int = 0,
                        level: float = 0.9) -> Dict[str, Optional[float]]:
    """The uncertainty of where a fitted line crosses zero, over seeds.

    Each repeat draws, for every point independently, its seeds with
    replacement, fits a line to the means and records the crossing. A
    repeat whose slope has the other sign than the fit on all data has no
    crossing in the same sense and is counted, not used.

    Args:
        x (Sequence[float]): one value per point (teacher).
        per_seed (Sequence[Sequence[float]]): the values of each point's
            seeds.
        repeats (int): bootstrap repeats. Defaults to 2000.
        seed (int): seed of the resampling. Defaults to 0.
        level (float): coverage of the reported interval. Defaults to 0.9.

    Returns:
        dict: ``low``, ``median``, ``high`` of the crossing over the repeats
        that have one, and ``opposite_slope``, the share that has not.

    Raises:
        ValueError: a point with fewer than :data:`MIN_BOOTSTRAP_SEEDS`
            seeds, or a line that cannot be fitted (:func:`linear_fit`).
    """
    seeds = [len(v) for v in per_seed]
    if min(seeds) < MIN_BOOTSTRAP_SEEDS:
        raise ValueError(f'an interval over seeds needs at least '
                         f'{MIN_BOOTSTRAP_SEEDS} seeds per point, got '
                         f'{seeds}')
    rng = np.random.default_rng(seed)
    x = np.asarray(x, dtype=float)
    full = linear_fit(x, [np.mean(v) for v in per_seed])
    crossings, opposite = [], 0
    for _ in range(repeats):
        means = [np.mean(rng.choice(v, size=len(v))) for v in per_seed]
        fit = linear_fit(x, means)
        if fit['slope'] * full['slope'] <= 0:
            opposite += 1
            continue
        crossings.append(fit['crossover'])
    tail = (1 - level) / 2
    low, median, high = (np.quantile(crossings, [tail, 0.5, 1 - tail])
                         if crossings else (None, None, None))
    return dict(
        low=None if low is None else float(low),
        median=None if median is None else float(median),
        high=None if high is None else float(high),
        level=level,
        opposite_slope=opposite / repeats)
