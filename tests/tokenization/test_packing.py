from itertools import pairwise

import torch

from tunesmith.data import load_conversations
from tunesmith.formatting.chat import IGNORE_INDEX, ChatFormatter
from tunesmith.tokenization.batching import collate, pack
from tunesmith.tokenization.examples import tokenize_conversations


def test_packed_examples_do_not_attend_to_each_other(toy_dir, tokenizer, write_jsonl) -> None:
    # BUG-14
    from transformers import AutoModelForCausalLM

    rows = [{"messages": [{"role": "user", "content": "Say red."},
                          {"role": "assistant", "content": "Red."}]},
            {"messages": [{"role": "user", "content": "Say blue."},
                          {"role": "assistant", "content": "Blue."}]}]
    loaded = load_conversations(write_jsonl(rows))
    a, b = tokenize_conversations(loaded.conversations, ChatFormatter(tokenizer), 64).examples
    packed = pack([a, b], tokenizer.pad_token_id)
    n_a = len(a.input_ids)
    assert packed.position_ids[0, n_a].item() == 0
    assert packed.position_ids[0].tolist() == list(range(n_a)) + list(range(len(b.input_ids)))
    # A's last label does not target B's first token
    assert packed.labels[0, n_a - 1].item() == IGNORE_INDEX
    single = collate([a], 0).supervised + collate([b], 0).supervised
    assert packed.supervised == single

    model = AutoModelForCausalLM.from_pretrained(toy_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        # without a KV cache, restarted position ids give a block-diagonal causal mask
        together = model(input_ids=packed.input_ids, position_ids=packed.position_ids,
                         use_cache=False).logits
        alone = model(input_ids=torch.tensor([b.input_ids]), use_cache=False).logits
        without_restart = model(input_ids=packed.input_ids, use_cache=False).logits
    assert torch.allclose(together[0, n_a:], alone[0], atol=1e-4)
    # control: the same rows without restarted positions do see each other
    assert not torch.allclose(without_restart[0, n_a:], alone[0], atol=1e-4)


def test_rows_are_filled_first_fit_decreasing() -> None:
    from tunesmith.tokenization.batching import fill_rows

    assert fill_rows([3, 9, 4, 6, 2], 10) == [[1], [3, 2], [0, 4]]
    assert fill_rows([12, 5], 10) == [[0], [1]]  # too long for a row: a row of its own
    rows = fill_rows([5, 5, 5, 5], 10)
    assert rows == [[0, 1], [2, 3]]


def test_packed_rows_keep_every_example_whole(tokenizer, write_jsonl) -> None:
    from tunesmith.tokenization.batching import pack_rows

    rows = [{"prompt": f"Question {i}?", "completion": "x " * i} for i in range(1, 6)]
    loaded = load_conversations(write_jsonl(rows))
    examples = tokenize_conversations(loaded.conversations, ChatFormatter(tokenizer), 64).examples
    capacity = 2 * max(len(e.input_ids) for e in examples)
    pad = tokenizer.pad_token_id
    batch = pack_rows(examples, pad, capacity)
    assert batch.attention_mask is None and 1 < batch.input_ids.shape[0] < len(examples)
    assert batch.input_ids.shape[1] <= capacity
    assert batch.supervised == collate(examples, pad).supervised
    # cut every row where its positions restart: each example, whole, plus padding runs
    segments = []
    for ids, positions in zip(batch.input_ids.tolist(), batch.position_ids.tolist()):
        starts = [t for t, p in enumerate(positions) if p == 0] + [len(ids)]
        segments += [tuple(ids[a:b]) for a, b in pairwise(starts)]
    for example in examples:
        segments.remove(tuple(example.input_ids))
    assert all(set(rest) == {pad} for rest in segments)
