"""specgrad: declarative training on a reverse-mode engine of its own."""
__version__ = "0.1.0"
