import math
from types import SimpleNamespace

import pytest
import torch

from tunesmith.evaluation.benchmarks import MultipleChoice, read_multiple_choice
from tunesmith.evaluation.forgetting import (
    RetentionScore,
    compare_retention,
    continuation_logprobs,
    score_multiple_choice,
)


class FavouriteTokenLM(torch.nn.Module):
    """Logits are 0 everywhere except `boost` on one favourite token id."""

    def __init__(self, vocab: int, favourite: int, boost: float = 3.0) -> None:
        super().__init__()
        self.vocab, self.favourite, self.boost = vocab, favourite, boost
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask=None):
        logits = torch.zeros(*input_ids.shape, self.vocab)
        logits[..., self.favourite] = self.boost
        return SimpleNamespace(logits=logits)


def test_logprob_hand_computed():
    model = FavouriteTokenLM(vocab=10, favourite=7, boost=3.0)
    log_z = math.log(math.exp(3.0) + 9)
    scores = continuation_logprobs(model, [([1, 2], [7]), ([1, 2, 3], [4, 7])], pad_id=0)
    assert scores[0] == pytest.approx(3.0 - log_z, abs=1e-5)
    assert scores[1] == pytest.approx(-log_z + 3.0 - log_z, abs=1e-5)


def test_accuracy_one_and_zero(smol_tokenizer):
    yes = smol_tokenizer(" yes", add_special_tokens=False)["input_ids"]
    assert len(yes) == 1
    model = FavouriteTokenLM(len(smol_tokenizer), yes[0], boost=5.0)
    right = MultipleChoice("Question: ok?", ["no", "yes"], 1, "r1")
    wrong = MultipleChoice("Question: ok?", ["yes", "no"], 1, "r2")
    assert score_multiple_choice(model, smol_tokenizer, [right, wrong]) == [1.0, 0.0]


def test_batching_and_padding_do_not_change_scores(tiny):
    model, tokenizer = tiny
    items = [MultipleChoice("Question: Which is a fruit?", ["apple", "a red brick house"], 0,
                            "a"),
             MultipleChoice("Question: Sky colour on a clear day?", ["blue", "green"], 0, "b")]
    pairs = [(tokenizer(f"{i.query}\nAnswer:", add_special_tokens=False)["input_ids"],
              tokenizer(f" {c}", add_special_tokens=False)["input_ids"])
             for i in items for c in i.choices]
    batched = continuation_logprobs(model, pairs, tokenizer.pad_token_id, batch_size=4)
    single = [continuation_logprobs(model, [p], tokenizer.pad_token_id, 1)[0] for p in pairs]
    assert batched == pytest.approx(single, abs=1e-4)


def test_forgetting_report_drop_and_warning():
    before = RetentionScore("arc_easy", "base", [1.0, 1.0, 1.0, 0.0])
    after = RetentionScore("arc_easy", "tuned", [1.0, 0.0, 1.0, 0.0])
    assert before.accuracy == 0.75 and after.accuracy == 0.5
    report = compare_retention(before, after, max_drop_points=2.0)
    assert report.drop_points == pytest.approx(25.0)
    assert report.diff.regressed == [1]
    assert report.warnings and "25.0 points" in report.warnings[0]
    assert compare_retention(before, before, 2.0).warnings == []
    assert compare_retention(before, before, 2.0).drop_points == 0.0


@pytest.mark.parametrize(("second", "message"), [
    ('{"query": "Q", "choices": ["a"], "gold": 3}', "mc.jsonl:2"),
    # json keeps the last "gold" and would score against it without a word
    ('{"query": "Q", "choices": ["a", "b"], "gold": 0, "gold": 1}',
     "mc.jsonl:2: duplicate key gold: given 2 times"),
])
def test_read_multiple_choice_errors_name_the_line(tmp_path, second, message):
    path = tmp_path / "mc.jsonl"
    path.write_text('{"query": "Q", "choices": ["a", "b"], "gold": 1}\n' + second + "\n")
    from tunesmith.errors import DataError

    with pytest.raises(DataError, match=message):
        read_multiple_choice(path)
