from .teacher_once_val_loop import TeacherOnceValLoop

__all__ = ['TeacherOnceValLoop']
