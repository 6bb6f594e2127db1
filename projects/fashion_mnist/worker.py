"""The set-up of a process that runs many small mmengine Runners one after
another: the study's workers, and the test suite's processes.

None of it changes a result; it removes work that repeats in every Runner
and costs more than a toy training does.
"""
import functools
import gc


def remember_config_formatting() -> None:
    """Let yapf format each config text once in this process.

    A Runner formats its config (``Config.pretty_text``) for its log, its
    dumped config, its visualizer and every checkpoint's meta: the same
    text several times per run, a quarter of a second each. yapf's result
    is a function of the text and the style, so the cache returns exactly
    what yapf would. Calling it again changes nothing.
    """
    import mmengine.config.config as mmengine_config
    format_code = mmengine_config.FormatCode
    if hasattr(format_code, 'cache_info'):
        return

    @functools.lru_cache(maxsize=64)
    def formatted(text: str, style: tuple) -> tuple:
        return format_code(text, style_config=dict(style))

    @functools.wraps(format_code)
    def cached(text, style_config=None, **kwargs):
        if kwargs or not isinstance(style_config, dict):
            return format_code(text, style_config=style_config, **kwargs)
        return formatted(text, tuple(sorted(style_config.items())))

    cached.cache_info = formatted.cache_info
    mmengine_config.FormatCode = cached


def exclude_imports_from_garbage_collection() -> None:
    """Keep the objects that exist now out of every later garbage collection.

    Call it once the stack is imported: its modules' objects (hundreds of
    thousands) live as long as the process, yet each full collection walks
    them, and mmengine collects at every dataset it builds (0.4 s each).
    """
    gc.freeze()


def start_worker(threads: int) -> None:
    """Import the stack with ``threads`` intra-op threads, then set up the
    process as above (the initializer of the study's worker processes)."""
    import torch
    torch.set_num_threads(threads)
    import loca_mm  # noqa: F401  (repairs the stack, registers modules)
    remember_config_formatting()
    exclude_imports_from_garbage_collection()
