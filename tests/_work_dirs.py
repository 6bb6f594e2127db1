"""mmengine work directories written by hand, in the layout a training run
leaves: ``<work_dir>/<timestamp>/vis_data/{config.py,scalars.json}`` per
start, for the results collector and the reproduction script."""
import json
from pathlib import Path
from typing import Optional, Sequence


def write_start(work_dir: Path, timestamp: str, seed: int, records,
                resume: bool = False, alpha: float = 0.9,
                max_epochs: int = 3, load_from: str = 'None') -> Path:
    """One start of a run: vis_data/config.py (the config as mmengine dumps
    it: its settings and the per-run keys; ``load_from`` as Python source)
    and scalars.json."""
    vis_data = work_dir / timestamp / 'vis_data'
    vis_data.mkdir(parents=True)
    (vis_data / 'config.py').write_text(
        f"randomness = dict(seed={seed}, deterministic=False)\n"
        "custom_imports = dict(imports=['loca_mm'])\n"
        f"model = dict(distiller=dict(loss=dict(alpha={alpha}, tau=4.0)))\n"
        f"train_cfg = dict(by_epoch=True, max_epochs={max_epochs}, "
        "val_interval=1)\n"
        f"work_dir = '{work_dir}'\n"
        f"resume = {resume}\n"
        f"load_from = {load_from}\n"
        "launcher = 'none'\n")
    with open(vis_data / 'scalars.json', 'w') as f:
        for record in records:
            f.write(json.dumps(record) + '\n')
    return vis_data


def val_records(curve: Sequence[float],
                first_epoch: int = 1,
                teacher: Optional[float] = None) -> list:
    """Training and validation lines as LocalVisBackend writes them, the
    student's top-1 of each epoch from ``curve``; the teacher's top-1 with
    every validation, as the logger repeats it."""
    records = []
    for epoch, top1 in enumerate(curve, first_epoch):
        records.append({'lr': 0.05, 'loss': 1.0, 'epoch': epoch,
                        'iter': 10 * epoch, 'step': 10 * epoch})
        validation = {'accuracy/top1': top1, 'step': epoch}
        if teacher is not None:
            validation['teacher/accuracy/top1'] = teacher
        records.append(validation)
    return records
