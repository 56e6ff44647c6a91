"""Detect a row's shape and normalise it to a `Conversation`.

Shapes: OpenAI `messages`, ShareGPT `conversations`, Alpaca `instruction`/`input`/`output`,
`prompt`/`completion` (or `prompt`/`response`), plain `text`, and `mapped` rows whose columns
are turned into turns by templates (for tables such as a CSV of `text,category`).
`messages` and `sharegpt` rows may carry `tools`: the function schemas the model may call.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass, field
from typing import Any

from tunesmith.data.json_keys import key_recorder, repeated_key_reason
from tunesmith.data.records import ROLES, Conversation, Message, RowRef, json_kind

SHAPES = ("auto", "messages", "sharegpt", "alpaca", "prompt_completion", "text", "mapped")

SHAREGPT_ROLES = {
    "system": "system", "human": "user", "user": "user", "gpt": "assistant",
    "assistant": "assistant", "chatgpt": "assistant", "bing": "assistant", "bard": "assistant",
    "function_call": "assistant", "observation": "tool", "tool": "tool", "function": "tool",
}


class RowProblem(Exception):
    """A row cannot become a conversation: which field, why, and the rule's name."""

    def __init__(self, rule: str, reason: str, field_name: str | None = None) -> None:
        super().__init__(reason)
        self.rule = rule
        self.reason = reason
        self.field = field_name


@dataclass
class RowMapping:
    """Templates that turn table columns into turns; `{column}` names a column's value."""

    user: str | None = None
    assistant: str | None = None
    assistant_json: dict[str, str] | None = None
    system: str | None = None
    fields: list[str] = field(default_factory=list)


def detect_shape(row: dict[str, Any]) -> str:
    """Name the shape of one row from its keys; raise RowProblem when none fits."""
    keys = set(row)
    if "messages" in keys:
        return "messages"
    if "conversations" in keys:
        return "sharegpt"
    if "instruction" in keys and "output" in keys:
        return "alpaca"
    if "prompt" in keys and ("completion" in keys or "response" in keys):
        return "prompt_completion"
    if "text" in keys and len(keys - {"id", "meta", "metadata", "source"}) == 1:
        return "text"
    found = ", ".join(sorted(keys)) or "none"
    nested = sorted(k for k, v in row.items() if isinstance(v, list) and v
                    and all(isinstance(item, dict) for item in v))
    if nested and not (keys - set(nested)) - {"title", "id", "version"}:
        # SQuAD-style files: each row is a group whose examples sit in a list of objects
        raise RowProblem(
            "UnknownShape",
            f"the row nests its examples ({nested[0]} holds a list of objects; keys: "
            f"{found}); tunesmith reads one example per row: flatten the file first "
            "(docs/data-audit.md, 'Nested files', has a jq command for SQuAD-style data)")
    raise RowProblem(
        "UnknownShape",
        f"cannot tell the row's shape from its keys ({found}); expected messages, "
        "conversations, instruction/output, prompt/completion, prompt/response or text, "
        "or set data.format: mapped with data.mapping templates",
    )


def to_conversation(
    row: dict[str, Any], ref: RowRef, shape: str = "auto", mapping: RowMapping | None = None
) -> Conversation:
    """Normalise one raw row; raise RowProblem naming the field when it is unusable."""
    if shape == "auto":
        shape = "mapped" if mapping and (mapping.user or mapping.assistant) else detect_shape(row)
    builder = _BUILDERS[shape]
    messages, meta = builder(row, mapping)
    _check_turns(messages, _field_namer(shape, row))
    tools = read_tools(row.get("tools")) if shape in ("messages", "sharegpt") else None
    return Conversation(messages, ref, meta, tools)


def read_tools(value: Any) -> list[dict[str, Any]] | None:
    """Normalise a row's `tools` to OpenAI form, `{"type": "function", "function": {...}}`.

    Accepts a list, or a JSON string of a list, of OpenAI-form tools or bare function
    schemas (`name`, `description`, `parameters`). None or an empty list means no tools.
    """
    if isinstance(value, str):
        value = _tools_from_text(value)
    if value is None:
        return None
    if not isinstance(value, list):
        raise RowProblem("BadTools", f"expected a list of function schemas, found "
                         f"{json_kind(value)}", "tools")
    return [_read_tool(item, f"tools[{index}]") for index, item in enumerate(value)] or None


def _tools_from_text(text: str) -> Any:
    hook, repeats = key_recorder()
    try:
        value = json.loads(text, object_pairs_hook=hook) if text.strip() else None
    except ValueError as err:
        raise RowProblem("BadTools", f"tools is text but not JSON ({err}); expected a "
                         "list of function schemas", "tools") from None
    if repeats:  # the text's own objects: the row's reader saw one string
        reason = repeated_key_reason(value, "tools")
        raise RowProblem("BadTools", f"the JSON text of tools has a {reason}", "tools")
    return value


def _read_tool(item: Any, where: str) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise RowProblem("BadTools", f"expected a function schema object, found "
                         f"{json_kind(item)}", where)
    function = item
    if "function" in item or "type" in item:  # OpenAI form
        if item.get("type", "function") != "function":
            raise RowProblem("BadTools", f"unsupported tool type {item['type']!r}; expected "
                             "'function'", f"{where}.type")
        function, where = item.get("function"), f"{where}.function"
        if not isinstance(function, dict):
            raise RowProblem("BadTools", f"expected an object with name, description and "
                             f"parameters, found {json_kind(function)}", where)
    name = function.get("name")
    if not isinstance(name, str) or not name.strip():
        raise RowProblem("BadTools", f"a function needs a name (text), found "
                         f"{json_kind(name)}", f"{where}.name")
    if not isinstance(function.get("parameters", {}), dict):
        raise RowProblem("BadTools", "parameters must be a JSON schema object, found "
                         f"{json_kind(function['parameters'])}", f"{where}.parameters")
    return {"type": "function", "function": dict(function)}


def _field_namer(shape: str, row: dict[str, Any]):
    """Return a function naming the field that holds message `i` in the original row."""
    if shape in ("messages", "sharegpt"):
        key = "messages" if shape == "messages" else "conversations"
        offset = 1 if shape == "sharegpt" and isinstance(row.get("system"), str) else 0
        return lambda i, part="content": f"{key}[{i - offset}]" + (f".{part}" if part else "")
    answer = {"alpaca": "output", "text": "text", "mapped": "assistant",
              "prompt_completion": "completion" if "completion" in row else "response"}[shape]
    return lambda i, part="content": answer


def _from_messages(row: dict[str, Any], _: RowMapping | None) -> tuple[list[Message], dict]:
    items = row["messages"]
    if not isinstance(items, list) or not items:
        raise RowProblem("WrongType", "expected a non-empty list of messages", "messages")
    messages = []
    for index, item in enumerate(items):
        where = f"messages[{index}]"
        if not isinstance(item, dict):
            raise RowProblem("WrongType", f"expected an object, found {item!r}", where)
        role = item.get("role")
        if role == "function":
            role = "tool"
        content = _content_text(item, where)
        messages.append(Message(_check_role(role, where), content, _weight(item, where)))
    return messages, {}


def _content_text(item: dict[str, Any], where: str) -> str:
    content = item.get("content")
    calls = item.get("tool_calls") or item.get("function_call")
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict)]
        if len(parts) != len(content):
            raise RowProblem("WrongType", "content parts must be objects", f"{where}.content")
        content = "".join(parts)
    if content is None and calls:
        # Tool calls are trained as their JSON text so they count as answer tokens.
        return json.dumps(calls, ensure_ascii=False)
    if not isinstance(content, str):
        found = json_kind(content)
        raise RowProblem("WrongType", f"expected text content, found {found}", f"{where}.content")
    return content


def _check_role(role: Any, where: str) -> str:
    if role not in ROLES:
        raise RowProblem(
            "UnknownRole", f"unknown role {role!r}; expected one of {', '.join(ROLES)}",
            f"{where}.role",
        )
    return str(role)


def _weight(item: dict[str, Any], where: str) -> int:
    if "weight" not in item:
        return 1
    value = item["weight"]
    if isinstance(value, bool) or value not in (0, 1) or not isinstance(value, int | float):
        raise RowProblem(
            "BadWeight", f"weight must be the number 0 or 1, found {value!r}", f"{where}.weight"
        )
    if item.get("role") != "assistant":
        raise RowProblem("BadWeight", "weight is only allowed on assistant turns", where)
    return int(value)


def _from_sharegpt(row: dict[str, Any], _: RowMapping | None) -> tuple[list[Message], dict]:
    items = row["conversations"]
    if not isinstance(items, list) or not items:
        raise RowProblem("WrongType", "expected a non-empty list of turns", "conversations")
    messages = []
    if isinstance(row.get("system"), str) and row["system"].strip():
        messages.append(Message("system", row["system"]))
    for index, item in enumerate(items):
        where = f"conversations[{index}]"
        if not isinstance(item, dict):
            raise RowProblem("WrongType", f"expected an object, found {item!r}", where)
        speaker = item.get("from", item.get("role"))
        role = SHAREGPT_ROLES.get(str(speaker).lower()) if speaker is not None else None
        if role is None:
            known = ", ".join(sorted(SHAREGPT_ROLES))
            reason = f"unknown speaker {speaker!r}; expected one of {known}"
            raise RowProblem("UnknownRole", reason, f"{where}.from")
        value = item.get("value", item.get("content"))
        if not isinstance(value, str):
            reason = f"expected text, found {json_kind(value)}"
            raise RowProblem("WrongType", reason, f"{where}.value")
        messages.append(Message(role, value, _weight(item | {"role": role}, where)))
    return messages, {}


def _from_alpaca(row: dict[str, Any], _: RowMapping | None) -> tuple[list[Message], dict]:
    for key in ("instruction", "input", "output", "system"):
        if row.get(key) is not None and not isinstance(row[key], str):
            raise RowProblem("WrongType", f"expected text, found {json_kind(row[key])}", key)
    prompt = row["instruction"] or ""
    if row.get("input"):
        prompt = f"{prompt}\n\n{row['input']}" if prompt else row["input"]
    messages = [Message("system", row["system"])] if row.get("system") else []
    for pair in row.get("history") or []:
        if isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair):
            messages += [Message("user", pair[0]), Message("assistant", pair[1])]
        else:
            raise RowProblem("WrongType", "expected [user, assistant] text pairs", "history")
    messages += [Message("user", prompt), Message("assistant", row["output"] or "")]
    return messages, {}


def _from_prompt_completion(
    row: dict[str, Any], _: RowMapping | None
) -> tuple[list[Message], dict]:
    answer_key = "completion" if "completion" in row else "response"
    for key in ("prompt", answer_key):
        if not isinstance(row.get(key), str):
            raise RowProblem("WrongType", f"expected text, found {json_kind(row.get(key))}",
                             key)
    messages = [Message("system", row["system"])] if isinstance(row.get("system"), str) else []
    messages += [Message("user", row["prompt"]), Message("assistant", row[answer_key])]
    return messages, {}


def _from_text(row: dict[str, Any], _: RowMapping | None) -> tuple[list[Message], dict]:
    if not isinstance(row.get("text"), str):
        raise RowProblem("WrongType", f"expected text, found {json_kind(row.get('text'))}",
                         "text")
    return [Message("user", ""), Message("assistant", row["text"])], {"plain_text": True}


def _from_mapped(row: dict[str, Any], mapping: RowMapping | None) -> tuple[list[Message], dict]:
    if mapping is None or not mapping.user or not (mapping.assistant or mapping.assistant_json):
        raise RowProblem("NoMapping", "format mapped needs data.mapping.user and .assistant")
    messages = []
    if mapping.system:
        messages.append(Message("system", _fill(mapping.system, row)))
    messages.append(Message("user", _fill(mapping.user, row)))
    if mapping.assistant_json:
        answer = {k: _fill(v, row) for k, v in mapping.assistant_json.items()}
        messages.append(Message("assistant", json.dumps(answer, ensure_ascii=False)))
    else:
        messages.append(Message("assistant", _fill(mapping.assistant or "", row)))
    return messages, {name: row.get(name) for name in mapping.fields}


def _fill(template: str, row: dict[str, Any]) -> str:
    names = [n for _, n, _, _ in string.Formatter().parse(template) if n]
    for name in names:
        if name not in row:
            found = ", ".join(sorted(row))
            raise RowProblem("MissingField", f"column {name!r} is missing (found {found})", name)
        value = row[name]
        if value is None or (isinstance(value, str) and not value.strip()):
            raise RowProblem("EmptyField", f"column {name!r} is empty", name)
    return template.format_map({n: str(row[n]).strip() for n in names})


def _check_turns(messages: list[Message], name_field) -> None:
    for index, msg in enumerate(messages):
        if msg.role == "assistant" and msg.weight and not msg.content.strip():
            raise RowProblem("EmptyAnswer", "empty or whitespace-only assistant answer",
                             name_field(index))
    talk = [m for m in messages if m.role != "system"]
    if talk and talk[0].role == "assistant" and talk[0].weight:
        raise RowProblem(
            "MisorderedRoles",
            "the conversation starts with an assistant turn that no user turn prompts",
            name_field(messages.index(talk[0]), "role"),
        )
    if not any(m.role == "assistant" and m.weight for m in messages):
        raise RowProblem("NoAnswer", "no assistant turn to train on", name_field(0, ""))


_BUILDERS = {
    "messages": _from_messages,
    "sharegpt": _from_sharegpt,
    "alpaca": _from_alpaca,
    "prompt_completion": _from_prompt_completion,
    "text": _from_text,
    "mapped": _from_mapped,
}
