"""LoCa calibration and the distillation losses built on it, in plain PyTorch.

This package imports only torch, so it serves any training loop (mmengine,
Hugging Face, Lightning, a hand-written one). The registered losses in
:mod:`loca_mm.models.losses` and the Hugging Face trainer in
:mod:`loca_mm.integrations.transformers` are thin adapters around it.

* :mod:`.inputs`: input checks (:func:`prepare_targets`,
  :func:`check_logits`) and Logit Standardization
  (:func:`standardize_logits`), which every loss applies with
  ``standardize=True``.
* :mod:`.calibration`: LoCa's rule, once (:func:`loca_rule`), and the
  calibrated teacher as probabilities (:func:`loca_calibrate`),
  log-probabilities (:func:`loca_log_probs`) and logits
  (:func:`loca_calibrated_logits`).
* :mod:`.losses`: KD and DKD towards the calibrated teacher.
* :mod:`.divergences`: forward / reverse KL, generalized JSD, skew KLs.
* :mod:`.sparse`: KD towards a cached top-k teacher
  (:func:`sparse_loca_kd_loss`).
* :mod:`.chunked`: any of them a chunk of rows at a time, on logits or
  fused with the output layers.
* :mod:`.stats`: the ``loca_ratio`` / ``loca_scale`` statistics.
"""
from .calibration import (CALIBRATION_MODES, CalibratedLogits,
                          CalibratedLogProbs, CalibratedTarget,
                          check_calibration_args, loca_calibrate,
                          loca_calibrated_logits, loca_log_probs, loca_rule)
from .chunked import chunked_distill_loss, fused_linear_distill_loss
from .divergences import (DIVERGENCES, generalized_jsd_loss, reverse_kl_loss,
                          skew_kl_loss, skew_reverse_kl_loss)
from .inputs import check_logits, prepare_targets, standardize_logits
from .losses import DistillLoss, dkd_loss, loca_kd_loss
from .sparse import sparse_loca_kd_loss
from .stats import calibration_counts, calibration_summary

__all__ = [
    'CALIBRATION_MODES', 'CalibratedLogits', 'CalibratedLogProbs',
    'CalibratedTarget', 'DIVERGENCES', 'DistillLoss', 'calibration_counts',
    'calibration_summary', 'check_calibration_args', 'check_logits',
    'chunked_distill_loss', 'dkd_loss', 'fused_linear_distill_loss',
    'generalized_jsd_loss', 'loca_calibrate', 'loca_calibrated_logits',
    'loca_kd_loss', 'loca_log_probs', 'loca_rule', 'prepare_targets',
    'reverse_kl_loss', 'skew_kl_loss', 'skew_reverse_kl_loss',
    'sparse_loca_kd_loss', 'standardize_logits'
]
