"""What the tests share: the repository's paths, tools loaded by path,
dataloader overrides, quiet Runners and the scalars a run logged.

Test instrumentation that training subprocesses import is apart, in
``_instrumentation.py``; tiny data sets of each format are in the
``_<data set>_utils.py`` modules.
"""
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Dict, List, Optional, Union

from mmengine.config import Config

REPO = Path(__file__).resolve().parents[1]
TOOLS = REPO / 'tools'
CONFIGS = REPO / 'configs'
DATALOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def load_tool(relative_path: str) -> ModuleType:
    """Import a script of tools/ (e.g. ``'train.py'``) as a module.

    It is in ``sys.modules`` under a name of its path (``tools/llm/distill.py``
    is ``_tool_llm_distill``), where dataclasses and pickle look it up.
    """
    path = TOOLS / relative_path
    name = '_tool_' + '_'.join(Path(relative_path).with_suffix('').parts)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def dataloader_options(data_root: Union[str, Path],
                       batch_size: Optional[int] = None,
                       in_process: bool = False,
                       **dataset) -> Dict[str, object]:
    """Config overrides pointing every dataloader at ``data_root``.

    Args:
        data_root (str | Path): every dataset's ``data_root``.
        batch_size (int, optional): every dataloader's batch size.
        in_process (bool): load in the test's process: no worker
            processes, no pinned memory.
        **dataset: more keys of every dataset, e.g. ``download=False``.
    """
    settings = {'dataset.data_root': str(data_root)}
    settings.update({f'dataset.{key}': value for key, value in dataset.items()})
    if batch_size is not None:
        settings['batch_size'] = batch_size
    if in_process:
        settings.update(
            num_workers=0, persistent_workers=False, pin_memory=False)
    return {
        f'{loader}.{key}': value
        for loader in DATALOADERS for key, value in settings.items()
    }


def command_line_options(options: Dict[str, object]) -> List[str]:
    """``options`` as the ``key=value`` words of a tool's --cfg-options."""
    return [f'{key}={value}' for key, value in options.items()]


def quiet_runner_reports(monkeypatch) -> None:
    """Skip what a Runner only writes to its log and work_dir: the
    environment report and the yapf-formatted config (seconds per Runner on
    2 cores). Not for tests that read a dumped config back."""
    monkeypatch.setattr('mmengine.runner.runner.collect_env', dict)
    monkeypatch.setattr(Config, 'pretty_text', property(lambda cfg: cfg.text))


def logged_scalars(work_dir: Path) -> List[List[dict]]:
    """The lines of ``<timestamp>/vis_data/scalars.json`` (mmengine's
    LocalVisBackend) of every run in ``work_dir``, oldest run first.

    A run resumed in the same work_dir is a second run (a list of its own).
    """
    files = sorted(Path(work_dir).glob('*/vis_data/scalars.json'))
    assert files, f'no */vis_data/scalars.json under {work_dir}'
    return [[json.loads(line) for line in path.read_text().splitlines()
             if line.strip()] for path in files]
