from tunesmith.evaluation.benchmarks import GroundedQA
from tunesmith.evaluation.grounding_probes import best_sentence, build_probes, split_by_group

A = GroundedQA("Paris is the capital of France. It had 2140526 residents in 2019.",
               "How many residents lived in the city in 2019?", "2140526", "France", "a")
B = GroundedQA("Berlin is the capital of Germany. The Spree flows through Berlin today.",
               "What river flows through Berlin?", "Spree", "Germany", "b")


def test_best_sentence_picks_most_overlap():
    assert best_sentence(A.passage, A.question) == "It had 2140526 residents in 2019."


def test_probes_have_both_labels_and_planted_kinds():
    probes = build_probes([A, B], seed=0)
    kinds = {(p.kind, p.unsupported) for p in probes}
    assert ("gold_answer", False) in kinds and ("passage_sentence", False) in kinds
    assert ("planted_number", True) in kinds and ("foreign_answer", True) in kinds
    planted = next(p for p in probes if p.kind == "planted_number" and p.group == "France")
    assert planted.answer != best_sentence(A.passage, A.question)


def test_yes_no_probes_lead_with_the_answer():
    item = GroundedQA("Cats are mammals that purr.", "are cats mammals?", "yes", "g1", "r")
    other = GroundedQA("Rome hosts the Vatican museums.", "is rome in italy?", "yes", "g2",
                       "r2")
    probes = build_probes([item, other], yes_no=True)
    assert all(p.answer.startswith("Yes. ") for p in probes)


def test_split_keeps_groups_apart():
    probes = build_probes([A, B], seed=0)
    calibration, test = split_by_group(probes)
    assert {p.group for p in calibration}.isdisjoint({p.group for p in test})
    assert len(calibration) + len(test) == len(probes)
