import email.utils
import math
import time

import pytest

from tunesmith.evaluation.endpoint import (
    RETRY_AFTER_CAP_S,
    ChatEndpoint,
    EndpointError,
    judge_answers,
    judge_verdict,
    retry_after_s,
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


def _ask(url: str, tries: int = 3) -> str:
    endpoint = ChatEndpoint(url, "m", timeout_s=5, retry_delays_s=(0.0,) * (tries - 1))
    return endpoint.chat([{"role": "user", "content": "x"}], 4)[0]


@pytest.mark.parametrize("fault", ["close", "short", "429", "502", "503", "504"])
def test_transient_failures_are_asked_again(fault):
    fake = FakeOpenAI("fine", faults=[fault, fault])
    with fake as url:
        assert _ask(url) == "fine"
    assert len(fake.requests) == 3


@pytest.mark.parametrize("fault, message", [
    ("close", "server closed the connection without replying; gave up after 2 tries"),
    ("short", r"reply cut short \(13 of 400 bytes\); gave up after 2 tries"),
    ("503", "HTTP 503 Service Unavailable; gave up after 2 tries"),
])
def test_lasting_transient_failure_is_one_clear_error(fault, message):
    with FakeOpenAI(faults=[fault] * 3) as url, pytest.raises(EndpointError, match=message):
        _ask(url, tries=2)


@pytest.mark.parametrize("fault, message", [
    ("html", ("reply is not JSON: '<html><body>Welcome to nginx!</body></html>'; expected an "
              "OpenAI-compatible chat-completions reply")),
    ("404", "HTTP 404 Not Found: '{\"error\": \"busy\"}'"),
    ("big", "reply larger than 16 MiB"),
])
def test_bad_reply_is_one_clear_error_without_retry(fault, message):
    fake = FakeOpenAI(faults=[fault])
    with fake as url, pytest.raises(EndpointError, match=message) as caught:
        _ask(url)
    assert "server running" not in str(caught.value) and len(fake.requests) == 1


def test_content_as_text_parts_is_joined():
    parts = [{"type": "text", "text": "Hello, "}, {"type": "image_url", "image_url": {}},
             {"type": "text", "text": "world"}]
    with FakeOpenAI(parts) as url:
        assert _ask(url) == "Hello, world"


@pytest.mark.parametrize("content, shown", [(42, "int 42"), ([{"type": "text"}], "list")])
def test_content_not_text_is_one_clear_error(content, shown):
    expected = f"message.content is {shown}.*expected a string"
    with FakeOpenAI(content) as url, pytest.raises(EndpointError, match=expected):
        _ask(url)


def _waits(faults: list[str], delays: tuple[float, ...] = (0.25, 0.5)) -> list[float]:
    """The pauses the client took before each new try (slept through no time)."""
    waits: list[float] = []
    fake = FakeOpenAI("fine", faults=faults)
    with fake as url:
        endpoint = ChatEndpoint(url, "m", timeout_s=5, retry_delays_s=delays, sleep=waits.append)
        assert endpoint.chat([{"role": "user", "content": "x"}], 4)[0] == "fine"
    assert len(fake.requests) == len(faults) + 1
    return waits


def test_retry_after_seconds_replaces_the_fixed_pause():
    assert _waits(["429 Retry-After: 7", "503 Retry-After: 0"]) == [7.0, 0.0]


def test_retry_after_http_date_is_waited_until():
    soon = email.utils.formatdate(time.time() + 30, usegmt=True)
    [wait] = _waits([f"503 Retry-After: {soon}"])
    assert 28.5 <= wait <= 30.0  # the date has whole seconds


def test_retry_after_is_capped():
    later = email.utils.formatdate(time.time() + 7200, usegmt=True)
    assert _waits(["429 Retry-After: 3600", f"503 Retry-After: {later}"]) == [
        RETRY_AFTER_CAP_S, RETRY_AFTER_CAP_S]


def test_without_a_usable_retry_after_the_fixed_pause_is_kept():
    # unreadable, negative, absent, and on a status that does not use the header
    faults = ["429 Retry-After: soon", "503 Retry-After: -5", "429", "502 Retry-After: 9"]
    assert _waits(faults, delays=(0.25, 0.5, 1.0, 2.0)) == [0.25, 0.5, 1.0, 2.0]


@pytest.mark.parametrize("value, seconds", [
    ("120", 120.0), (" 1.5 ", 1.5), ("Wed, 21 Oct 2015 07:28:00 GMT", 10.0),
    ("Wednesday, 21-Oct-15 07:28:00 GMT", 10.0), ("Wed Oct 21 07:28:00 2015", 10.0),
    ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0), ("-1", None), ("nan", None), ("soon", None),
    ("", None), (None, None),
    # not delay-seconds: a sign, Python's digit separator, other scripts' digits
    ("+3", None), ("-0", None), ("1_000", None), ("\u0967\u0968", None), ("inf", None),
    ("9" * 400, math.inf),  # too long to mean anything but "a long time": capped by the caller
])
def test_retry_after_header_forms(value, seconds):
    now = 1445412470.0  # 10 s before Wed, 21 Oct 2015 07:28:00 GMT
    assert retry_after_s(value, now) == seconds
