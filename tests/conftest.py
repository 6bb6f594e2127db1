"""Suite-wide isolation: tests run in one process, and so do some tools."""
import os

import pytest

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
