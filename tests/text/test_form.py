"""A list of single words keeps its form (solvers.text.form): proposals that are sentences,
pasted feedback or JSON debris are refused; other values are left alone."""

from __future__ import annotations

import pytest
from textopt_helpers import Scripted, reply

import tracekit as tk
from solvers.text.form import breaks_form, word_list


@pytest.mark.parametrize("current, sep", [("hello, thanks", ","), ("urgent; asap; down", ";"),
                                          ("a\nb\nc", "\n"), ("Be concise, be polite", None),
                                          ("Answer in one word.", None), ("free", None), ("x, {y}", None)])
def test_a_list_of_single_words_is_recognised(current, sep):
    assert word_list(current) == sep


@pytest.mark.parametrize("proposal", ["prize, free, cash", "prize", "free money, gift card, win",
                                      "C++, e-mail, o'clock", "server down, data loss"])
def test_lists_of_short_items_keep_the_form(proposal):
    assert breaks_form("hello, thanks", proposal) == ""


@pytest.mark.parametrize("proposal", [
    "helping you help me, I'm just a simple way to give money. I can do anything in my life,",
    "hello, thanks. 156 }, { ",
    "on classify_42: message \"the meeting moved to 3pm\" was labeled ham:, claim your cash",
    "the meeting moved to 3pm, win",
    ", ,",
])
def test_sentences_and_debris_break_the_form(proposal):
    assert "is not a word or a short phrase" in breaks_form("hello, thanks", proposal)


def test_values_of_other_forms_are_not_judged():
    assert breaks_form("Be concise, be polite", "Be concise. Always cite your sources: it matters.") == ""
    assert breaks_form(3, "x") == "" and breaks_form("a, b", None) == ""


def test_a_sentence_for_a_keyword_list_is_refused_and_the_step_explores():
    keywords = tk.param("hello, thanks", name="keywords")
    sentence = "I'm just a simple way to give money. I can do anything in my life"
    opt = tk.Optimizer([keywords], llm=Scripted([reply({"keywords": sentence})]), max_reasks=0, seed=2)
    opt.zero_feedback()
    opt.backward(keywords + "", "'win a free prize now' was labeled ham; expected spam")
    report = opt.step()
    assert keywords.data != sentence and not word_list(sentence)
    assert report["keywords"].reason.startswith("explored: a recombination")
    assert "is not a word or a short phrase" in report["keywords"].reason
    assert breaks_form("hello, thanks", keywords.data) == ""  # what it explored keeps the form


def test_the_form_is_the_first_values_even_when_a_step_left_one_word():
    keywords = tk.param("hello, thanks", name="keywords")
    junk = "this is a whole new sentence, ok"
    opt = tk.Optimizer([keywords], llm=Scripted([reply({"keywords": "prize"}), reply({"keywords": junk})]),
                       max_reasks=0, seed=2)
    for _ in range(2):
        opt.zero_feedback()
        opt.backward(keywords + "", "'win a free prize now' was labeled ham; expected spam")
        report = opt.step()
    assert keywords.data != junk and "is not a word or a short phrase" in report["keywords"].reason


def test_exploring_a_word_list_recombines_short_items_only():
    import random

    from solvers.text.explore import _recombined

    rng = random.Random(0)
    texts = ["claim your cash reward today", "win a free prize now"]
    tried = ["hello, thanks", "thanks, claim your cash reward today"]  # a long item got in earlier
    for _ in range(50):
        out = _recombined("thanks, claim your cash reward today", tried, texts, rng)
        assert breaks_form("hello, thanks", out) == "", out
