"""Padding-free attention on packed rows: each example attends to itself only."""

import pytest
import torch

from tunesmith.formatting.chat import EncodedExample
from tunesmith.modeling.attention import (
    VARLEN,
    restore_attention,
    segments,
    use_varlen_attention,
)
from tunesmith.tokenization.batching import fill_rows, pack_rows


def _toy(toy_dir, attention="sdpa"):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(toy_dir, dtype=torch.float32,
                                                attn_implementation=attention).eval()


def _examples(lengths: list[int], vocab: int = 400) -> list[EncodedExample]:
    g = torch.Generator().manual_seed(1)
    ids = [torch.randint(3, vocab, (n,), generator=g).tolist() for n in lengths]
    return [EncodedExample(input_ids=row, labels=list(row)) for row in ids]


def test_segments_start_where_positions_restart() -> None:
    positions = torch.tensor([[0, 1, 2, 0, 1, 0, 0, 1], [0, 1, 2, 3, 4, 5, 0, 1]])
    assert segments(positions) == [[(0, 3), (3, 2), (5, 1), (6, 2)], [(0, 6), (6, 2)]]


@pytest.mark.parametrize("lengths", [[5, 17, 1, 30], [40], [9, 9, 9]])
def test_packed_logits_equal_each_example_alone(toy_dir, lengths) -> None:
    model = _toy(toy_dir)
    examples = _examples(lengths)
    batch = pack_rows(examples, 2, sum(lengths))
    assert batch.input_ids.shape[0] == 1
    previous = use_varlen_attention(model)
    assert previous == "sdpa" and model.config._attn_implementation == VARLEN
    with torch.no_grad():
        packed = model(input_ids=batch.input_ids, position_ids=batch.position_ids).logits[0]
        restore_attention(model, previous)
        order = fill_rows(lengths, sum(lengths))[0]  # the packing order: longest first
        alone = [model(input_ids=torch.tensor([examples[i].input_ids])).logits[0]
                 for i in order]
    assert model.config._attn_implementation == "sdpa"
    assert (packed - torch.cat(alone)).abs().max().item() <= 1e-4


def test_rows_split_across_a_batch_match_too(toy_dir) -> None:
    # two packed rows of different fill: the shorter row ends in its own padding block
    model = _toy(toy_dir)
    examples = _examples([12, 20, 7, 3])
    batch = pack_rows(examples, 2, 22)
    assert batch.input_ids.shape[0] == 2
    with torch.no_grad():
        # use_cache=False: transformers builds its block-diagonal mask only without a cache
        reference = model(input_ids=batch.input_ids, position_ids=batch.position_ids,
                          use_cache=False).logits
        use_varlen_attention(model)
        ours = model(input_ids=batch.input_ids, position_ids=batch.position_ids,
                     use_cache=False).logits
    real = batch.labels != -100  # labels mark every real token but the last of each example
    assert (ours - reference)[real].abs().max().item() <= 1e-4


def test_padding_masks_and_generation_fall_back_to_sdpa(toy_dir, tokenizer) -> None:
    # eval batches (right padding) and left-padded generation keep SDPA's exact behaviour
    model = _toy(toy_dir)
    tokenizer.padding_side = "left"
    enc = tokenizer(["Hello there, how are you?", "Hi"], return_tensors="pt", padding=True)
    with torch.no_grad():
        want = model.generate(**enc, max_new_tokens=6, do_sample=False)
        want_logits = model(**enc).logits
        previous = use_varlen_attention(model)
        got = model.generate(**enc, max_new_tokens=6, do_sample=False)
        got_logits = model(**enc).logits
    restore_attention(model, previous)
    assert torch.equal(got, want)
    real = enc["attention_mask"].bool()
    assert (got_logits - want_logits)[real].abs().max().item() <= 1e-5


def test_only_sdpa_models_switch(toy_dir) -> None:
    model = _toy(toy_dir, "eager")
    assert use_varlen_attention(model) is None
    assert model.config._attn_implementation == "eager"


@pytest.mark.parametrize("setting", [{"attention_dropout": 0.1}, {"sliding_window": 16},
                                     {"attn_logit_softcapping": 30.0}])
def test_models_it_cannot_split_keep_their_own_masking(toy_dir, setting) -> None:
    model = _toy(toy_dir)
    for key, value in setting.items():
        setattr(model.config, key, value)
    assert use_varlen_attention(model) is None
    assert model.config._attn_implementation == "sdpa"


def test_a_packed_row_never_falls_back_to_plain_causal_attention(toy_dir) -> None:
    # a call the per-example path cannot take (here: dropout) must not attend across examples
    from tunesmith.modeling.attention import varlen_attention

    layer = _toy(toy_dir).model.layers[0].self_attn
    q, k = torch.randn(1, 4, 6, 8), torch.randn(1, 2, 6, 8)
    packed = torch.tensor([[0, 1, 2, 0, 1, 2]])
    with pytest.raises(RuntimeError, match="packing: false"):
        varlen_attention(layer, q, k, k, None, dropout=0.1, position_ids=packed)
    alone = torch.arange(6)[None]
    out, _ = varlen_attention(layer, q, k, k, None, dropout=0.0, position_ids=alone)
    assert out.shape == (1, 6, 4, 8)
