"""Construction-time checks of the registered losses' arguments.

A config passes hyper-parameters as whatever its text or ``--cfg-options``
produced; a string ``'0.9'``, a NaN or an int where a flag belongs would
otherwise fail at the first forward, deep in torch, or train silently with
a wrong value. Each check raises a ``TypeError`` (wrong type) or
``ValueError`` (wrong value) that names the loss, the parameter and the
value, and returns the value in its canonical type.
"""
import math
import numbers
from typing import Optional, Sequence


def _describe(owner: str, name: str, value) -> str:
    return f'{owner}: {name}={value!r}'


def check_real(owner: str,
               name: str,
               value,
               *,
               greater_than: Optional[float] = None,
               at_least: Optional[float] = None,
               less_than: Optional[float] = None,
               hint: str = '') -> float:
    """A finite real number within the given bounds, as a float.

    Args:
        owner (str): the loss, for the message.
        name (str): the parameter, for the message.
        value: what the config gave.
        greater_than, at_least, less_than (float, optional): bounds.
        hint (str): appended to a ValueError's message.

    Returns:
        float: ``value`` as a float.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f'{_describe(owner, name, value)} must be a real '
                        f'number, got {type(value).__name__}')
    value = float(value)
    bounds = []
    if greater_than is not None:
        bounds.append((value > greater_than, f'> {greater_than}'))
    if at_least is not None:
        bounds.append((value >= at_least, f'>= {at_least}'))
    if less_than is not None:
        bounds.append((value < less_than, f'< {less_than}'))
    failed = [text for ok, text in bounds if not ok]
    if not math.isfinite(value) or failed:
        wanted = ' and '.join(text for _, text in bounds)
        raise ValueError(f'{_describe(owner, name, value)} must be finite'
                         f"{' and ' + wanted if wanted else ''}{hint}")
    return value


def check_integer(owner: str,
                  name: str,
                  value,
                  *,
                  at_least: Optional[int] = None,
                  optional: bool = False) -> Optional[int]:
    """An integer (not a bool, not a float such as 1.5), or None if
    ``optional``."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        kind = 'an integer or None' if optional else 'an integer'
        raise TypeError(f'{_describe(owner, name, value)} must be {kind}, '
                        f'got {type(value).__name__}')
    value = int(value)
    if at_least is not None and value < at_least:
        raise ValueError(
            f'{_describe(owner, name, value)} must be >= {at_least}')
    return value


def check_flag(owner: str, name: str, value) -> bool:
    """``True`` or ``False``; 0, 1 and strings such as ``'False'`` are
    refused (``bool('False')`` is True)."""
    if not isinstance(value, bool):
        raise TypeError(f'{_describe(owner, name, value)} must be True or '
                        f'False, got {type(value).__name__}')
    return value


def check_choice(owner: str, name: str, value, choices: Sequence[str]) -> str:
    """One of the strings in ``choices``."""
    if not isinstance(value, str):
        raise TypeError(f'{_describe(owner, name, value)} must be one of '
                        f'{tuple(choices)}, got {type(value).__name__}')
    if value not in choices:
        raise ValueError(
            f'{_describe(owner, name, value)} must be one of {tuple(choices)}')
    return value
