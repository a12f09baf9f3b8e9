"""cptlaw: continual-pre-training scaling laws, fitted from tracked runs, turned into data decisions."""

__version__ = "0.1.0"
