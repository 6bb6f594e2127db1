"""The results collector on work directories in mmengine's layout."""
import runpy
import shutil
import statistics
import sys
from dataclasses import astuple
from pathlib import Path

import pytest
import yaml

import _work_dirs
from _support import REPO
from _work_dirs import write_start
from tools.analysis_tools.results import (collect, markdown_table, read_run,
                                   update_results_files)

CIFAR100 = REPO / 'configs' / 'distill' / 'cifar100'
LOCA = 'loca_logits_resnet56_resnet20_1xb64_cifar100'
DKDLOCA = 'dkdloca_logits_vgg13_vgg8_1xb64_cifar100'
KD = 'kd_logits_resnet56_resnet20_1xb64_cifar100'

# Student top-1 per epoch for each (config, seed): best and last differ.
CURVES = {
    (LOCA, 0): [50.0, 71.25, 70.5],
    (LOCA, 1): [52.0, 70.75, 71.0],
    (LOCA, 2): [49.0, 72.5, 69.25],
    (DKDLOCA, 0): [60.0, 74.0, 73.5],
    (DKDLOCA, 5): [61.0, 75.5, 74.0],
    (KD, 0): [40.0, 70.0, 69.0],
}
TEACHER = {LOCA: 72.34, DKDLOCA: 74.64, KD: 72.34}


def val_records(config: str, curve, first_epoch: int = 1) -> list:
    """The scalars of epochs ``first_epoch``... with the config's teacher."""
    return _work_dirs.val_records(curve, first_epoch, TEACHER[config])


def write_run(root: Path, config: str, seed: int, curve, **settings) -> Path:
    work_dir = root / config / f'seed{seed}'
    work_dir.mkdir(parents=True)
    (work_dir / f'{config}.py').write_text('# dumped config\n')
    write_start(work_dir, '20261201_100000', seed,
                val_records(config, curve), **settings)
    return work_dir


def run_cli(monkeypatch, capsys, *args) -> str:
    """Run collect_results.py as a script; returns what it printed."""
    monkeypatch.setattr(sys, 'argv', ['collect_results.py', *args])
    runpy.run_path(str(REPO / 'tools/analysis_tools/collect_results.py'),
                   run_name='__main__')
    return capsys.readouterr().out


@pytest.fixture
def work_dirs(tmp_path):
    root = tmp_path / 'work_dirs'
    for (config, seed), curve in CURVES.items():
        write_run(root, config, seed, curve)
    return root


def test_rows_are_mean_and_std_over_seeds_of_last_and_best(work_dirs):
    collection = collect([str(work_dirs)])
    assert collection.left_out == []
    results = {r.config: r for r in collection.results}
    assert sorted(results) == sorted({c for c, _ in CURVES})
    for config, result in results.items():
        curves = [c for (name, _), c in sorted(CURVES.items())
                  if name == config]
        assert result.seeds == sorted(s for c, s in CURVES if c == config)
        for stat, values in ((result.last, [c[-1] for c in curves]),
                             (result.best, [max(c) for c in curves])):
            assert stat.n == len(curves)
            assert stat.mean == pytest.approx(statistics.fmean(values))
            expected_std = (statistics.stdev(values)
                            if len(values) > 1 else 0.0)
            assert stat.std == pytest.approx(expected_std)
        assert result.teacher.mean == pytest.approx(TEACHER[config])
        assert result.last_epochs == [3] * len(curves)

    # LoCa: last 70.5/71.0/69.25, best 71.25/71.0/72.5.
    table = markdown_table(results.values())
    row, = [line for line in table.splitlines() if LOCA in line]
    assert row == (f'| {LOCA} | 70.25 ± 0.90 | 71.58 ± 0.80 | 3 (0, 1, 2) '
                   '| 3 | 72.34 ± 0.00 |')
    kd_row, = [line for line in table.splitlines() if KD in line]
    assert '| 69.00 | 70.00 | 1 (0) |' in kd_row  # one seed: no ±


def test_a_resumed_run_continues_its_curve(tmp_path):
    work_dir = write_run(tmp_path, LOCA, 3, [50.0, 60.0])
    # Resumed from epoch 1: the new start validates epochs 2 and 3 again.
    write_start(work_dir, '20261201_120000', 3,
                val_records(LOCA, [65.0, 64.0], first_epoch=2), resume=True)
    run = read_run(str(work_dir))
    assert run.student_top1 == {1: 50.0, 2: 65.0, 3: 64.0}
    collection = collect([str(work_dir)])
    result, = collection.results
    assert (result.last.mean, result.best.mean) == (64.0, 65.0)
    assert collection.left_out == []


def test_a_fresh_start_replaces_the_earlier_run(tmp_path, capsys,
                                                monkeypatch):
    # A finished run, then a fresh (not resumed) run in the same work dir
    # that has validated epoch 1 of 3 so far: the old epochs 2 and 3 are
    # not the new run's.
    work_dir = write_run(tmp_path, LOCA, 0, [10.0, 60.0, 70.0])
    write_start(work_dir, '20261201_120000', 0, val_records(LOCA, [30.0]))
    run = read_run(str(work_dir))
    assert run.student_top1 == {1: 30.0}
    collection = collect([str(work_dir)])
    assert collection.results == []
    assert [astuple(item) for item in collection.left_out] == [
        (str(work_dir / '20261201_100000'),
         'replaced by the fresh start 20261201_120000'),
        (str(work_dir), 'unfinished: validated to epoch 1 of 3')]
    # Once it has finished, it is the result, and the old start is listed.
    write_start(work_dir, '20261201_130000', 0,
                val_records(LOCA, [40.0, 41.0], first_epoch=2), resume=True)
    collection = collect([str(work_dir)])
    (result, ), (replaced, ) = collection.results, collection.left_out
    assert (result.last.mean, result.best.mean) == (41.0, 41.0)
    assert replaced.path == str(work_dir / '20261201_100000')
    # A resume flag that resumed nothing (it began at epoch 1) is fresh.
    write_start(work_dir, '20261201_140000', 0, val_records(LOCA, [5.0]),
                resume=True)
    assert read_run(str(work_dir)).student_top1 == {1: 5.0}


def test_an_unfinished_run_is_left_out_and_listed(work_dirs, tmp_path,
                                                  capsys, monkeypatch):
    # Seed 3 of LoCa validated epochs 1 and 2 of 3 and stopped.
    unfinished = write_run(work_dirs, LOCA, 3, [80.0, 90.0])
    never = write_run(work_dirs, KD, 4, [])
    collection = collect([str(work_dirs)])
    results = {r.config: r for r in collection.results}
    assert results[LOCA].seeds == [0, 1, 2]
    assert results[LOCA].best.mean == pytest.approx(
        statistics.fmean([71.25, 71.0, 72.5]))
    assert results[KD].seeds == [0]
    assert [astuple(item) for item in collection.left_out] == [
        (str(never), 'unfinished: never validated (schedule: 3 epochs)'),
        (str(unfinished), 'unfinished: validated to epoch 2 of 3')]
    # The command line prints them under the table, and the metafile gets
    # the finished seeds' mean only.
    readme, metafile = copied_config_folder(tmp_path)
    shutil.copy(CIFAR100 / 'README.md', readme)
    shutil.copy(CIFAR100 / 'metafile.yml', metafile)
    printed = run_cli(monkeypatch, capsys, str(work_dirs),
                      '--update-metafile', '--readme', str(readme),
                      '--metafile', str(metafile))
    assert printed.splitlines()[-5:] == [
        'Left out:', '',
        f'- {never}: unfinished: never validated (schedule: 3 epochs)',
        f'- {unfinished}: unfinished: validated to epoch 2 of 3',
        f'updated {readme} and {metafile}'
    ]
    models = {m['Name']: m for m in yaml.safe_load(metafile.read_text())
              ['Models']}
    assert models[LOCA]['Results'][0]['Metrics'] == {
        'Top 1 Accuracy': 71.58}


def test_runs_with_other_settings_are_rows_of_their_own(tmp_path):
    root = tmp_path / 'work_dirs'
    for seed in (0, 1):
        write_run(root / 'a', LOCA, seed, [60.0, 70.0, 70.0 + seed])
    write_run(root / 'b', LOCA, 0, [30.0, 40.0, 40.0], alpha=0.5)
    write_run(root / 'c', LOCA, 0, [30.0, 40.0, 50.0, 55.0], max_epochs=4)
    # Resumed (from its own checkpoint, which load_from names): the same
    # setting as seeds 0 and 1.
    resumed = write_run(root / 'd', LOCA, 2, [60.0])
    write_start(resumed, '20261201_120000', 2,
                val_records(LOCA, [70.0, 71.0], first_epoch=2), resume=True,
                load_from=f"'{resumed}/epoch_1.pth'")
    results = collect([str(root)]).results
    key = 'model.distiller.loss.alpha'
    rows = {tuple(r.variant): (r.seeds, r.last.mean) for r in results}
    assert rows == {
        (f'{key}=0.9', 'train_cfg.max_epochs=3'): ([0, 1, 2],
                                                   pytest.approx(212 / 3)),
        (f'{key}=0.5', 'train_cfg.max_epochs=3'): ([0], 40.0),
        (f'{key}=0.9', 'train_cfg.max_epochs=4'): ([0], 55.0),
    }
    labels = [r.label for r in results]
    assert f'{LOCA} ({key}=0.5, train_cfg.max_epochs=3)' in labels
    # The metafile is not written from a config with two settings.
    readme, metafile = copied_config_folder(tmp_path)
    shutil.copy(CIFAR100 / 'README.md', readme)
    shutil.copy(CIFAR100 / 'metafile.yml', metafile)
    before = readme.read_text(), metafile.read_text()
    with pytest.raises(ValueError) as info:
        update_results_files(results, str(readme), str(metafile),
                             'CIFAR-100')
    assert (f'{LOCA}: its runs differ in {key}, train_cfg.max_epochs'
            in str(info.value))
    assert (readme.read_text(), metafile.read_text()) == before


def test_the_same_seed_twice_is_an_error(work_dirs):
    copy = work_dirs / 'again' / LOCA
    shutil.copytree(work_dirs / LOCA / 'seed1', copy)
    with pytest.raises(ValueError, match=f'{LOCA}: seed 1 twice'):
        collect([str(work_dirs)])


def test_missing_or_corrupt_scalars_name_the_file(tmp_path):
    work_dir = write_run(tmp_path, LOCA, 0, [1.0])
    scalars = work_dir / '20261201_100000' / 'vis_data' / 'scalars.json'
    with open(scalars, 'a') as f:
        f.write('{"accuracy/top1": 7\n')
    with pytest.raises(ValueError) as info:
        read_run(str(work_dir))
    assert f'{scalars}, line 3: not a JSON object' in str(info.value)

    scalars.unlink()
    with pytest.raises(FileNotFoundError) as info:
        collect([str(work_dir)])
    assert str(work_dir) in str(info.value)
    assert '<timestamp>/vis_data/scalars.json' in str(info.value)


def test_a_run_without_seed_or_schedule_is_an_error_or_left_out(tmp_path):
    work_dir = write_run(tmp_path, LOCA, 0, [])
    config = work_dir / '20261201_100000' / 'vis_data' / 'config.py'
    write_start(work_dir, '20261201_110000', 0,
                val_records(LOCA, [3.0], first_epoch=2), resume=True)
    (work_dir / '20261201_110000' / 'vis_data' / 'config.py').write_text(
        'randomness = dict(seed=None)\nresume = True\n')
    with pytest.raises(ValueError, match='randomness.seed is not set'):
        read_run(str(work_dir))
    assert config.exists()
    # Without a schedule, whether the run finished is not known.
    (work_dir / '20261201_110000' / 'vis_data' / 'config.py').write_text(
        'randomness = dict(seed=0)\nresume = True\n')
    (left_out, ) = collect([str(work_dir)]).left_out
    assert left_out.reason == (
        'its config has no train_cfg.max_epochs or max_iters: the end of '
        'its schedule is unknown')


def table_cells(readme: Path) -> list:
    lines = readme.read_text().splitlines()
    start = next(i for i, line in enumerate(lines)
                 if line.startswith('| Teacher -> student'))
    return [[c.strip() for c in line.strip('|').split('|')]
            for line in lines[start:start + 13]]


def copied_config_folder(tmp_path):
    """README.md and metafile.yml at the repository's relative place, so
    the table's config links come out as in the real README."""
    folder = tmp_path / 'configs' / 'distill' / 'cifar100'
    folder.mkdir(parents=True)
    return folder / 'README.md', folder / 'metafile.yml'


def test_update_fills_loca_columns_only(work_dirs, tmp_path):
    readme, metafile = copied_config_folder(tmp_path)
    shutil.copy(CIFAR100 / 'README.md', readme)
    shutil.copy(CIFAR100 / 'metafile.yml', metafile)
    before_cells = table_cells(readme)
    before_meta = yaml.safe_load(metafile.read_text())

    update_results_files(collect([str(work_dirs)]).results, str(readme),
                         str(metafile), 'CIFAR-100')

    after_cells = table_cells(readme)
    header = before_cells[0]
    loca, dkdloca = header.index('LoCa'), header.index('DKD+LoCa')
    changed = {(r, c)
               for r, (old, new) in enumerate(zip(before_cells, after_cells))
               for c, (a, b) in enumerate(zip(old, new)) if a != b}
    resnet56, vgg13 = 2, 7  # rows of the pairs (after header and ---)
    assert after_cells[resnet56][0] == 'resnet56 -> resnet20'
    assert after_cells[vgg13][0] == 'vgg13 -> vgg8'
    assert changed == {(resnet56, loca), (vgg13, dkdloca)}
    # The table shows the best-epoch mean the metafile now holds.
    assert after_cells[resnet56][loca] == '71.58'
    assert after_cells[vgg13][dkdloca] == '74.75'
    # The text outside the table is as it was.
    old_text = (CIFAR100 / 'README.md').read_text().splitlines()
    new_text = readme.read_text().splitlines()
    assert len(old_text) == len(new_text)
    assert sum(a != b for a, b in zip(old_text, new_text)) == 2

    after_meta = yaml.safe_load(metafile.read_text())
    models = {m['Name']: m for m in after_meta['Models']}
    assert models[LOCA]['Results'] == [{
        'Task': 'Image Classification', 'Dataset': 'CIFAR-100',
        'Metrics': {'Top 1 Accuracy': 71.58}}]
    assert models[DKDLOCA]['Results'][0]['Metrics'] == {
        'Top 1 Accuracy': 74.75}
    # KD's own result is only printed: its published column and metafile
    # entry are unchanged, as is every other model.
    for entry, old in zip(after_meta['Models'], before_meta['Models']):
        if entry['Name'] not in (LOCA, DKDLOCA):
            assert entry == old
        else:
            assert entry['Metadata']['Published Top 1 Accuracy'] == \
                old['Metadata']['Published Top 1 Accuracy']
    assert after_meta.keys() == before_meta.keys()


def test_update_refuses_an_unknown_layout_and_writes_nothing(
        work_dirs, tmp_path):
    readme, metafile = copied_config_folder(tmp_path)
    readme.write_text((CIFAR100 / 'README.md').read_text().replace(
        '<!-- ', '<!- '))  # the table markers broken
    shutil.copy(CIFAR100 / 'metafile.yml', metafile)
    before = readme.read_text(), metafile.read_text()
    results = collect([str(work_dirs)]).results
    with pytest.raises(ValueError) as info:
        update_results_files(results, str(readme), str(metafile),
                             'CIFAR-100')
    assert str(readme) in str(info.value)
    assert (readme.read_text(), metafile.read_text()) == before

    shutil.copy(CIFAR100 / 'README.md', readme)
    metafile.write_text('Models: []\n')
    with pytest.raises(ValueError, match=f'no model {DKDLOCA} in collection'):
        update_results_files(results, str(readme), str(metafile),
                             'CIFAR-100')
    assert readme.read_text() == (CIFAR100 / 'README.md').read_text()
    assert metafile.read_text() == 'Models: []\n'


def test_cli_prints_writes_and_keeps_existing_out(work_dirs, tmp_path,
                                                  capsys, monkeypatch):
    out = tmp_path / 'table.md'
    printed = run_cli(monkeypatch, capsys, str(work_dirs / LOCA),
                      str(work_dirs / KD), '--out', str(out))
    assert printed == out.read_text()
    assert len(printed.splitlines()) == 4  # header, ---, 2 configs
    with pytest.raises(SystemExit, match=f'{out} exists; pass --force'):
        run_cli(monkeypatch, capsys, str(work_dirs / LOCA), '--out',
                str(out))
