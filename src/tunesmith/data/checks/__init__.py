"""Checks of a data audit, one module per kind of fault they catch."""
