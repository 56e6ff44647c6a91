import pytest

from tunesmith.evaluation.endpoint import (
    ChatEndpoint,
    EndpointError,
    judge_answers,
    judge_verdict,
)

from .fake_openai import FakeOpenAI


def test_parse_spec():
    endpoint = ChatEndpoint.parse("openai:http://127.0.0.1:8000/v1/#tiny")
    assert endpoint.url == "http://127.0.0.1:8000/v1" and endpoint.model == "tiny"
    with pytest.raises(EndpointError, match="expected openai:"):
        ChatEndpoint.parse("openai:127.0.0.1")


def test_chat_round_trip():
    with FakeOpenAI('{"intent": "card_arrival"}') as url:
        text, stopped = ChatEndpoint(url, "m").chat([{"role": "user", "content": "hi"}], 8)
    assert text == '{"intent": "card_arrival"}' and stopped is True


def test_judge_verdicts_hand_checked():
    assert judge_verdict("UNSUPPORTED") == 1.0
    assert judge_verdict("supported.") == 0.0
    assert judge_verdict("maybe") is None
    with FakeOpenAI() as url:
        flags = judge_answers(ChatEndpoint(url, "judge"), ["Broncos won."] * 2, ["Who?"] * 2,
                              ["The Broncos", "Denver"])
    assert flags == [0.0, 1.0]


def test_unreachable_endpoint_is_one_clear_error():
    with FakeOpenAI() as url:
        port_url = url
    with pytest.raises(EndpointError, match="is the server running"):
        ChatEndpoint(port_url, "m", timeout_s=2).chat([{"role": "user", "content": "x"}], 4)
