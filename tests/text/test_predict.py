"""`tk.Predict` (an LLM call in a workflow) and its demos parameter with the demo solver."""

from __future__ import annotations

import json
from typing import Literal

import pytest
from pydantic import BaseModel

import tracekit as tk
from solvers.text.demos import DemoPool, DemoSelector

ROWS = [{"ticket": "The site is down", "label": "urgent"},
        {"ticket": "How do I change my email?", "label": "routine"},
        {"ticket": "Payment failed twice, fix now", "label": "urgent"},
        {"ticket": "Feature request: tags", "label": "routine"},
        {"ticket": "Server crashed, all blocked", "label": "urgent"},
        {"ticket": "What are your support hours?", "label": "routine"}]
Label = Literal["urgent", "routine"]


def replying(text):
    calls = []

    def llm(messages, **kwargs):
        calls.append(messages[-1]["content"])
        return text(messages[-1]["content"]) if callable(text) else text

    llm.calls = calls
    return llm


def make(llm, **kw):
    return tk.Predict("ticket -> label", instruction="Urgent or routine?", output=Label, llm=llm, **kw)


# --- the call -------------------------------------------------------------------------------------
@pytest.mark.parametrize("reply, read", [('{"label": "routine"}', "routine"), ("Urgent.", "urgent"),
                                         ("The answer is: routine", "routine")])
def test_answers_are_read_leniently(reply, read):
    out = make(replying(reply))(ticket="hello")
    assert out.data == read and f"read as {read!r}" in out.op.call_detail()


@pytest.mark.parametrize("reply, why", [("urgent or routine", "names 2 of the choices"),
                                        ("I cannot tell", "names none of the choices")])
def test_an_unreadable_answer_is_none_with_the_reason_not_an_exception(reply, why):
    out = make(replying(reply))(ticket="hello")
    assert out.data is None and why in out.op.call_detail()
    assert "Ticket: hello" in out.op.call_detail() and reply in out.op.call_detail()


def test_a_failing_call_is_an_unread_answer():
    def broken(messages, **kwargs):
        raise ConnectionError("server gone")

    out = make(broken)(ticket="hello")
    assert out.data is None and "server gone" in out.op.call_detail()


def test_demos_are_earlier_chat_turns_after_the_instruction():
    seen = []

    def llm(messages, **kwargs):
        seen.append(messages)
        return '{"label": "urgent"}'

    triage = make(llm, demos=ROWS[:2])
    out = triage("Disk full")
    assert seen[-1][:4] == [
        {"role": "user", "content": "Urgent or routine?\n\nTicket: The site is down"},
        {"role": "assistant", "content": '{"label": "urgent"}'},
        {"role": "user", "content": "Ticket: How do I change my email?"},
        {"role": "assistant", "content": '{"label": "routine"}'}]
    assert seen[-1][4]["role"] == "user" and seen[-1][4]["content"].startswith("Ticket: Disk full")
    names = {p.name for p in triage.parameters()}
    assert names == {"label_instruction", "label_demos", "label_temperature", "label_demo_selection"}
    assert set(out.parents) >= set(triage.parameters())
    assert "[assistant] {\"label\": \"routine\"}" in out.op.call_detail()
    plain = tk.Predict("question -> answer", instruction="Answer.", llm=llm,
                       demos=[{"question": "2+2?", "answer": "4"}])
    plain("3+3?")
    assert seen[-1][1] == {"role": "assistant", "content": "4"}  # str answers stay plain text


def test_nearest_selection_shows_the_most_similar_examples_but_never_the_input_itself():
    seen = []

    def llm(messages, **kwargs):
        seen.append(messages)
        return '{"label": "urgent"}'

    triage = make(llm, examples=ROWS, demo_selection="nearest", max_demos=2)
    triage("The payment failed, fix it now")
    users = [m["content"] for m in seen[-1] if m["role"] == "user"]
    assert users[-2].endswith("Payment failed twice, fix now")  # the most similar, next to the question
    assert len(seen[-1]) == 5
    triage(ROWS[4]["ticket"])  # a training example is never its own demo
    assert all(ROWS[4]["ticket"] not in m["content"] for m in seen[-1][:-1])
    triage.demo_selection.data = "fixed"  # back to the (empty) demos parameter
    triage("The payment failed, fix it now")
    assert len(seen[-1]) == 1 and seen[-1][0]["content"].startswith("Urgent or routine?\n\nTicket: The payment")
    with pytest.raises(ValueError, match="demo_selection must be one of"):
        make(llm, demo_selection="random")


def test_typed_outputs_int_and_pydantic():
    class Verdict(BaseModel):
        label: Label
        confidence: float

    count = tk.Predict("text -> n", instruction="How many words?", output=int, llm=replying('{"n": 3}'))
    assert count(text="a b c").data == 3
    verdict = tk.Predict("ticket -> verdict", instruction="Judge.", output=Verdict,
                         llm=replying('{"label": "urgent", "confidence": 0.9}'))
    v = verdict(ticket="down").data
    assert isinstance(v, Verdict) and v.label == "urgent"
    bad = tk.Predict("ticket -> verdict", instruction="Judge.", output=Verdict, llm=replying("no idea"))(ticket="x")
    assert bad.data is None and "not a valid Verdict" in bad.op.call_detail()


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="signature"):
        tk.Predict("ticket label", instruction="x")
    with pytest.raises(ValueError, match="example 0"):
        tk.Predict("ticket -> label", instruction="x", examples=[{"ticket": "t"}])
    triage = make(replying("urgent"))
    with pytest.raises(TypeError, match="missing input"):
        triage()
    with pytest.raises(tk.InvalidValueError, match="at most 4"):
        triage.demos.data = ROWS[:5]
    with pytest.raises(tk.InvalidValueError, match="lacks the fields"):
        triage.demos.data = [{"ticket": "t"}]
    with pytest.raises(tk.InvalidValueError, match="list of demos"):
        triage.demos.data = 3


def test_the_optimizer_sees_prompt_answer_and_reading():
    """The text solver's prompt shows the rendered prompt, the raw answer and the reading."""
    seen = []

    def llm(messages, **kwargs):
        content = messages[-1]["content"]
        if content.startswith("You are improving"):
            seen.append(content)
            return json.dumps({"reasoning": "r", "suggestion": {"label_instruction": "Reply urgent or routine."}})
        return "urgent or routine"

    triage = make(llm)
    opt = tk.Optimizer([triage.instruction], llm=llm)
    out = triage(ticket="The site is down")
    opt.backward(out, "the answer could not be read; expected urgent")
    opt.step()
    assert seen and "Ticket: The site is down" in seen[0] and "not read: the answer names 2" in seen[0]
    assert triage.instruction.data == "Reply urgent or routine."


# --- demos ---------------------------------------------------------------------------------------
def test_the_selector_proposes_new_subsets_and_keeps_the_best():
    pool = DemoPool(["ticket"])
    for row in ROWS:
        pool.add(row, "labelled")
    selector = DemoSelector(pool, k=3, trials=4, seed=1)
    chosen, info = selector.choose([], lambda demos: -sum(d["label"] == "routine" for d in demos))
    assert chosen is not None and info["proposals"] == 4 and min(info["losses"]) < info["baseline_loss"]
    assert all(len(chosen) <= 3 for _ in [0])
    kept, _ = selector.choose(chosen, lambda demos: 0.0 if demos == chosen else 1.0)
    assert kept is None  # nothing beats the current demos: kept
    state = json.loads(json.dumps(selector.state_dict()))
    again = DemoSelector(DemoPool(["ticket"]), k=3, trials=4)
    again.load_state_dict(state)
    assert again.proposals(chosen) == selector.proposals(chosen)


def test_proposed_subsets_show_each_answer_about_equally():
    pool = DemoPool(["ticket"])
    for i in range(9):  # a skewed pool: 7 urgent, 2 routine
        pool.add({"ticket": f"ticket {i}", "label": "routine" if i in (3, 7) else "urgent"}, "labelled")
    proposals = DemoSelector(pool, k=4, trials=6, seed=0).proposals([])
    assert len(proposals) == 6 and all(len(p) == 4 for p in proposals)
    assert all(sum(d["label"] == "routine" for d in p) == 2 for p in proposals)  # 2 + 2, not 4 urgent
    assert len({json.dumps(p) for p in proposals}) == 6


def test_a_bootstrapped_demo_replaces_a_labelled_one_for_the_same_input():
    pool = DemoPool(["ticket"])
    assert pool.add(ROWS[0], "labelled") and not pool.add(ROWS[0], "labelled")
    assert pool.add({"ticket": "The site is down", "label": "urgent"}, "bootstrap")
    assert pool.sources == ["bootstrap"]


def test_the_demo_route_chooses_demos_by_the_objective_and_never_worse():
    triage = make(replying('{"label": "urgent"}'), examples=ROWS)
    objective_calls = []

    def objective():
        objective_calls.append(list(triage.demos.data))
        return -sum(d["label"] == "routine" for d in triage.demos.data)  # routine demos help here

    opt = tk.Optimizer([triage.demos], objective=objective)
    opt.backward(triage(ticket="Disk full"), tk.Feedback(loss=1.0, text="wrong"))
    report = opt.step()
    row = report["label_demos"]
    assert row.solver == "demos" and row.changed
    assert any(d["label"] == "routine" for d in triage.demos.data) and len(triage.demos.data) <= 4
    assert triage.demos.data in objective_calls[1:]  # the chosen subset was evaluated
    # a later step whose proposals are all worse keeps the demos
    best = list(triage.demos.data)
    opt.objective = lambda: 0.0 if triage.demos.data == best else 5.0
    opt.zero_feedback()
    opt.backward(triage(ticket="Disk full"), tk.Feedback(loss=1.0, text="wrong"))
    assert not opt.step()["label_demos"].changed and triage.demos.data == best


def test_calls_scored_best_become_bootstrapped_demos_and_the_state_resumes():
    triage = make(replying(lambda prompt: '{"label": "urgent"}' if "down" in prompt else '{"label": "routine"}'))
    opt = tk.Optimizer([triage.demos])
    outs = [triage(ticket=t) for t in ("The site is down", "Refund please, money lost")]
    # the first answer was right (loss -1), the second wrong (loss 0): one bootstrapped demo
    opt.backward(outs, tk.Feedback(loss=-0.5, text="1 of 2 right", losses=[-1.0, 0.0]))
    report = opt.step()
    assert report["label_demos"].changed
    assert triage.demos.data == [{"ticket": "The site is down", "label": "urgent"}]
    state = json.loads(json.dumps(opt.state_dict()))
    opt2 = tk.Optimizer([triage.demos])
    opt2.load_state_dict(state)
    assert opt2.state_dict() == state
    with pytest.raises(tk.StateDictError):
        opt2.load_state_dict({"solvers": {"0:demos": {"label_demos": {"demos": [], "sources": ["x"]}}}})


def _wrong(opt, triage):
    opt.zero_feedback()
    opt.backward(triage(ticket="Disk full"), tk.Feedback(loss=1.0, text="wrong"))


def test_retrieval_is_a_demo_solver_proposal_kept_only_when_it_scores_best():
    triage = make(replying('{"label": "urgent"}'), examples=ROWS)
    assert tk.optimizer.route_of(triage.demo_selection, has_objective=True) == "demos"
    seen = []

    def objective():  # retrieval wins by far; any fixed subset helps a little
        seen.append((triage.demo_selection.data, len(triage.demos.data)))
        return -10.0 if triage.demo_selection.data == "nearest" else -len(triage.demos.data)

    opt = tk.Optimizer([triage.demos, triage.demo_selection], objective=objective)
    _wrong(opt, triage)
    report = opt.step()
    assert report["label_demo_selection"].solver == "demos" and triage.demo_selection.data == "nearest"
    assert seen[:2] == [("fixed", 0), ("nearest", 0)]  # the baseline, then retrieval first, demos as they were
    assert any(sel == "fixed" and n > 0 for sel, n in seen)  # fixed subsets were judged beside it
    assert triage.demos.data == [] and not report["label_demos"].changed
    assert "'nearest' rule" in report["label_demo_selection"].reason
    # from "nearest", a fixed subset that scores better switches back, setting both parameters
    opt.objective = lambda: -20.0 if triage.demo_selection.data == "fixed" and triage.demos.data else 0.0
    _wrong(opt, triage)
    report = opt.step()
    assert triage.demo_selection.data == "fixed" and triage.demos.data
    assert report["label_demos"].changed and report["label_demo_selection"].changed


def test_retrieval_that_loses_is_kept_out_and_retried_a_bounded_number_of_times():
    from solvers.text.demos import RULE_TRIES

    tried = []

    def run(state=None, steps=RULE_TRIES + 2):
        triage = make(replying('{"label": "urgent"}'), examples=ROWS)

        def objective():
            tried.append(triage.demo_selection.data)
            return 1.0 if triage.demo_selection.data == "nearest" else 0.0  # retrieval always worse

        opt = tk.Optimizer([triage.demos, triage.demo_selection], objective=objective, demo_trials=2)
        if state is not None:
            opt.load_state_dict(state)
        for _ in range(steps):
            _wrong(opt, triage)
            opt.step()
            assert triage.demo_selection.data == "fixed"
        return opt

    state = json.loads(json.dumps(run().state_dict()))
    assert tried.count("nearest") == RULE_TRIES and tried.count("fixed") > RULE_TRIES
    tried.clear()
    run(steps=1)  # a fresh run tries it again
    assert "nearest" in tried
    tried.clear()
    run(state, steps=1)  # the tries are in the resumed state
    assert "nearest" not in tried and tried


def test_selection_alone_without_examples_or_without_an_objective_is_kept():
    triage = make(replying('{"label": "urgent"}'), examples=ROWS)
    opt = tk.Optimizer([triage.demo_selection])  # no objective, no loss: no evidence for a rule
    _wrong(opt, triage)
    row = opt.step()["label_demo_selection"]
    assert not row.changed and row.solver == "demos" and triage.demo_selection.data == "fixed"
    bare = make(replying('{"label": "urgent"}'))  # no labelled examples: retrieval shows nothing
    opt = tk.Optimizer([bare.demo_selection], objective=lambda: 0.0 if bare.demo_selection.data == "fixed" else -1)
    _wrong(opt, bare)
    assert not opt.step()["label_demo_selection"].changed
    # the selection alone, with examples and an objective: the two rules are compared
    opt = tk.Optimizer([triage.demo_selection],
                       objective=lambda: -1.0 if triage.demo_selection.data == "nearest" else 0.0)
    _wrong(opt, triage)
    assert opt.step()["label_demo_selection"].changed and triage.demo_selection.data == "nearest"
    opt.objective = lambda: -1.0 if triage.demo_selection.data == "fixed" else 0.0
    _wrong(opt, triage)
    assert opt.step()["label_demo_selection"].changed and triage.demo_selection.data == "fixed"


@pytest.mark.real_llm
def test_predict_with_the_embedded_model_and_a_short_training_run(embedded_llm_nocache):
    """The real embedded model over the real openai client: typed answers through its
    grammar, and a Trainer run that trains instruction, demos and temperature together."""
    triage = tk.Predict("ticket -> label", instruction="Is this support ticket urgent or routine?",
                        output=Label, examples=ROWS, llm=embedded_llm_nocache)
    out = triage(ticket="The checkout page is broken and we lose orders")
    assert out.data in ("urgent", "routine") and "read as" in out.op.call_detail()
    examples = [{"text": r["ticket"], "label": r["label"]} for r in ROWS]
    opt = tk.Optimizer(triage.parameters(), llm=embedded_llm_nocache)
    trainer = tk.Trainer(triage, opt, lambda pred, ex: float(pred == ex["label"]), train=examples, val=examples,
                         call=lambda wf, ex: wf(ticket=ex["text"]), batch_size=3, max_steps=1,
                         progress=False, max_metric_calls=80)
    result = trainer.fit()
    assert result.steps >= 1
    assert all(row.keys() >= {"ticket", "label"} for row in triage.demos.data)
    solvers = {c.solver for r in opt.history for c in r.changes}
    assert "demos" in solvers


@pytest.mark.real_llm
def test_demos_as_chat_turns_make_the_embedded_model_follow_them(embedded_llm_nocache):
    """The real embedded model: asked plainly it answers the first choice for every ticket; with
    the nearest labelled tickets shown as earlier turns it answers in their pattern."""
    from pathlib import Path

    data = Path(__file__).resolve().parents[2] / "examples" / "data" / "tickets.jsonl"
    rows = [json.loads(line) for line in data.read_text().splitlines() if line.strip()]
    train = [{"ticket": r["text"], "label": r["label"]} for r in rows if r["split"] == "train"][:30]
    val = [r for r in rows if r["split"] == "val"][:12]
    triage = tk.Predict("ticket -> label", instruction="Is this support ticket urgent or routine?",
                        output=Label, examples=train, llm=embedded_llm_nocache)

    def accuracy():
        with tk.no_trace():
            answers = [triage(ticket=r["text"]).data for r in val]
        return sum(a == r["label"] for a, r in zip(answers, val)) / len(val), set(answers)

    plain, plain_answers = accuracy()
    triage.demo_selection.data = "nearest"
    nearest, nearest_answers = accuracy()
    assert nearest_answers == {"urgent", "routine"} and nearest >= plain + 0.15, (plain, nearest)


def test_a_parameter_routed_to_the_demo_solver_by_hand_is_kept_with_the_reason():
    ticket = tk.param("The site is down", name="ticket", kind="text")
    ticket.route = "demos"  # an input of the call, not one of its demo parts
    triage = make(replying('{"label": "urgent"}'), examples=ROWS)
    opt = tk.Optimizer([ticket], objective=lambda: 0.0)
    opt.backward(triage(ticket=ticket), tk.Feedback(loss=1.0, text="wrong"))
    row = opt.step()["ticket"]
    assert row.solver == "demos" and not row.changed and "demos and demo_selection only" in row.reason
    assert ticket.data == "The site is down"
