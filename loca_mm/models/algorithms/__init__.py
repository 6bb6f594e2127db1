from .strict_single_teacher_distill import (StrictSingleTeacherDistill,
                                            load_teacher_strictly)

__all__ = ['StrictSingleTeacherDistill', 'load_teacher_strictly']
