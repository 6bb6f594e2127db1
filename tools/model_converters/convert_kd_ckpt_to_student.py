"""Turn a distillation checkpoint into a plain student checkpoint.

    python tools/model_converters/convert_kd_ckpt_to_student.py SRC DST

A checkpoint saved by a distillation run holds the whole algorithm: the
student under ``architecture.``, the teacher under ``teacher.`` and the
distiller. The result holds only the student, with the ``architecture.``
prefix removed, so that mmpretrain loads it strictly into the student's own
config (``ImageClassifier``) for evaluation or deployment, without loca_mm or
mmrazor.
"""
import argparse
import os
import os.path as osp

# loca_mm allow-lists what mmengine checkpoints hold, so they load with
# torch.load's safe weights_only mode.
import loca_mm  # noqa: F401,I001
import torch
from mmengine.runner import CheckpointLoader

STUDENT_PREFIX = 'architecture.'


def student_state_dict(state_dict: dict) -> dict:
    """The student's weights of a distillation state dict, unprefixed.

    Args:
        state_dict (dict): weights of a distillation algorithm.

    Returns:
        dict: the ``architecture.*`` entries without the prefix.

    Raises:
        ValueError: if there are no ``architecture.*`` entries.
    """
    student = {
        key[len(STUDENT_PREFIX):]: value
        for key, value in state_dict.items() if key.startswith(STUDENT_PREFIX)
    }
    if not student:
        sample = ', '.join(list(state_dict)[:5])
        raise ValueError('not a distillation checkpoint: no weights start '
                         f'with {STUDENT_PREFIX!r} (first keys: {sample})')
    return student


def convert(src: str, dst: str) -> int:
    """Write the student of checkpoint ``src`` to ``dst``.

    Args:
        src (str): path or URL of a checkpoint saved by a distillation run.
        dst (str): where to write the student checkpoint.

    Returns:
        int: number of tensors written.
    """
    checkpoint = CheckpointLoader.load_checkpoint(src, map_location='cpu')
    if 'state_dict' not in checkpoint:
        raise ValueError(f'{src} has no "state_dict": not an mmengine '
                         'checkpoint')
    student = student_state_dict(checkpoint['state_dict'])
    converted = {'state_dict': student}
    if 'meta' in checkpoint:
        # Keeps dataset_meta (class names) for mmpretrain's inferencers.
        converted['meta'] = checkpoint['meta']
    if osp.dirname(dst):
        os.makedirs(osp.dirname(dst), exist_ok=True)
    torch.save(converted, dst)
    return len(student)


def main() -> None:
    parser = argparse.ArgumentParser(
        description='Extract the student from a distillation checkpoint')
    parser.add_argument('src', help='distillation checkpoint')
    parser.add_argument('dst', help='output student checkpoint')
    args = parser.parse_args()
    count = convert(args.src, args.dst)
    print(f'wrote {count} student tensors to {args.dst}')


if __name__ == '__main__':
    main()
