"""Turn conversations into token ids and labels with the model's chat template."""

from tunesmith.formatting.chat import ChatFormatter, EncodedExample

__all__ = ["ChatFormatter", "EncodedExample"]
