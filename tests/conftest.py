"""Suite-wide settings: one thread per process, launcher variables reset
around each test, Runner configs formatted once, the slow modules first."""
import functools
import os

# One intra-op thread per process, in this process and the tools it starts,
# set before torch is imported: the tests' networks are tiny, and threads
# that wait for a busy core cost more than they compute (a 5-iteration
# training took 0.6 s of CPU with one thread, 2 to 7 s with two, on 2
# shared cores). The suite's processes use the cores in parallel instead.
os.environ.setdefault('OMP_NUM_THREADS', '1')
os.environ.setdefault('MKL_NUM_THREADS', '1')

import mmengine.config.config as mmengine_config  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ['OMP_NUM_THREADS']))

# What torch's launchers set. The entry points publish ``--local-rank`` as
# ``LOCAL_RANK`` (as torchrun does); left behind by an in-process run, it
# turns later tests' Hugging Face Trainer into a distributed run.
LAUNCHER_VARIABLES = ('LOCAL_RANK', 'RANK', 'WORLD_SIZE', 'LOCAL_WORLD_SIZE',
                      'MASTER_ADDR', 'MASTER_PORT')
BASELINE = {name: os.environ.get(name) for name in LAUNCHER_VARIABLES}


def reset_launcher_variables():
    for name, value in BASELINE.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(autouse=True)
def isolated_launcher_environment():
    """Each test starts and ends with the launcher variables of the shell."""
    reset_launcher_variables()
    yield
    reset_launcher_variables()


def remember_formatted_text(format_code):
    """``format_code`` (yapf's ``FormatCode``) with a cache of its results.

    A Runner formats its config with yapf for its log, its dumped config
    and every checkpoint's meta: the same text several times, a second each
    on a busy core. yapf's result is a function of the text and the style,
    so the cache returns exactly what yapf would.
    """

    @functools.lru_cache(maxsize=64)
    def formatted(text: str, style: tuple) -> tuple:
        return format_code(text, style_config=dict(style))

    @functools.wraps(format_code)
    def cached(text, style_config=None, **kwargs):
        if kwargs or not isinstance(style_config, dict):
            return format_code(text, style_config=style_config, **kwargs)
        return formatted(text, tuple(sorted(style_config.items())))

    return cached


mmengine_config.FormatCode = remember_formatted_text(
    mmengine_config.FormatCode)


def pytest_collection_modifyitems(items):
    """Modules with a ``slow`` test first, each module's order kept, so that
    parallel workers (``-n``, whole modules each) start with the long ones
    and end together."""
    slow_modules = {
        item.path for item in items if item.get_closest_marker('slow')
    }
    items.sort(key=lambda item: item.path not in slow_modules)
