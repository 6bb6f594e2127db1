"""tools/model_converters/repdistiller_to_mmpretrain.py and the key mapping
behind it: released files convert and load strictly; checkpoints that do
not fit fail with the offending keys named."""
import argparse

import _cifar_zoo_utils as zoo
import pytest
import torch
from mmengine.runner import load_checkpoint

from loca_mm.models.algorithms import load_teacher_strictly
from loca_mm.models.converters import (convert_repdistiller_checkpoint,
                                       convert_repdistiller_state_dict)
from loca_mm.utils.checkpoint import (CheckpointMismatchError,
                                      DamagedCheckpointError,
                                      UnsafeCheckpointError)
from _support import load_tool

@pytest.fixture(scope='module')
def tool():
    return load_tool('model_converters/repdistiller_to_mmpretrain.py')


@pytest.fixture(scope='module')
def inputs():
    return torch.randn(
        2,
        3,
        32,
        32,
        dtype=torch.float64,
        generator=torch.Generator().manual_seed(2))


@pytest.fixture(scope='module')
def resnet8(inputs):
    """The zoo's resnet8 with random weights, and its logits on inputs."""
    return zoo.reference_run('resnet8', inputs)


@pytest.fixture(scope='module')
def resnet8_target():
    return zoo.build_model('resnet8').state_dict()


def _mismatch(state_dict, name='resnet8', target=None):
    target = target or zoo.build_model(name).state_dict()
    with pytest.raises(CheckpointMismatchError) as error:
        convert_repdistiller_state_dict(state_dict, name, target)
    return str(error.value)


def test_cli_converts_a_released_file_for_strict_loading(
        tool, resnet8, inputs, tmp_path):
    src, dst = tmp_path / 'ckpt_epoch_240.pth', tmp_path / 'out' / 'r8.pth'
    # the zoo's files predate PyTorch's zip format
    torch.save(
        zoo.released_checkpoint(resnet8.state_dict),
        src,
        _use_new_zipfile_serialization=False)
    tool.main([str(src), str(dst), '--model', 'resnet8'])

    checkpoint = torch.load(dst, map_location='cpu', weights_only=True)
    assert set(checkpoint) == {'state_dict', 'meta'}
    assert checkpoint['meta']['epoch'] == 240
    assert checkpoint['meta']['accuracy'] == pytest.approx(72.34, abs=1e-4)
    assert checkpoint['meta']['model'] == 'resnet8'
    # Both strict loaders used later: mmengine's and the distiller's.
    for load in (lambda m: load_checkpoint(m, str(dst), strict=True),
                 lambda m: load_teacher_strictly(m, str(dst))):
        model = zoo.build_model('resnet8').double().eval()
        load(model)
        with torch.no_grad():
            logits = model(inputs, mode='tensor')
        torch.testing.assert_close(logits, resnet8.logits, rtol=0, atol=1e-12)


def test_bare_and_data_parallel_state_dicts_convert_alike(
        resnet8, resnet8_target):
    released = convert_repdistiller_checkpoint(
        zoo.released_checkpoint(resnet8.state_dict), 'resnet8', resnet8_target)
    bare = convert_repdistiller_checkpoint(resnet8.state_dict, 'resnet8',
                                           resnet8_target)
    data_parallel = convert_repdistiller_checkpoint(
        {'model': {
            f'module.{k}': v
            for k, v in resnet8.state_dict.items()
        }}, 'resnet8', resnet8_target)
    for other in (bare, data_parallel):
        assert list(other['state_dict']) == list(resnet8_target)
        for key, value in released['state_dict'].items():
            assert torch.equal(other['state_dict'][key], value)
    assert 'epoch' not in bare['meta']
    assert data_parallel['meta'].keys() == {'converted_from', 'model'}


def test_unknown_key_is_named(resnet8):
    state_dict = dict(resnet8.state_dict)
    state_dict['layer2.0.conv9.weight'] = state_dict.pop(
        'layer2.0.conv1.weight')
    message = _mismatch(state_dict)
    assert 'layer2.0.conv9.weight (as backbone.layer2.0.conv9.weight)' \
        in message
    assert 'missing from the checkpoint (1):\n  backbone.layer2.0.conv1.' \
        'weight' in message


def test_wrong_shape_is_named(resnet8):
    state_dict = dict(resnet8.state_dict)
    state_dict['fc.weight'] = torch.zeros(10, 64)
    message = _mismatch(state_dict)
    assert 'fc.weight (as head.fc.weight): checkpoint (10, 64), ' \
        'model (100, 64)' in message


def test_wrong_architecture_fails_with_the_keys_named(resnet8):
    # a resnet8 file converted as resnet14: the extra blocks are missing
    message = _mismatch(resnet8.state_dict, 'resnet14')
    assert 'does not fit resnet14' in message
    assert 'backbone.layer1.1.conv1.weight' in message


def test_cli_writes_nothing_for_a_checkpoint_that_does_not_fit(
        tool, resnet8, tmp_path):
    state_dict = dict(resnet8.state_dict)
    del state_dict['layer3.0.downsample.1.running_var']
    src, dst = tmp_path / 'broken.pth', tmp_path / 'never.pth'
    torch.save(zoo.released_checkpoint(state_dict), src)
    with pytest.raises(
            CheckpointMismatchError,
            match='backbone.layer3.0.downsample.1.running_var'):
        tool.main([str(src), str(dst), '--model', 'resnet8'])
    assert not dst.exists()


def test_two_keys_mapped_to_one_are_refused():
    target = zoo.build_model('wrn_16_1').state_dict()
    state_dict = zoo.reference_run(
        'wrn_16_1', torch.randn(1, 3, 32, 32, dtype=torch.float64)).state_dict
    # the same weight under the zoo's name and under loca_mm's
    state_dict['block1.0.conv1.weight'] = state_dict[
        'block1.layer.0.conv1.weight']
    message = _mismatch(state_dict, 'wrn_16_1', target)
    assert 'mapped twice (1):\n  block1.layer.0.conv1.weight and ' \
        'block1.0.conv1.weight (as backbone.block1.0.conv1.weight)' in message


def test_an_mmpretrain_checkpoint_is_not_taken_for_a_state_dict(
        resnet8_target):
    with pytest.raises(
            CheckpointMismatchError, match='an mmengine/mmpretrain checkpoint'):
        convert_repdistiller_checkpoint(
            {
                'state_dict': resnet8_target,
                'meta': {}
            }, 'resnet8', resnet8_target)


def test_unknown_model_name_is_refused(resnet8, resnet8_target):
    with pytest.raises(KeyError, match="unknown zoo model 'resnet9'"):
        convert_repdistiller_state_dict(resnet8.state_dict, 'resnet9',
                                        resnet8_target)


def _save_release(path, state_dict, **extra):
    torch.save(dict(zoo.released_checkpoint(state_dict), **extra), path)
    return path


def _logits_after_strict_load(dst, inputs):
    model = zoo.build_model('resnet8').double().eval()
    load_checkpoint(model, str(dst), strict=True)
    with torch.no_grad():
        return model(inputs, mode='tensor'), model


def test_release_without_num_batches_tracked_converts(tool, resnet8, inputs,
                                                      tmp_path):
    # Saved by PyTorch < 0.4.1, whose BatchNorm had no such buffer.
    old = {
        k: v
        for k, v in resnet8.state_dict.items()
        if not k.endswith('num_batches_tracked')
    }
    assert len(old) < len(resnet8.state_dict)
    src = _save_release(tmp_path / 'old.pth', old)
    dst = tmp_path / 'r8.pth'
    tool.main([str(src), str(dst), '--model', 'resnet8'])
    logits, model = _logits_after_strict_load(dst, inputs)
    torch.testing.assert_close(logits, resnet8.logits, rtol=0, atol=1e-12)
    # What a fresh BatchNorm holds.
    counts = {
        k: v
        for k, v in torch.load(dst)['state_dict'].items()
        if k.endswith('num_batches_tracked')
    }
    assert len(counts) == len(resnet8.state_dict) - len(old)
    fresh = torch.nn.BatchNorm2d(1).num_batches_tracked
    assert all(v.dtype == fresh.dtype and v.item() == 0
               for v in counts.values())
    # A BN layer missing altogether is still named.
    del old['layer1.0.bn1.running_mean']
    with pytest.raises(CheckpointMismatchError,
                       match=r'backbone\.layer1\.0\.bn1\.running_mean'):
        convert_repdistiller_state_dict(old, 'resnet8',
                                        zoo.build_model('resnet8').state_dict())


def test_release_with_training_options_converts_safely(
        tool, resnet8, inputs, tmp_path, capsys):
    # Some releases also pickle the argparse options of the run.
    src = _save_release(
        tmp_path / 'ckpt_epoch_240.pth',
        resnet8.state_dict,
        opt=argparse.Namespace(model='resnet8', learning_rate=0.05))
    dst = tmp_path / 'r8.pth'
    tool.main([str(src), str(dst), '--model', 'resnet8'])
    logits, _ = _logits_after_strict_load(dst, inputs)
    torch.testing.assert_close(logits, resnet8.logits, rtol=0, atol=1e-12)
    assert torch.load(dst, weights_only=True)['meta']['epoch'] == 240
    # Anything else that could run code is still refused, and not run.
    evil = _save_release(
        tmp_path / 'evil.pth', resnet8.state_dict, opt=_Payload())
    with pytest.raises(UnsafeCheckpointError, match='print'):
        tool.main([str(evil), str(tmp_path / 'never.pth'), '--model',
                   'resnet8'])
    assert 'executed' not in capsys.readouterr().out
    assert not (tmp_path / 'never.pth').exists()


class _Payload:

    def __reduce__(self):
        return (print, ('executed', ))


def test_cli_never_overwrites_unasked(tool, resnet8, tmp_path):
    src = _save_release(tmp_path / 'ckpt_epoch_240.pth', resnet8.state_dict)
    dst = tmp_path / 'r8.pth'
    dst.write_bytes(b'an earlier conversion')
    with pytest.raises(FileExistsError, match='--force'):
        tool.main([str(src), str(dst), '--model', 'resnet8'])
    assert dst.read_bytes() == b'an earlier conversion'
    tool.main([str(src), str(dst), '--model', 'resnet8', '--force'])
    assert set(torch.load(dst)) == {'state_dict', 'meta'}
    # The released file is never replaced, --force or not.
    released = src.read_bytes()
    for extra in ([], ['--force']):
        with pytest.raises(FileExistsError, match='is the input'):
            tool.main([str(src), str(src), '--model', 'resnet8', *extra])
    assert src.read_bytes() == released


def test_cli_names_a_damaged_release(tool, resnet8, tmp_path):
    src = _save_release(tmp_path / 'ckpt_epoch_240.pth', resnet8.state_dict)
    src.write_bytes(src.read_bytes()[:4096])
    with pytest.raises(DamagedCheckpointError,
                       match=f'{src}.*damaged or not a checkpoint'):
        tool.main([str(src), str(tmp_path / 'r8.pth'), '--model', 'resnet8'])
