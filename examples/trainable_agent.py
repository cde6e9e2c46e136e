"""A small support agent whose keyword list and parsing code are trained from feedback.

The agent routes a support ticket to "billing" when it contains one of its keywords (a
text parameter the code consumes) and then extracts the amount with `parse_amount`, a
function whose source is a trainable parameter. Both start out wrong. Each step runs the
agent on the training tickets, gives text feedback on every wrong answer, and lets the
LLM optimizer (the embedded SmolLM2 model by default) propose new keywords and new code;
candidate search keeps a proposal only when it lowers the error count.

    .venv/bin/python examples/trainable_agent.py            # 6 steps, 4 candidates each
    .venv/bin/python examples/trainable_agent.py --quick    # 1 step, 2 candidates
"""

from __future__ import annotations

import argparse
import json
import time

import tracekit as tk

TICKETS = [
    ("Please refund 30 dollars for my invoice", "billing", 30),
    ("I was charged 12 dollars twice", "billing", 12),
    ("My invoice shows 45 dollars, too much", "billing", 45),
    ("The app crashes when I log in", "other", None),
    ("How do I change my avatar?", "other", None),
]


@tk.bundle()
def route(ticket, keywords):
    """Route the ticket to billing when it contains one of the comma-separated keywords."""
    words = [w.strip().lower() for w in keywords.split(",") if w.strip()]
    return "billing" if any(w in ticket.lower() for w in words) else "other"


@tk.bundle(trainable=True)
def parse_amount(text):
    """Return the dollar amount written in the ticket text as an int."""
    return int(text.split()[0])


class SupportAgent(tk.Module):
    """Routes tickets by keyword and extracts the amount of billing tickets."""

    def __init__(self) -> None:
        self.keywords = tk.param(
            "password, login", name="keywords",
            description="comma-separated words; a ticket containing any of them is a billing ticket")

    def forward(self, ticket: str) -> tuple[tk.Node, tk.Node]:
        return route(ticket, self.keywords), parse_amount(ticket)


def feedback_for(label: tk.Node, amount: tk.Node, want_label: str, want_amount: int | None) -> list[tuple[tk.Node, str]]:
    """Text feedback on the two outputs, and nothing when they are right."""
    notes = []
    if label.data != want_label:
        notes.append((label, f"routed to {label.data}, but it is a {want_label} ticket"))
    if want_amount is not None:
        if amount.is_error:
            notes.append((amount, f"parse_amount raised {amount.data}; the amount is {want_amount}"))
        elif amount.data != want_amount:
            notes.append((amount, f"parse_amount returned {amount.data!r}, expected {want_amount}"))
    return notes


def errors(agent: SupportAgent) -> int:
    """How many answers are wrong on the training tickets (the objective)."""
    count = 0
    with tk.no_trace():
        for ticket, want_label, want_amount in TICKETS:
            label = route(ticket, agent.keywords.data)
            count += label != want_label
            if want_amount is not None:
                try:
                    count += parse_amount(ticket) != want_amount
                except Exception:
                    count += 1
    return count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 step with 2 candidates")
    ap.add_argument("--steps", type=int, default=6)
    args = ap.parse_args()
    steps, candidates = (1, 2) if args.quick else (args.steps, 4)

    agent = SupportAgent()
    params = [agent.keywords, *parse_amount.parameters()]
    llm = tk.llm.default()
    opt = tk.Optimizer([{"params": params, "objective": lambda: errors(agent)}], llm=llm,
                       n_candidates=candidates, max_reasks=1)
    start_errors = errors(agent)
    print(f"start: {start_errors} errors on {len(TICKETS)} tickets")
    for step in range(1, steps + 1):
        opt.zero_feedback()
        notes = []
        for ticket, want_label, want_amount in TICKETS:
            label, amount = agent(ticket)
            notes += feedback_for(label, amount, want_label, want_amount)
        if not notes:
            print(f"step {step}: nothing left to fix")
            break
        for out, text in notes:
            opt.backward(out, text)
        started = time.perf_counter()
        report = opt.step()
        print(f"step {step}: {errors(agent)} errors ({time.perf_counter() - started:.1f}s)")
        print(report)
    summary = {"start_errors": start_errors, "final_errors": errors(agent),
               "keywords": agent.keywords.data, "parse_amount": parse_amount.parameters()[0].data}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
