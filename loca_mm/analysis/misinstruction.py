"""How often does a teacher mis-instruct its students, and what would LoCa do?

The teacher sees the training split through the *training* pipeline (the
augmented images a student is distilled on), ``passes`` times. A sample is
mis-instructed when the label is not the teacher's strict top-1 (LoCa's
``'wrong'`` rule: a tie counts as wrong). :func:`measure_misinstruction`
reports the rate overall and per class, the distribution of LoCa's scale
``s`` over the samples LoCa changes, and draws some mis-instructed samples'
teacher distributions before and after calibration.
``tools/analysis_tools/misinstruction.py`` is its command line; the
Fashion-MNIST study calls it in its worker processes.
"""
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Tuple

# loca_mm first: it repairs the stack for current PyTorch and registers the
# project's modules before any registry builds anything.
import loca_mm  # noqa: F401,I001
import numpy as np
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import Runner, set_random_seed

from loca_mm.functional import loca_calibrate
from loca_mm.utils import resolve_model_config
from loca_mm.utils.checkpoint import TEACHER_PREFIX, load_model_weights
from mmpretrain.registry import MODELS

# The losses whose settings say what LoCa does to the teacher.
LOCA_LOSSES = ('LoCaLoss', 'DKDLoCaLoss')
DEFAULTS = dict(tau=4.0, alpha=0.9, calibrate='wrong')


def loca_settings_of(cfg: Config) -> Dict:
    """tau, alpha and calibrate of the first LoCa loss in a distill config.

    A LoCa loss that does not calibrate (``calibrate='none'``: plain
    KD/DKD) still gives its temperature; the mode then defaults to
    ``'wrong'``: the question answered here is what LoCa would do to this
    teacher.
    """
    settings = dict(DEFAULTS)
    distiller = cfg.model.get('distiller') or {}
    for loss in (distiller.get('distill_losses') or {}).values():
        if loss.get('type') not in LOCA_LOSSES:
            continue
        settings['tau'] = loss.get('tau', settings['tau'])
        settings['alpha'] = loss.get('alpha', settings['alpha'])
        if loss.get('calibrate', 'wrong') != 'none':
            settings['calibrate'] = loss.get('calibrate', 'wrong')
        break
    return settings


def build_teacher(cfg: Config, checkpoint: str) -> torch.nn.Module:
    """The teacher network with its weights, in eval mode.

    ``checkpoint`` holds the teacher's own weights, or is a checkpoint saved
    by a distillation run, whose ``teacher.*`` weights are taken. In a
    distillation config the teacher is ``model.teacher`` and sees the
    images through the distillation model's preprocessing (the top-level
    ``data_preprocessor``), as during training; in a classifier config it is
    ``model`` itself.
    """
    model_cfg = cfg.model.get('teacher', cfg.model)
    if not isinstance(model_cfg, dict):
        raise TypeError('the config\'s model.teacher must be a model dict '
                        f'to build, got {type(model_cfg).__name__}')
    model_cfg = resolve_model_config(model_cfg)
    if cfg.get('data_preprocessor') is not None:
        model_cfg['data_preprocessor'] = cfg.data_preprocessor
    teacher = MODELS.build(model_cfg)
    load_model_weights(
        teacher,
        checkpoint,
        f'teacher checkpoint {checkpoint}',
        'the teacher model',
        distillation_part=TEACHER_PREFIX)
    return teacher.eval()


@torch.no_grad()
def collect_logits(teacher: torch.nn.Module, dataloader,
                   passes: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """The teacher's logits and the labels of ``passes`` passes."""
    logits, labels = [], []
    for _ in range(passes):
        for data_batch in dataloader:
            data = teacher.data_preprocessor(data_batch, False)
            logits.append(teacher(data['inputs'], mode='tensor'))
            labels.append(
                torch.stack([s.gt_label for s in data['data_samples']]))
    return torch.cat(logits), torch.cat(labels).reshape(-1)


def summarize(logits: torch.Tensor, labels: torch.Tensor,
              class_names: List[str], tau: float, alpha: float,
              calibrate: str) -> Tuple[dict, torch.Tensor, torch.Tensor]:
    """Rates, per-class rates and the scale distribution as a dict.

    Returns:
        tuple: the summary, the teacher probabilities ``softmax(z / tau)``
        and their LoCa calibration (``CalibratedTarget``).
    """
    probs = torch.softmax(logits.double() / tau, dim=-1)
    wrong = loca_calibrate(probs, labels, alpha, 'wrong').calibrated
    calibrated = loca_calibrate(probs, labels, alpha, calibrate)
    num_classes = logits.shape[-1]
    per_class = []
    for index in range(num_classes):
        of_class = labels == index
        count = int(of_class.sum())
        misinstructed = int((wrong & of_class).sum())
        per_class.append(
            dict(
                label=index,
                name=class_names[index]
                if index < len(class_names) else str(index),
                samples=count,
                misinstructed=misinstructed,
                rate=misinstructed / count if count else None))
    scale = calibrated.scale[calibrated.calibrated].numpy()
    scale_summary = dict(num_calibrated=int(scale.size))
    if scale.size:
        counts, edges = np.histogram(scale, bins=20, range=(0.0, 1.0))
        scale_summary.update(
            mean=float(scale.mean()),
            std=float(scale.std()),
            min=float(scale.min()),
            max=float(scale.max()),
            quantiles={
                str(q): float(np.quantile(scale, q))
                for q in (0.05, 0.25, 0.5, 0.75, 0.95)
            },
            histogram=dict(edges=edges.tolist(), counts=counts.tolist()))
    summary = dict(
        num_samples=int(labels.numel()),
        teacher_top1=float((logits.argmax(-1) == labels).double().mean()),
        misinstructed=int(wrong.sum()),
        misinstruction_rate=float(wrong.double().mean()),
        per_class=per_class,
        tau=tau,
        alpha=alpha,
        calibrate=calibrate,
        calibrated_rate=float(calibrated.calibrated.double().mean()),
        scale=scale_summary)
    return summary, probs, calibrated


def plot_summary(summary: dict, path: str) -> None:
    """Per-class mis-instruction rates and the histogram of ``s``."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, (ax_class, ax_scale) = plt.subplots(1, 2, figsize=(11, 3.8))
    names = [c['name'] for c in summary['per_class']]
    rates = [100 * (c['rate'] or 0.0) for c in summary['per_class']]
    ax_class.bar(range(len(names)), rates, color='tab:red')
    ax_class.set_xticks(range(len(names)), names, rotation=45, ha='right')
    ax_class.set_ylabel('mis-instructed samples (%)')
    ax_class.set_title('teacher top-1 != label, per class (overall '
                       f'{100 * summary["misinstruction_rate"]:.1f}%)')
    histogram = summary['scale'].get('histogram')
    if histogram:
        edges = np.asarray(histogram['edges'])
        ax_scale.bar(
            edges[:-1],
            histogram['counts'],
            width=np.diff(edges),
            align='edge',
            color='tab:blue')
    ax_scale.set_xlim(0, 1)
    ax_scale.set_xlabel('LoCa scale s')
    ax_scale.set_ylabel('calibrated samples')
    ax_scale.set_title(f"s over the calibrated samples "
                       f"({summary['calibrate']}, alpha {summary['alpha']})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_examples(probs: torch.Tensor, calibrated, labels: torch.Tensor,
                  class_names: List[str], num_examples: int, tau: float,
                  path: str) -> Optional[List[int]]:
    """Teacher distributions before and after LoCa for some samples.

    Returns:
        list[int] | None: indices of the drawn samples (the first
        calibrated ones), None if no sample was calibrated.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    indices = torch.nonzero(calibrated.calibrated).flatten()[:num_examples]
    if indices.numel() == 0:
        return None
    columns = min(3, indices.numel())
    rows = -(-indices.numel() // columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(4.2 * columns, 3.0 * rows), squeeze=False)
    positions = np.arange(probs.shape[-1])
    for ax, index in zip(axes.flat, indices.tolist()):
        label = int(labels[index])
        ax.bar(positions - 0.2, probs[index].numpy(), 0.4, label='teacher p')
        ax.bar(
            positions + 0.2,
            calibrated.probs[index].numpy(),
            0.4,
            label='after LoCa q')
        ax.axvline(label, color='k', lw=0.8, ls=':')
        name = class_names[label] if label < len(class_names) else label
        ax.set_title(f'sample {index}: label {name}, '
                     f's={float(calibrated.scale[index]):.2f}')
        ax.set_xticks(positions)
    for ax in axes.flat[indices.numel():]:
        ax.axis('off')
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(f'teacher distributions at tau {tau} (dotted: label)')
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return indices.tolist()


def measure_misinstruction(config: str,
                           checkpoint: str,
                           out_dir: str,
                           tau: Optional[float] = None,
                           alpha: Optional[float] = None,
                           calibrate: Optional[str] = None,
                           passes: int = 1,
                           seed: int = 0,
                           num_examples: int = 6,
                           cfg_options: Optional[dict] = None,
                           device: str = 'cpu') -> dict:
    """Measure a teacher's mis-instruction on a config's training data.

    Writes ``misinstruction.json``, ``misinstruction.png`` (per-class rates
    and the histogram of ``s``) and ``calibration_examples.png`` into
    ``out_dir``.

    Args:
        config (str): a distillation config (its teacher network, teacher
            preprocessing and the LoCa settings of its loss are used) or a
            classifier's own training config.
        checkpoint (str): the teacher's checkpoint, or a checkpoint of a
            distillation run (its ``teacher.*`` weights are used).
        out_dir (str): where the JSON and the figures are written.
        tau, alpha, calibrate: LoCa's settings; None takes the config's
            LoCa loss (:func:`loca_settings_of`).
        passes (int): passes over the training split, each with new
            augmentation. Defaults to 1.
        seed (int): seed of the augmentation. Defaults to 0.
        num_examples (int): mis-instructed samples drawn in
            ``calibration_examples.png``. Defaults to 6.
        cfg_options (dict, optional): overrides merged into the config.
        device (str): where the teacher runs, e.g. ``'cuda'``. Defaults to
            ``'cpu'``.

    Returns:
        dict: what ``misinstruction.json`` holds.
    """
    if passes < 1:
        raise ValueError(f'passes must be >= 1, got {passes!r}')
    if calibrate not in (None, 'wrong', 'margin'):
        raise ValueError("calibrate must be 'wrong' or 'margin', got "
                         f'{calibrate!r}')
    cfg = Config.fromfile(config)
    if cfg_options is not None:
        cfg.merge_from_dict(cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    settings = loca_settings_of(cfg)
    for key, value in (('tau', tau), ('alpha', alpha),
                       ('calibrate', calibrate)):
        if value is not None:
            settings[key] = value

    set_random_seed(seed)
    dataloader = Runner.build_dataloader(cfg.train_dataloader, seed=seed)
    teacher = build_teacher(cfg, checkpoint).to(device)
    logits, labels = collect_logits(teacher, dataloader, passes)
    logits, labels = logits.cpu(), labels.cpu()
    class_names = list(dataloader.dataset.metainfo.get('classes', []))
    summary, probs, calibrated = summarize(logits, labels, class_names,
                                           **settings)
    summary.update(
        config=config,
        checkpoint=checkpoint,
        passes=passes,
        seed=seed,
        data='training split through the training pipeline')

    os.makedirs(out_dir, exist_ok=True)
    plot_summary(summary, osp.join(out_dir, 'misinstruction.png'))
    summary['example_samples'] = plot_examples(
        probs, calibrated, labels, class_names, num_examples,
        settings['tau'], osp.join(out_dir, 'calibration_examples.png'))
    with open(osp.join(out_dir, 'misinstruction.json'), 'w') as f:
        json.dump(summary, f, indent=2)
    return summary


def summary_text(summary: dict) -> str:
    """The summary in a few lines: rates overall and per class, and what
    LoCa changes."""
    lines = [
        'teacher top-1 on the augmented training data: '
        f"{100 * summary['teacher_top1']:.2f}% of "
        f"{summary['num_samples']} samples",
        f"mis-instruction rate: {100 * summary['misinstruction_rate']:.2f}%"
        f" ({summary['misinstructed']} samples)"
    ]
    for entry in summary['per_class']:
        rate = entry['rate']
        rate = 'n/a' if rate is None else f'{100 * rate:.2f}%'
        lines.append(f"  {entry['name']:>14}: {rate}")
    scale = summary['scale']
    if scale['num_calibrated']:
        lines.append(
            f"LoCa ({summary['calibrate']}, alpha {summary['alpha']}, "
            f"tau {summary['tau']}) changes {scale['num_calibrated']} "
            f"samples; s mean {scale['mean']:.3f}, median "
            f"{scale['quantiles']['0.5']:.3f}, min {scale['min']:.3f}")
    return '\n'.join(lines)
