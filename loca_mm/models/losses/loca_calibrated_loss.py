"""LoCa in front of any logit-distillation loss of the registry."""
import inspect
from typing import Optional

from torch import Tensor

from loca_mm import functional as LF
from mmrazor.registry import MODELS
from .base_calibrated_loss import BaseCalibratedLoss

# Arguments beyond (student, teacher) that the wrapper can hand on.
PASSED_ON = ('gt_labels', 'data_samples')


def _loss_class(cfg: dict) -> type:
    loss_type = cfg.get('type')
    loss_class = MODELS.get(loss_type) if isinstance(loss_type,
                                                     str) else loss_type
    if not inspect.isclass(loss_class):
        raise ValueError(f'LoCaCalibratedLoss: loss type {loss_type!r} is '
                         'not a registered loss (mmrazor.registry.MODELS)')
    return loss_class


@MODELS.register_module()
class LoCaCalibratedLoss(BaseCalibratedLoss):
    """Any logit-distillation loss, fed the LoCa-calibrated teacher.

    LoCa changes the teacher's distribution, not the loss: the inner loss
    receives the teacher logits of
    :func:`loca_mm.functional.loca_calibrated_logits`, whose softmax at
    ``tau`` is LoCa's ``q``. With mmrazor's ``KLDivergence`` at the same
    ``tau`` this is :class:`LoCaLoss`; with ``DKDLoss`` it is DKD+LoCa
    (:class:`DKDLoCaLoss` without warm-up); with ``DISTLoss`` or ``WSLD``
    it is DIST+LoCa or WSLD+LoCa.

    **One temperature.** ``softmax(z' / tau) == q`` holds at the
    calibration's ``tau`` only, so the inner loss must soften at that same
    ``tau``: it is the inner loss's ``tau``. Give it in either place (the
    wrapper passes it on to an inner config without one); two different
    values are an error. Parts of an inner loss that read the teacher at
    another temperature see ``q ** (tau / t)`` renormalized (WSLD's sample
    weights use ``t = 1``).

    The inner loss's forward gets the student logits and the calibrated
    teacher logits (N, C) as its first two arguments, and ``gt_labels`` /
    ``data_samples`` if it names them. ``gt_labels`` are integer labels
    (N,): soft (Mixup/CutMix) labels are reduced to their argmax, as LoCa
    reads them. Its ``loss_weight`` weights the
    result; the wrapper adds none. ``loca_ratio``/``loca_scale`` are logged
    as by the other LoCa losses.

    Args:
        loss (dict): config of the inner loss, built from mmrazor's MODELS
            (loca_mm's losses are registered there too).
        tau (float, optional): temperature of the calibration and of the
            inner loss. Defaults to the inner loss's ``tau``.
        alpha (float): LoCa's alpha in (0, 1). Defaults to 0.9.
        calibrate (str): ``'wrong'``, ``'margin'`` or ``'none'`` (the inner
            loss unchanged). Defaults to ``'wrong'``.
        ignore_index (int, optional): label of samples left out: the inner
            loss gets the other rows only (student, calibrated teacher and
            labels). Not with an inner loss that takes ``data_samples``.
        check_labels (bool): refuse labels outside [0, C) (see
            :func:`loca_mm.functional.prepare_targets`). Defaults to True.
        log_stats (bool): log ``loca_ratio``/``loca_scale`` during training.
            Defaults to True.
        standardize (bool): Logit Standardization (Sun et al., CVPR 2024)
            in front: the inner loss gets the standardized student logits
            (:func:`loca_mm.functional.standardize_logits`) and the
            calibrated teacher of the standardized teacher logits. Set it
            here, not on an inner loca_mm loss (which would standardize the
            calibrated logits again). Defaults to False.
    """

    def __init__(self,
                 loss: dict,
                 tau: Optional[float] = None,
                 alpha: float = 0.9,
                 calibrate: str = 'wrong',
                 ignore_index: Optional[int] = None,
                 check_labels: bool = True,
                 log_stats: bool = True,
                 standardize: bool = False) -> None:
        if not isinstance(loss, dict) or 'type' not in loss:
            raise ValueError('LoCaCalibratedLoss: loss must be a config dict '
                             f"with a 'type', got {loss!r}")
        loss_class = _loss_class(loss)
        if isinstance(loss_class, type) and issubclass(
                loss_class, BaseCalibratedLoss) and loss.get(
                    'calibrate', 'wrong') != 'none':
            raise ValueError(
                f"LoCaCalibratedLoss: the inner {loss['type']} calibrates "
                "itself; LoCa twice is not LoCa. Use it alone, or with "
                "calibrate='none' inside")
        if loss.get('standardize', False) is not False:
            raise ValueError(
                f"LoCaCalibratedLoss: the inner {loss['type']} has "
                f"standardize={loss['standardize']!r}; set standardize on "
                'LoCaCalibratedLoss, which standardizes before calibrating')
        cfg = dict(loss)
        if tau is not None and 'tau' not in cfg and 'tau' in \
                inspect.signature(loss_class).parameters:
            cfg['tau'] = tau
        inner = MODELS.build(cfg)
        inner_tau = getattr(inner, 'tau', None)
        if tau is None:
            if inner_tau is None:
                raise ValueError(
                    f"LoCaCalibratedLoss: {loss['type']} has no tau; give "
                    'the temperature it softens the teacher with as tau')
            tau = inner_tau
        elif inner_tau is not None and inner_tau != tau:
            raise ValueError(
                f"LoCaCalibratedLoss: tau={tau!r} but the inner "
                f"{loss['type']} softens with tau={inner_tau!r}; the "
                'calibrated logits are exact at one temperature only')
        LF.check_calibration_args(alpha, tau, calibrate)
        super().__init__(tau, calibrate, 1.0, ignore_index, check_labels,
                         log_stats, standardize)
        self.alpha = alpha
        self.loss = inner
        self.passed_on = self._passed_on_args(inner, loss['type'])
        if ignore_index is not None and 'data_samples' in self.passed_on:
            raise ValueError(
                f"LoCaCalibratedLoss: {loss['type']} takes data_samples, "
                'which cannot follow the rows that ignore_index leaves out; '
                'drop ignore_index or use another inner loss')

    @staticmethod
    def _passed_on_args(inner, name) -> tuple:
        """The inner forward's arguments after (student, teacher) that the
        wrapper hands on; any other required one is an error."""
        params = list(inspect.signature(inner.forward).parameters.values())
        if len(params) < 2:
            raise ValueError(f'LoCaCalibratedLoss: {name}.forward takes '
                             'fewer than (student, teacher) logits')
        passed_on = []
        for param in params[2:]:
            if param.name in PASSED_ON:
                passed_on.append(param.name)
            elif param.default is inspect.Parameter.empty and \
                    param.kind not in (param.VAR_POSITIONAL,
                                       param.VAR_KEYWORD):
                raise ValueError(
                    f'LoCaCalibratedLoss: {name}.forward needs '
                    f'{param.name!r}, which the wrapper cannot give (it '
                    f'passes on {PASSED_ON})')
        return tuple(passed_on)

    def forward(self,
                preds_S: Tensor,
                preds_T: Tensor,
                gt_labels: Tensor,
                data_samples: Optional[list] = None) -> Tensor:
        """Compute the inner loss on the calibrated teacher.

        Args:
            preds_S (Tensor): student logits (N, C).
            preds_T (Tensor): teacher logits (N, C); detached inside.
            gt_labels (Tensor): labels (N,) or soft labels (N, C).
            data_samples (list, optional): handed on to an inner loss that
                takes them.

        Returns:
            Tensor: the inner loss.
        """
        labels, valid = LF.prepare_targets(preds_T, gt_labels,
                                           self.ignore_index,
                                           self.check_labels)
        teacher = LF.loca_calibrated_logits(
            preds_T,
            gt_labels,
            self.tau,
            self.alpha,
            self.calibrate,
            self.ignore_index,
            check_labels=False,
            standardize=self.standardize)
        teacher_logits = teacher.logits
        if self.standardize:
            preds_S = LF.standardize_logits(preds_S)
        if self.ignore_index is not None:
            preds_S, teacher_logits, labels = (
                preds_S[valid], teacher_logits[valid], labels[valid])
        given = dict(gt_labels=labels, data_samples=data_samples)
        extra = {name: given[name] for name in self.passed_on}
        if extra.get('data_samples', ()) is None:
            raise ValueError(
                f'LoCaCalibratedLoss: {type(self.loss).__name__} takes '
                'data_samples; map them in loss_forward_mappings')
        loss = self.loss(preds_S, teacher_logits, **extra)
        return self.weighted(
            LF.DistillLoss(loss, teacher.scale, teacher.calibrated,
                           teacher.valid))

    def extra_repr(self) -> str:
        return (f'tau={self.tau}, alpha={self.alpha}, '
                f'calibrate={self.calibrate!r}, '
                f'standardize={self.standardize}')
