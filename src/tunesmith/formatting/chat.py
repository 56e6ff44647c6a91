"""Render conversations with the chat template and mark the supervised spans.

Boundary rule: the rendered text is cut into segments at the start of every trained
assistant answer and just after its end-of-turn token. Each segment is tokenized on its own
and the ids are concatenated. The supervised segment is the answer exactly as written
(leading whitespace included) plus the end-of-turn token. Because the inference prompt is
built from the same segments, it is token-identical to the training prefix.

Tools: a conversation's function schemas go to the template as `tools=`. A template that
ignores them (found once per formatter by rendering a probe tool) gets them as text instead,
appended to the first system message after a blank line, or as a system message of their
own when there is none (see `tools_text`). Conversations without tools render as before.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from tunesmith.data.records import Conversation, Message
from tunesmith.data.shapes import RowProblem
from tunesmith.errors import TemplateError

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
_PROBE = "\u2063tunesmith-probe\u2063"
_PROBE_TOOL = {"type": "function", "function": {
    "name": "tunesmith_probe_tool", "description": "Probe whether the template renders tools.",
    "parameters": {"type": "object", "properties": {}}}}
TOOLS_HEADER = "You can call these tools. Each line is one tool's JSON schema:"
# template system prompts already named by the note in ChatFormatter._messages
_TOLD_TEMPLATE_SYSTEM: set[str] = set()


@dataclass
class EncodedExample:
    """Token ids and labels of one conversation; labels hold IGNORE_INDEX where masked."""

    input_ids: list[int]
    labels: list[int]
    ref: Any = None

    @property
    def supervised(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


def tools_text(tools: list[dict[str, Any]]) -> str:
    """The system-message text that lists tools for templates that ignore `tools=`.

    The header line, then one line per tool: its OpenAI form as compact JSON
    (`json.dumps`, keys in the row's order, non-ASCII kept).
    """
    return "\n".join([TOOLS_HEADER, *(json.dumps(tool, ensure_ascii=False) for tool in tools)])


class ChatFormatter:
    """Encode conversations for training and prompts for inference with one template."""

    def __init__(
        self,
        tokenizer: Any,
        system_prompt: str | None = None,
        end_of_turn: str | None = None,
        train_on: str = "all",
    ) -> None:
        if train_on not in ("all", "last"):
            raise TemplateError(f"train_on must be 'all' or 'last', found {train_on!r}")
        if not getattr(tokenizer, "chat_template", None):
            raise TemplateError(
                "the tokenizer has no chat template; add chat_template.jinja to the model "
                "folder or use a chat (instruct) model"
            )
        self.tokenizer = tokenizer
        self.system_prompt = system_prompt
        self.train_on = train_on
        self.end_of_turn = end_of_turn or self._find_end_of_turn()
        self.end_of_turn_id = tokenizer.convert_tokens_to_ids(self.end_of_turn)
        self.template_system = self._find_template_system()
        self._renders_tools: bool | None = None  # probed on the first conversation with tools

    # --- template probing -------------------------------------------------------------

    def _find_end_of_turn(self) -> str:
        """Return the special token the template writes right after an assistant answer."""
        text = self._render([Message("user", "hi"), Message("assistant", _PROBE)], False)
        after = text[text.index(_PROBE) + len(_PROBE):].lstrip(" ")
        specials = sorted(set(self.tokenizer.all_special_tokens) | set(
            getattr(self.tokenizer, "added_tokens_encoder", {})), key=len, reverse=True)
        for token in specials:
            if token and after.startswith(token):
                return token
        eos = self.tokenizer.eos_token
        if eos:
            return eos
        raise TemplateError("cannot find the end-of-turn token; set data.end_of_turn")

    def _find_template_system(self) -> str | None:
        """Return the text of the template's own default system prompt, if it adds one."""
        text = self._render([Message("user", _PROBE)], False)
        head = text[: text.index(_PROBE)]
        if "system" in head.lower():
            return head
        return None

    @property
    def renders_tools(self) -> bool:
        """Whether the chat template shows the `tools=` it is given (else they go as text)."""
        if self._renders_tools is None:
            try:
                text = self._apply([{"role": "user", "content": "hi"}], False, [_PROBE_TOOL])
            except RowProblem:
                text = ""
            self._renders_tools = "tunesmith_probe_tool" in text
            if not self._renders_tools:
                logger.info("the chat template ignores tools; they are listed in the system "
                            "message instead")
        return self._renders_tools

    # --- rendering ----------------------------------------------------------------------

    def _messages(self, messages: list[Message],
                  tools: list[dict[str, Any]] | None = None) -> list[dict[str, str]]:
        items = [{"role": m.role, "content": m.content} for m in messages]
        if any(m.role == "system" for m in messages):
            return self._with_tools_text(items, tools)
        if self.system_prompt is not None:
            items.insert(0, {"role": "system", "content": self.system_prompt})
        elif tools and not self.renders_tools:
            pass  # the tools' system message replaces the template's default
        elif self.template_system and self.template_system not in _TOLD_TEMPLATE_SYSTEM:
            _TOLD_TEMPLATE_SYSTEM.add(self.template_system)  # once per process and template
            logger.info("the chat template adds its own system prompt to rows without one; "
                        "set data.system_prompt to choose it")
        return self._with_tools_text(items, tools)

    def _with_tools_text(self, items: list[dict[str, str]],
                         tools: list[dict[str, Any]] | None) -> list[dict[str, str]]:
        """List the tools in the system message when the template would drop them."""
        if not tools or self.renders_tools:
            return items
        listing = tools_text(tools)
        at = next((i for i, item in enumerate(items) if item["role"] == "system"), None)
        if at is None:
            return [{"role": "system", "content": listing}, *items]
        items[at] = {"role": "system", "content": f"{items[at]['content']}\n\n{listing}"}
        return items

    def _template_tools(self, tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        return tools if tools and self.renders_tools else None

    def _render(self, messages: list[Message], generation_prompt: bool) -> str:
        items = [{"role": m.role, "content": m.content} for m in messages]
        return self._apply(items, generation_prompt)

    def _apply(self, items: list[dict[str, str]], generation_prompt: bool,
               tools: list[dict[str, Any]] | None = None) -> str:
        options = {"tools": tools} if tools else {}  # no tools: the call of old, byte for byte
        try:
            return self.tokenizer.apply_chat_template(
                items, tokenize=False, add_generation_prompt=generation_prompt, **options
            )
        except Exception as err:  # noqa: BLE001 - the template's raise_exception or Jinja
            raise RowProblem("TemplateFailed", f"the chat template cannot render the row: "
                             f"{err}") from None

    def _segments(self, conv: Conversation) -> list[tuple[str, bool]]:
        """Cut the rendered conversation into (text, supervised) segments."""
        messages = conv.messages
        if conv.meta.get("plain_text"):
            eos = self.tokenizer.eos_token or ""
            return [(messages[0].content, False), (messages[1].content + eos, True)]
        items = self._messages(messages, conv.tools)
        tools = self._template_tools(conv.tools)
        shift = len(items) - len(messages)
        full = self._apply(items, False, tools)
        trained = [i for i, m in enumerate(messages) if m.role == "assistant" and m.weight]
        if self.train_on == "last":
            trained = trained[-1:]
        segments, cursor = [], 0
        for index in trained:
            start = len(self._apply(items[: index + shift], True, tools))
            through = self._apply(items[: index + shift + 1], False, tools)
            end = through.find(self.end_of_turn, start + len(messages[index].content.rstrip()))
            if not full.startswith(through) or start < cursor or end < 0:
                raise RowProblem("TemplateMismatch", "the chat template renders turns "
                                 "inconsistently; cannot locate the answer to supervise")
            end += len(self.end_of_turn)
            segments += [(full[cursor:start], False), (full[start:end], True)]
            cursor = end
        return segments

    # --- public API ---------------------------------------------------------------------

    def encode(self, conv: Conversation) -> EncodedExample:
        """Return ids and labels for a conversation; raise RowProblem if it cannot render."""
        input_ids: list[int] = []
        labels: list[int] = []
        for text, supervised in self._segments(conv):
            if not text:
                continue
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            input_ids += ids
            labels += ids if supervised else [IGNORE_INDEX] * len(ids)
        return EncodedExample(input_ids, labels, conv.ref)

    def prompt_ids(self, messages: list[Message],
                   tools: list[dict[str, Any]] | None = None) -> list[int]:
        """Ids of the prompt for the next assistant answer, as the training prefix had them."""
        if messages and messages[-1].role == "assistant":
            raise TemplateError("the prompt must end with a user or tool turn")
        probe = Conversation([*messages, Message("assistant", _PROBE)], None, tools=tools)
        ids: list[int] = []
        for text, supervised in self._segments(probe):
            if supervised and _PROBE in text:
                break
            ids += self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids

    def segments(self, conv: Conversation) -> list[tuple[str, bool]]:
        """The (text, supervised) segments `encode` tokenizes one by one; for fast counting."""
        return self._segments(conv)

    def prompt_text(self, messages: list[Message],
                    tools: list[dict[str, Any]] | None = None) -> str:
        """The rendered prompt text, for previews and plain-text servers."""
        return self._apply(self._messages(messages, tools), True, self._template_tools(tools))
