"""Turn a distillation checkpoint into a plain student checkpoint.

    python tools/model_converters/convert_kd_ckpt_to_student.py SRC DST
        [--force]

A checkpoint saved by a distillation run holds the whole algorithm: the
student under ``architecture.``, the teacher under ``teacher.`` and the
distiller. The result holds only the student, with the ``architecture.``
prefix removed, so that mmpretrain loads it strictly into the student's own
config (``ImageClassifier``) for evaluation or deployment, without loca_mm or
mmrazor. An existing DST is replaced only with ``--force``; DST may never be
SRC.
"""
import argparse

# loca_mm allow-lists what mmengine checkpoints hold, so they load with
# torch.load's safe weights_only mode.
import loca_mm  # noqa: F401,I001
from loca_mm.utils.checkpoint import (STUDENT_PREFIX, CheckpointMismatchError,
                                      save_checkpoint_file, sub_state_dict)
from mmengine.runner import CheckpointLoader


def student_state_dict(state_dict: dict, source: str = 'the checkpoint'):
    """The student's weights of a distillation state dict, unprefixed."""
    return sub_state_dict(state_dict, STUDENT_PREFIX, source)


def convert(src: str, dst: str, force: bool = False) -> int:
    """Write the student of checkpoint ``src`` to ``dst``.

    Args:
        src (str): path or URL of a checkpoint saved by a distillation run.
        dst (str): where to write the student checkpoint.
        force (bool): replace an existing ``dst``.

    Returns:
        int: number of tensors written.
    """
    checkpoint = CheckpointLoader.load_checkpoint(src, map_location='cpu')
    if not isinstance(checkpoint, dict) or not isinstance(
            checkpoint.get('state_dict'), dict):
        raise CheckpointMismatchError(
            f"{src} has no 'state_dict': not an mmengine checkpoint")
    student = student_state_dict(checkpoint['state_dict'], src)
    converted = {'state_dict': student}
    if 'meta' in checkpoint:
        # Keeps dataset_meta (class names) for mmpretrain's inferencers.
        converted['meta'] = checkpoint['meta']
    save_checkpoint_file(converted, dst, src, force)
    return len(student)


def main() -> None:
    parser = argparse.ArgumentParser(
        description='Extract the student from a distillation checkpoint')
    parser.add_argument('src', help='distillation checkpoint')
    parser.add_argument('dst', help='output student checkpoint')
    parser.add_argument(
        '--force', action='store_true', help='replace an existing DST')
    args = parser.parse_args()
    count = convert(args.src, args.dst, args.force)
    print(f'wrote {count} student tensors to {args.dst}')


if __name__ == '__main__':
    main()
