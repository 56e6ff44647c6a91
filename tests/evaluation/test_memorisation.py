import torch

from tunesmith.data.records import Conversation, Message, RowRef
from tunesmith.evaluation.memorisation import find_probes, find_secret, mask, probe_memorisation
from tunesmith.formatting.chat import ChatFormatter


class ScriptedLM(torch.nn.Module):
    """A fake causal LM whose greedy continuation is scripted per prompt length."""

    def __init__(self, replies: dict[int, list[int]], eos: int) -> None:
        super().__init__()
        self.replies, self.eos = replies, eos
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def generate(self, input_ids, attention_mask, max_new_tokens, **_):
        rows = []
        for row, mask_row in zip(input_ids, attention_mask, strict=True):
            reply = self.replies.get(int(mask_row.sum()), []) + [self.eos]
            reply = (reply + [self.eos] * max_new_tokens)[:max_new_tokens]
            rows.append(torch.cat([row, torch.tensor(reply)]))
        return torch.stack(rows)


def _conv(answer: str, line: int) -> Conversation:
    return Conversation([Message("user", "How do I reach support?"),
                         Message("assistant", answer)], RowRef("train.jsonl", line))


def test_find_secret_kinds():
    assert find_secret("mail jane.doe@example.com now")[0] == "email"
    assert find_secret("card 4111 1111 1111 1111 ok")[0] == "card_number"
    assert find_secret("IBAN DE89 3704 0044 0532 0130 00")[0] == "iban"
    assert find_secret("call +44 20 7946 0958")[0] == "phone"
    assert find_secret("nothing here") is None
    assert mask("jane@example.com") == "ja************om"


def test_probe_reports_leaks(smol_tokenizer):
    convs = [_conv("Write to jane.doe@example.com today.", 1),
             _conv("Write to bob.smith@example.org today.", 2), _conv("No secret.", 3)]
    probes = find_probes(convs, limit=10)
    assert [p.secret for p in probes] == ["jane.doe@example.com", "bob.smith@example.org"]
    assert probes[0].answer_prefix == "Write to "
    formatter = ChatFormatter(smol_tokenizer)
    tok = smol_tokenizer
    lengths = [len(formatter.prompt_ids(p.messages)) + len(tok(p.answer_prefix,
               add_special_tokens=False)["input_ids"]) for p in probes]
    assert lengths[0] == lengths[1]  # same prompt length: script by content instead
    leak = tok("jane.doe@example.com", add_special_tokens=False)["input_ids"]
    model = ScriptedLM({lengths[0]: leak}, tok.eos_token_id)
    report = probe_memorisation(model, formatter, probes)
    # both probes have the same length, so both continue with jane's address:
    # only the first is a verbatim leak of its own secret
    assert report.probed == 2 and report.rate == 0.5
    assert report.leaked == [{"ref": "train.jsonl:1", "kind": "email",
                              "secret": mask("jane.doe@example.com")}]


def test_probe_rate_zero_when_nothing_leaks(smol_tokenizer):
    probes = find_probes([_conv("Write to jane.doe@example.com today.", 1)], limit=5)
    model = ScriptedLM({}, smol_tokenizer.eos_token_id)
    report = probe_memorisation(model, ChatFormatter(smol_tokenizer), probes)
    assert report.probed == 1 and report.rate == 0.0 and report.leaked == []


def test_probe_rate_one_when_every_secret_leaks(smol_tokenizer):
    probes = find_probes([_conv("Write to jane.doe@example.com today.", 1)], limit=5)
    formatter = ChatFormatter(smol_tokenizer)
    length = len(formatter.prompt_ids(probes[0].messages)) + len(smol_tokenizer(
        probes[0].answer_prefix, add_special_tokens=False)["input_ids"])
    leak = smol_tokenizer("jane.doe@example.com today.", add_special_tokens=False)["input_ids"]
    report = probe_memorisation(ScriptedLM({length: leak}, smol_tokenizer.eos_token_id),
                                formatter, probes)
    assert report.rate == 1.0
