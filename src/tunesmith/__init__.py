"""tunesmith: fine-tune a language model on your examples and prove that it worked."""

__version__ = "0.1.0"
