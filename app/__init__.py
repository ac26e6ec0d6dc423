"""Adiuva server: the agent brain behind the Adiuva desktop app."""

__version__ = "0.1.0"
