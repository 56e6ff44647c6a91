"""Write adapters and merged models that load without tunesmith."""
