"""LoCa calibration and the distillation losses built on it, in plain PyTorch.

This package imports only torch, so it serves any training loop (mmengine,
Hugging Face, Lightning, a hand-written one). The mmrazor losses in
:mod:`loca_mm.models.losses` and the Hugging Face trainer in
:mod:`loca_mm.integrations.transformers` are thin adapters around it.

* :mod:`.reference`: the math first: LoCa's rule on a probability vector
  (:func:`loca_calibrate`) and KD / DKD on it in plain autograd, the oracle
  the fast losses are tested against.
* :mod:`.calibration`: the modes, and LoCa's factor ``s`` as the fast
  losses compute it.
* :mod:`.teacher`: the calibrated teacher as log-probabilities
  (:func:`loca_log_probs`), for any divergence, and as logits
  (:func:`loca_calibrated_logits`), for any logit loss.
* :mod:`.kd`, :mod:`.dkd`: KD and DKD towards the calibrated teacher, with
  closed-form student gradients.
* :mod:`.divergences`: reverse KL, generalized JSD and skew KLs on the
  calibrated teacher (LLM distillation).
* :mod:`.chunked`: any of the losses over chunks of samples (LLM vocabularies).
* :mod:`.fused_linear`: any of the losses from hidden states and output
  weights, never holding more than a chunk of logits.
* :mod:`.stats`: the ``loca_ratio`` / ``loca_scale`` statistics.
"""
from . import reference
from .calibration import (CALIBRATION_MODES, CalibratedTarget,
                          calibration_scale, check_calibration_args)
from .chunked import chunked_distill_loss
from .dkd import dkd_loss
from .divergences import (DIVERGENCES, generalized_jsd_loss, reverse_kl_loss,
                          skew_kl_loss, skew_reverse_kl_loss)
from .fused_linear import fused_linear_distill_loss
from .inputs import check_logits, prepare_targets
from .kd import loca_kd_loss
from .reference import loca_calibrate
from .result import DistillLoss
from .stats import (calibration_counts, calibration_counts_of,
                    calibration_summary)
from .teacher import CalibratedLogProbs, loca_log_probs
from .teacher import CalibratedLogits, loca_calibrated_logits

__all__ = [
    'CALIBRATION_MODES', 'CalibratedTarget', 'CalibratedLogProbs',
    'DistillLoss', 'calibration_counts', 'calibration_counts_of',
    'calibration_scale',
    'calibration_summary', 'check_calibration_args', 'check_logits',
    'chunked_distill_loss', 'dkd_loss', 'loca_calibrate', 'loca_kd_loss',
    'loca_log_probs', 'prepare_targets', 'reference',
    'DIVERGENCES', 'fused_linear_distill_loss', 'generalized_jsd_loss',
    'reverse_kl_loss', 'skew_kl_loss', 'skew_reverse_kl_loss'
]
__all__ += ['CalibratedLogits', 'loca_calibrated_logits']
