"""Regenerate the bundled sample: made-up shop support messages -> JSON intent and urgency.

Run `python examples/sample/make_sample.py` to rewrite train.jsonl and test.jsonl (seeded).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SYSTEM = "Route the shop customer's message. Answer in JSON with intent and urgency."
INTENTS = {
    "track_order": ["Where is my order {order}?", "Has order {order} shipped yet?",
                    "Can you tell me when the {product} will arrive?",
                    "I'd like a tracking link for order {order}.",
                    "My {product} still hasn't shown up, any news?"],
    "cancel_order": ["Please cancel order {order}.", "I changed my mind about the {product}, "
                     "cancel it.", "Can I still cancel order {order}?",
                     "Stop order {order}, I don't want it anymore.",
                     "How do I cancel the {product} I bought yesterday?"],
    "refund_request": ["I want my money back for the {product}.",
                       "Refund order {order}, the {product} was broken.",
                       "How long does a refund for order {order} take?",
                       "The {product} doesn't fit, I'd like a refund.",
                       "I returned the {product} and still have no refund."],
    "change_address": ["Please ship order {order} to my new address.",
                       "I moved, can you change the delivery address for the {product}?",
                       "Wrong street on order {order}, can I fix it?",
                       "Send the {product} to my office instead of home.",
                       "Update the address on order {order} please."],
    "product_question": ["Is the {product} waterproof?", "Does the {product} come in blue?",
                         "What size should I pick for the {product}?",
                         "Is the {product} back in stock soon?",
                         "Can the {product} be washed in a machine?"],
}
PRODUCTS = ["rain jacket", "hiking boots", "wool scarf", "desk lamp", "coffee grinder",
            "yoga mat", "backpack", "phone case", "water bottle", "running shoes"]
URGENT = ["This is urgent!", "I need this sorted today.", "Please hurry, it's urgent.",
          "ASAP please."]


def make_rows(count: int, rng: random.Random) -> list[dict]:
    """Draw `count` conversations with balanced intents and about a third urgent."""
    rows = []
    names = sorted(INTENTS)
    for index in range(count):
        intent = names[index % len(names)]
        text = rng.choice(INTENTS[intent]).format(
            order=f"#{rng.randint(10000, 99999)}", product=rng.choice(PRODUCTS))
        urgent = rng.random() < 0.35
        if urgent:
            text = f"{text} {rng.choice(URGENT)}"
        answer = {"intent": intent, "urgency": "high" if urgent else "normal"}
        rows.append({"messages": [{"role": "system", "content": SYSTEM},
                                  {"role": "user", "content": text},
                                  {"role": "assistant", "content": json.dumps(answer)}]})
    rng.shuffle(rows)
    return rows


def main() -> None:
    rng = random.Random(7)
    here = Path(__file__).parent
    for name, count in (("train.jsonl", 200), ("test.jsonl", 50)):
        lines = [json.dumps(row) for row in make_rows(count, rng)]
        (here / name).write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
