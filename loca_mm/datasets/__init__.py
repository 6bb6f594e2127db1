from .fashion_mnist import LocalFashionMNIST

__all__ = ['LocalFashionMNIST']
