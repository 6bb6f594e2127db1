from .checked import LocalCIFAR100, LocalImageNet
from .fashion_mnist import LocalFashionMNIST

__all__ = ['LocalCIFAR100', 'LocalImageNet', 'LocalFashionMNIST']
