"""The exclusion pattern: every JSON string except the excluded ones, in llama.cpp's regex subset."""

from __future__ import annotations

import json
import random
import re

import pytest

from solvers.text.exclude import MAX_TOKENS_PER_VALUE, exclusion_pattern, json_tokens, normal_form
from solvers.text.problem import Variable
from solvers.text.reply import PLACEHOLDERS, ReplyError, check_value, reply_model

EXCLUDED = ["hello, thanks", "hello", "defs,", 'say "hi"\nthen \\ stop', "naïve café ✓", "a-b]c^[d"]


def matches(pattern: str, text: str) -> bool:
    """Grammar servers match the raw JSON text between the quotes."""
    return re.fullmatch(pattern[1:-1], json.dumps(text, ensure_ascii=False)[1:-1]) is not None


def test_excluded_strings_and_the_empty_string_do_not_match():
    pattern = exclusion_pattern(EXCLUDED)
    for text in EXCLUDED + [""]:
        assert not matches(pattern, text), text


@pytest.mark.parametrize("text", ["Hello, thanks", "HELLO", "hello ", "hello\n", "Defs,\t \n",
                                  'SAY "HI"\nthen \\ stop  ', "naïve café ✓ "])
def test_case_and_trailing_whitespace_variants_do_not_match(text):
    assert not matches(exclusion_pattern(EXCLUDED), text)


@pytest.mark.parametrize("text", ["hello, thanks!", "hello,", "hell", "h", "hello x", "hello \nx", "defs",
                                  "defs,,", 'say "hi"\nthen \\ stop.', 'say "hi"\tthen', "naïve café",
                                  "a-b]c^[d e", "free, prize", "x\ny", 'quote " inside', "✓"])
def test_everything_else_matches(text):
    assert matches(exclusion_pattern(EXCLUDED), text)


@pytest.mark.parametrize("seed", range(4))
def test_random_strings_match_exactly_when_not_excluded(seed):
    """The pattern against its definition: no leading whitespace, normal form not excluded."""
    rng = random.Random(seed)
    alphabet = 'aAbB, "\\\n\t-]^[éÉ/'
    excluded = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6))) for _ in range(30)]
    forms = {normal_form(x) for x in excluded}
    pattern = exclusion_pattern(excluded)
    near = [x + tail for x in excluded for tail in ("", " ", "\n ", "x", " x")]
    for text in near + ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 7))) for _ in range(3000)]:
        expected = text != "" and not text[0].isspace() and normal_form(text) not in forms
        assert matches(pattern, text) == expected, repr(text)


def test_a_slash_is_excluded_in_both_json_spellings():
    pattern = exclusion_pattern(["a/b"])[1:-1]
    assert not re.fullmatch(pattern, "a/b") and not re.fullmatch(pattern, "a\\/b")
    assert re.fullmatch(pattern, "a\\/c") and re.fullmatch(pattern, "a\\/b\\/")


@pytest.mark.parametrize("text", ["<New text>", "New Text ", "nEw TeXt", "[NEW TEXT]", "<value>\n",
                                  "...  ", "<One short sentence>", "  new text"])
def test_the_checker_and_the_grammar_agree_on_placeholders(text):
    """What the reply check refuses as a placeholder, the grammar cannot produce (and vice versa
    for these variants), so no grammar-constrained reply is lost to the placeholder rule."""
    v = Variable(name="keywords", kind="text", value="hello, thanks")
    schema = reply_model([v], exclude_current=True, constrain_text=True).model_json_schema()
    field = next(iter(schema["$defs"]["Suggestion"]["properties"].values()))
    with pytest.raises(ReplyError, match="placeholder"):
        check_value(v, text, None)
    assert not matches(field["pattern"], text)


def test_placeholders_keep_their_place_when_tried_values_fill_the_budget():
    v = Variable(name="keywords", kind="text", value="hello, thanks")
    tried = [f"tried value {i:03d}: some words, more words, and more" for i in range(300)]
    schema = reply_model([v], exclude_current=True, constrain_text=True,
                         exclude={"keywords": tried}).model_json_schema()
    field = next(iter(schema["$defs"]["Suggestion"]["properties"].values()))
    for text in [*PLACEHOLDERS, "<New Text>", "hello, thanks", tried[-1]]:
        assert not matches(field["pattern"], text), text
    assert matches(field["pattern"], tried[0])  # the oldest tried values are past the budget


@pytest.mark.parametrize("text", [" ", "\n", "  \t", " leading space", "\nnew line first", "\u3000x", "\xa0"])
def test_blank_or_leading_whitespace_replies_do_not_match(text):
    assert not matches(exclusion_pattern(["hello"]), text)
    assert not matches(exclusion_pattern([" hello", "\nx"]), text)


def test_control_characters_and_unicode_escapes():
    assert json_tokens("a\u0001b") is None  # needs \\u0001: never generated, so not excluded
    assert exclusion_pattern(["a\u0001b"]) == ""
    pattern = exclusion_pattern(["x"])
    assert not re.fullmatch(pattern[1:-1], "a\u0001")  # raw control characters are not JSON
    assert not re.fullmatch(pattern[1:-1], 'a"b')  # nor unescaped quotes
    assert re.fullmatch(pattern[1:-1], 'a\\"b')


def test_budget_limits():
    long = "x" * (MAX_TOKENS_PER_VALUE + 1)
    assert exclusion_pattern([long]) == ""  # too deep for the converters: left to the checks
    pattern = exclusion_pattern([long, "short"])
    assert matches(pattern, long) and not matches(pattern, "short")
    assert exclusion_pattern([]) == "" and exclusion_pattern([3, None]) == ""


def test_text_field_gets_the_pattern_only_when_asked():
    v = Variable(name="keywords", kind="text", value="hello, thanks")
    plain = reply_model([v], exclude_current=True).model_json_schema()
    assert "pattern" not in json.dumps(plain)
    schema = reply_model([v], exclude_current=True, constrain_text=True,
                         exclude={"keywords": ["spam"]}).model_json_schema()
    pattern = json.dumps(schema)
    field = next(iter(schema["$defs"]["Suggestion"]["properties"].values()))
    for text in ["hello, thanks", "spam", "New text", "<NEW TEXT>", *PLACEHOLDERS]:
        assert not matches(field["pattern"], text)
    assert matches(field["pattern"], "free, prize") and "pattern" in pattern


def test_the_pattern_is_not_shown_to_the_model():
    from tracekit.llm.structured import instruction

    v = Variable(name="keywords", kind="text", value="hello, thanks")
    model = reply_model([v], exclude_current=True, constrain_text=True)
    text = instruction(model)
    assert "pattern" not in text and "keywords" in text


def test_llama_cpp_converts_the_pattern_to_a_grammar():
    gbnf = pytest.importorskip("llama_cpp.llama_grammar")
    v = Variable(name="keywords", kind="text", value='say "hi"\nthen stop, ok? [x] - y ^ z ✓')
    schema = reply_model([v], exclude_current=True, constrain_text=True,
                         exclude={"keywords": ["free", "x" * MAX_TOKENS_PER_VALUE]}).model_json_schema()
    grammar = gbnf.json_schema_to_gbnf(json.dumps(schema))
    assert "keywords" in grammar and len(grammar) < 200_000


def test_the_grammar_stays_inside_llama_cpp_rule_limit():
    """llama.cpp refuses grammars with too many generated rules (each `*` and `?` makes some):
    about 1,200 such operators failed on the real server, about 700 work (see exclude.py)."""
    gbnf = pytest.importorskip("llama_cpp.llama_grammar")
    v = Variable(name="keywords", kind="text", value="hello, thanks")
    tried = [f"tried value {i:03d}: some words, more words, and more" for i in range(300)]
    schema = reply_model([v], exclude_current=True, constrain_text=True,
                         exclude={"keywords": tried}).model_json_schema()
    grammar = gbnf.json_schema_to_gbnf(json.dumps(schema))
    repetitions = sum(grammar.count(op) for op in (")*", ")?", ")+"))
    assert 300 < repetitions < 800, repetitions


@pytest.mark.parametrize("text", ["<new text> free, prize", "<NEW TEXT>, win", "[new text]x", "<value> 3",
                                  "<one short sentence> and more", "<text>\nmore"])
def test_placeholder_prefixes_are_refused_by_the_checker_and_the_grammar(text):
    v = Variable(name="keywords", kind="text", value="hello, thanks")
    schema = reply_model([v], exclude_current=True, constrain_text=True).model_json_schema()
    field = next(iter(schema["$defs"]["Suggestion"]["properties"].values()))
    with pytest.raises(ReplyError, match="placeholder"):
        check_value(v, text, None)
    assert not matches(field["pattern"], text)


@pytest.mark.parametrize("seed", range(3))
def test_prefix_exclusion_against_its_definition(seed):
    rng = random.Random(seed)
    alphabet = "aAbB<> ,\n"
    prefixes = ["".join(rng.choice(alphabet) for _ in range(rng.randint(2, 4))).strip() or "ab" for _ in range(4)]
    excluded = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 5))) for _ in range(10)]
    pattern = exclusion_pattern(excluded, prefixes=prefixes)
    forms = {normal_form(x) for x in excluded}
    starts = tuple(normal_form(p) for p in prefixes)
    for text in [p + t for p in prefixes for t in ("", " ", "x", "a b")] + \
            ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 7))) for _ in range(2000)]:
        expected = (text != "" and not text[0].isspace() and normal_form(text) not in forms
                    and not normal_form(text).startswith(starts))
        assert matches(pattern, text) == expected, (repr(text), prefixes)


def test_text_inside_a_value_is_not_a_prefix():
    pattern = exclusion_pattern([], prefixes=["<new text>"])
    assert matches(pattern, "free <new text> prize") and matches(pattern, "<new tex")
    assert matches(pattern, "new text here")  # only the bracketed form is a prefix
