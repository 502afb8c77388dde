"""dcihub: an open implementation of the Digital Convergence Initiative (DCI) standards."""

__version__ = "0.1.0"
