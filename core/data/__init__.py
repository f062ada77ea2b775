"""Datasets: MNIST digits, the Moving MNIST generator, the released file formats, KTH Action, and torch loaders."""
