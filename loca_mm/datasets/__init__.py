# The OpenMMLab side is set up whole, repairs first, whichever of its modules
# a process imports first.
from .. import registry  # noqa: F401,I001
from .checked import LocalCIFAR100, LocalImageNet
from .fashion_mnist import LocalFashionMNIST

__all__ = ['LocalCIFAR100', 'LocalImageNet', 'LocalFashionMNIST']
