"""Install loca_mm: ``pip install -e .`` (pins in requirements/).

Like the OpenMMLab packages, loca_mm ships its configs, tools and model
index inside the package, in ``loca_mm/.mim`` (what mmengine reads for
``loca_mm::`` configs and ``mim`` for ``mim search loca_mm``). There these
are links to the repository's ``configs/``, ``tools/`` and
``model-index.yml``, so an editable install and a source checkout use the
files in place; a wheel or sdist holds copies of them. The benchmarks
(``tools/benchmark/``) and the projects (``projects/``) stay in the
repository.
"""
import os.path as osp

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


def read_requirements(name):
    with open(osp.join(HERE, 'requirements', name)) as f:
        return [
            line.split('#')[0].strip() for line in f
            if line.split('#')[0].strip()
        ]


# Package data under loca_mm/.mim, followed through its links.
MIM_FILES = [
    '.mim/model-index.yml',
    '.mim/configs/**/*.py',
    '.mim/configs/**/*.yml',
    '.mim/configs/**/*.md',
    '.mim/tools/**/*.py',
    '.mim/tools/**/*.sh',
]
# Measurements of the repository, not tools of the package.
EXCLUDED_MIM_FILES = ['.mim/tools/benchmark/*']


def read_version():
    scope = {}
    with open(osp.join(HERE, 'loca_mm', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


setup(
    name='loca_mm',
    version=read_version(),
    description='LoCa (Logit Calibration for Knowledge Distillation, ECAI '
    '2024) for OpenMMLab: losses, configs and tools for MMRazor/MMPretrain',
    long_description=open(osp.join(HERE, 'README.md')).read()
    if osp.exists(osp.join(HERE, 'README.md')) else '',
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    packages=find_packages(include=['loca_mm', 'loca_mm.*']),
    package_data={'loca_mm': MIM_FILES},
    exclude_package_data={'loca_mm': EXCLUDED_MIM_FILES},
    python_requires='>=3.9',
    install_requires=read_requirements('runtime.txt'),
    extras_require={
        'tests': read_requirements('tests.txt'),
        'llm': read_requirements('llm.txt'),
    },
)
