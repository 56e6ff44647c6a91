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
