"""Find, convert and load base models; attach and merge adapters."""

from tunesmith.modeling.loading import LoadedModel, load_model, resolve_model

__all__ = ["LoadedModel", "load_model", "resolve_model"]
