"""CIFAR-10 from its JPEG mirror: the configs retargeted from CIFAR-100 by
inheritance, and the study driver's split and results
(projects/cifar10_images/run.py). Tiny fake JPEG folders stand in for the
mirror."""
import json

import cv2
import numpy as np
import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import Runner

from _support import CONFIGS, REPO
from projects.cifar10_images import run as driver

CIFAR10 = sorted((CONFIGS / 'distill' / 'cifar10').glob('*.py')) + sorted(
    (CONFIGS / 'vanilla' / 'cifar10').glob('*.py'))
# What retargeting may change: the data, and the networks' classes.
# What a CIFAR-10 config may change in its CIFAR-100 config (the cifar10_*
# keys are the pieces of configs/_base_/datasets/cifar10_jpeg.py).
RETARGETED = ('data_preprocessor', 'train_dataloader', 'val_dataloader',
              'test_dataloader', 'model.teacher_ckpt', 'cifar10_',
              'model.architecture.head.num_classes',
              'model.teacher.head.num_classes', 'model.head.num_classes')
MEAN, STD = [125.307, 122.961, 113.8575], [62.985, 62.0925, 66.708]


def make_mirror(root, train_per_class, test_per_class, classes=None):
    """A JPEG folder laid out as the mirror; image ``i`` of class ``c`` is
    uniformly ``10 * c + i`` in its red channel only."""
    for split, count in (('train', train_per_class), ('test',
                                                      test_per_class)):
        for label, cls in enumerate(classes or driver.CLASSES):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(count):
                image = np.zeros((32, 32, 3), np.uint8)
                image[..., 2] = 10 * label + i  # BGR: red last
                cv2.imwrite(str(folder / f'{i:04d}.jpg'), image,
                            [cv2.IMWRITE_JPEG_QUALITY, 100])


def _flat(value, prefix=''):
    if isinstance(value, dict):
        flat = {}
        for key, item in value.items():
            flat.update(_flat(item, f'{prefix}{key}.'))
        return flat
    return {prefix[:-1]: value}


def test_there_are_the_two_classifiers_and_six_methods():
    assert [p.name for p in CIFAR10] == [
        f'{m}_logits_resnet32x4_resnet8x4_1xb64_cifar10.py'
        for m in ('dkd', 'dkdloca', 'kd', 'kdls', 'loca', 'locals')
    ] + ['resnet32x4_1xb64_cifar10.py', 'resnet8x4_1xb64_cifar10.py']


@pytest.mark.parametrize('path', CIFAR10, ids=lambda p: p.stem)
def test_config_is_its_cifar100_config_with_ten_classes(path):
    cfg = Config.fromfile(str(path))
    original = Config.fromfile(
        str(path.parents[1] / 'cifar100' /
            path.name.replace('_cifar10.py', '_cifar100.py')))
    changed = {
        k
        for k in _flat(cfg.to_dict()).keys() | _flat(
            original.to_dict()).keys()
        if _flat(cfg.to_dict()).get(k, 'missing') != _flat(
            original.to_dict()).get(k, 'missing')
    }
    assert changed and all(k.startswith(RETARGETED) for k in changed), changed
    assert cfg.data_preprocessor.mean == MEAN
    assert cfg.data_preprocessor.std == STD
    assert cfg.data_preprocessor.to_rgb is True
    for loader, prefix in (('train_dataloader', 'train'),
                           ('val_dataloader', 'test'),
                           ('test_dataloader', 'test')):
        dataset = cfg[loader].dataset
        assert (dataset.type, dataset.data_root, dataset.data_prefix) == (
            'CustomDataset', 'data/cifar10_images', prefix)
        # Nothing of the CIFAR-100 dataset is left over.
        assert set(dataset) == {
            'type', 'data_root', 'data_prefix', 'metainfo', 'pipeline'
        }, dataset
    if 'distill' in path.parts:
        init_default_scope('mmrazor')
        from mmrazor.registry import MODELS
        assert cfg.model.teacher_ckpt == 'checkpoints/cifar10/resnet32x4.pth'
        cfg.model.update(teacher_ckpt=None, allow_random_teacher=True)
        model = MODELS.build(cfg.model)
        networks = (model.architecture, model.teacher)
    else:
        init_default_scope('mmpretrain')
        from mmpretrain.registry import MODELS
        networks = (MODELS.build(cfg.model), )
    for network in networks:
        assert network.head.fc.out_features == 10


def test_split_takes_the_first_sorted_images_of_each_class(tmp_path):
    make_mirror(tmp_path, 3, 2)
    split = driver.split_images(str(tmp_path), 2)
    assert len(split['train']) == 20 and len(split['test']) == 20
    assert split['train'][:3] == [('airplane/0000.jpg', 0),
                                  ('airplane/0001.jpg', 0),
                                  ('automobile/0000.jpg', 1)]
    assert split['train'][-1] == ('truck/0001.jpg', 9)
    assert driver.split_images(str(tmp_path), 3, 1)['test'][9] == (
        'truck/0000.jpg', 9)
    with pytest.raises(ValueError, match='3 images, fewer than the 4'):
        driver.split_images(str(tmp_path), 4)
    (tmp_path / 'test' / 'cat').rename(tmp_path / 'test' / 'kitten')
    with pytest.raises(ValueError, match='class folders'):
        driver.split_images(str(tmp_path), 1)
    with pytest.raises(FileNotFoundError, match='CIFAR-10-images'):
        driver.split_images(str(tmp_path / 'nowhere'), 1)


def test_config_reads_the_split_with_its_labels_in_rgb(tmp_path):
    make_mirror(tmp_path / 'mirror', 3, 1)
    split = driver.split_images(str(tmp_path / 'mirror'), 2)
    subset = tmp_path / 'subset'
    size = driver.copy_subset(str(tmp_path / 'mirror'), split, str(subset))
    assert size == sum(p.stat().st_size for p in subset.rglob('*.jpg'))
    assert len(list((subset / 'train').rglob('*.jpg'))) == 20
    annotations = driver.write_annotations(split, str(tmp_path / 'ann'))
    cfg = Config.fromfile(
        str(CONFIGS / 'vanilla/cifar10/resnet8x4_1xb64_cifar10.py'))
    from projects.fashion_mnist.study import parse_options
    cfg.merge_from_dict(
        parse_options(
            driver.data_options(annotations, str(subset), 20, 0)))
    init_default_scope('mmpretrain')
    cfg.train_dataloader.sampler.shuffle = False
    batch = next(iter(Runner.build_dataloader(cfg.train_dataloader)))
    labels = [int(s.gt_label) for s in batch['data_samples']]
    assert labels == [i // 2 for i in range(20)]
    from mmpretrain.registry import MODELS
    preprocessor = MODELS.build(cfg.data_preprocessor)
    inputs = preprocessor(batch, False)['inputs']
    # Red is channel 0 after to_rgb; the crop pads with zeros, so the
    # centre pixel is the image's: (10 * label + i - mean) / std.
    red = inputs[:, 0, 16, 16].numpy() * STD[0] + MEAN[0]
    expected = [10 * (i // 2) + i % 2 for i in range(20)]
    np.testing.assert_allclose(red, expected, atol=2)
    np.testing.assert_allclose(
        inputs[:, 1, 16, 16].numpy() * STD[1] + MEAN[1], 0, atol=2)


def _runs(top1):
    """Finished runs with the given student top-1: {name: top1}."""
    return {name: dict(status='ok', top1=value, seconds=10.0 + value % 2,
                       command=['python', name])
            for name, value in top1.items()}


def test_summary_pairs_the_seeds_and_reports_the_differences():
    runs = _runs({
        'student s0': 80.0, 'student s1': 81.0,
        'kd decent s0': 84.0, 'kd decent s1': 85.5,
        'loca decent s0': 84.5, 'loca decent s1': 85.0,
        'kdls decent s0': 83.0,
        'locals decent s0': 83.25, 'locals decent s1': 86.0,
        'kd weak s0': 70.0,
    })
    runs['teacher decent'] = dict(status='ok', top1=90.0, seconds=60.0,
                                  command=['python', 'train'])
    runs['misinstruction decent'] = dict(
        status='ok', misinstruction_rate=0.125, train_top1=87.5,
        command=['python', 'measure'])
    runs['loca weak s0'] = dict(status='failed: exit status 1',
                                command=['python', 'x'])
    settings = dict(seeds=[0, 1], decent_teacher_epochs=10,
                    weak_teacher_epochs=1)
    summary = driver.summarize(runs, settings)
    assert summary['teachers']['decent'] == dict(
        epochs=10, top1=90.0, misinstruction_rate=0.125, train_top1=87.5,
        seconds=60.0)
    assert summary['teachers']['weak']['top1'] is None
    decent = summary['students']['decent']
    assert decent['kd'] == dict(per_seed={'0': 84.0, '1': 85.5}, mean=84.75)
    # The student alone is the same row under both teachers.
    assert summary['students']['weak']['student']['mean'] == 80.5
    differences = summary['differences']['decent']
    assert differences['loca - kd'] == dict(per_seed={'0': 0.5, '1': -0.5},
                                            mean=0.0)
    # Seed 1 of KD+LS did not finish: only seed 0 is paired.
    assert differences['locals - kdls'] == dict(per_seed={'0': 0.25},
                                                mean=0.25)
    assert differences['kd - student']['mean'] == pytest.approx(4.25)
    assert summary['differences']['weak']['loca - kd']['mean'] is None
    settings.update(train_per_class=4000, num_train=40000, num_test=10000,
                    student_epochs=4, batch_size=128, teacher_batch_size=256,
                    amp=True, num_tasks=30)
    summary['wall_seconds'] = 100.0
    # What results.json holds renders the same.
    table = driver.markdown(json.loads(json.dumps(summary)))
    assert table == driver.markdown(summary)
    assert '| decent | 10 | 90.00 | 12.50% | 87.50 | 60.00 |' in table
    assert '| KD | 84.00 | 85.50 | 84.75 | 70.00 | - | 70.00 |' in table
    assert '| LoCa - KD | +0.50 | -0.50 | +0.00 | - | - | - |' in table
    assert '- loca weak s0: failed: exit status 1' in table
    assert ('10 student runs finished, wall per run: mean 11 s, longest '
            '12 s.') in table
    assert 'batch 128 (teachers 256)' in table
    assert '12 of 30 processes finished' in table
    assert '\npython train\npython measure\npython x\n```' in table
    assert driver.markdown(summary, commands=False) == table[:table.index(
        '\nCommands')]
    assert '| method | decent s0 | decent s1 | decent mean | weak s0 |' in table


def test_driver_refuses_bad_settings():
    with pytest.raises(SystemExit):
        driver.parse_args(['--student-epochs', '0'])
    with pytest.raises(SystemExit):
        driver.parse_args(['--seeds', '1', '1'])
    assert (REPO / driver.TEACHER_CONFIG).is_file()
