"""Read example files, detect their shape and normalise every row to a conversation."""

from tunesmith.data.loading import LoadResult, load_conversations
from tunesmith.data.records import Conversation, Message, Reject, RowRef

__all__ = ["Conversation", "LoadResult", "Message", "Reject", "RowRef", "load_conversations"]
