"""Suite-wide settings: the repository root importable, one thread per
process, launcher variables reset around each test, Runner configs formatted
once, the imported stack out of garbage collection, the slow modules
first."""
import os
import sys
from pathlib import Path

# The tests import the code outside the package by its path from the
# repository root: projects.fashion_mnist, tools.analysis_tools.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# One intra-op thread per process, in this process and the tools it starts,
# set before torch is imported: the tests' networks are tiny, and threads
# that wait for a busy core cost more than they compute (a 5-iteration
# training took 0.6 s of CPU with one thread, 2 to 7 s with two, on 2
# shared cores). The suite's processes use the cores in parallel instead.
os.environ.setdefault('OMP_NUM_THREADS', '1')
os.environ.setdefault('MKL_NUM_THREADS', '1')

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


def pytest_collection_finish(session):
    """Set up this process as the Fashion-MNIST study sets up its workers,
    once the test modules have imported the stack: yapf formats each config
    text once (a Runner formats its config several times, seconds per Runner
    on a busy core), and the stack's objects stay out of the garbage
    collections that mmengine starts at every dataset. (Under xdist only the
    workers collect.)
    """
    from projects.fashion_mnist.worker import (
        exclude_imports_from_garbage_collection, remember_config_formatting)
    remember_config_formatting()
    exclude_imports_from_garbage_collection()


def pytest_collection_modifyitems(items):
    """Modules with a ``slow`` test first, each module's order kept, so that
    parallel workers (``-n``, whole modules each) start with the long ones
    and end together."""
    slow_modules = {
        item.path for item in items if item.get_closest_marker('slow')
    }
    items.sort(key=lambda item: item.path not in slow_modules)
