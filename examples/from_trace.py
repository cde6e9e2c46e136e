"""Trace's `examples/greeting.py` (microsoft/Trace), run on tracekit.

The diff against the original file: the two import lines

    from opto.trace import node, bundle, model, ExecutionError   ->  from tracekit.trace import ...
    from opto.optimizers import OptoPrime                        ->  from tracekit.trace import OptoPrime

(and `from opto import trace` -> `from tracekit import trace`), this docstring, and the
`__main__` block at the end (the original defines `train()` without calling it). The
program itself is unchanged, including its quirks (`decide_lang` returns None and `greet`
always says "Hola"; the optimizer is there to fix them).

The LLM is tracekit's default backend: the embedded local model unless TRACEKIT_LLM_MODEL /
TRACEKIT_LLM_BASE_URL point elsewhere. Run: `python examples/from_trace.py`.
"""
# ruff: noqa  (Trace's program, kept as it was written)

from tracekit import trace
from tracekit.trace import node, bundle, model, ExecutionError
from tracekit.trace import OptoPrime


@trace.model
class Agent:

    def __init__(self, system_prompt):
        self.system_prompt = system_prompt
        self.instruct1 = trace.node("Decide the language", trainable=True)
        self.instruct2 = trace.node("Extract name if it's there", trainable=True)

    def __call__(self, user_query):
        response = trace.operators.call_llm(self.system_prompt,
                                            self.instruct1, user_query)
        en_or_es = self.decide_lang(response)

        user_name = trace.operators.call_llm(self.system_prompt,
                                             self.instruct2, user_query)
        greeting = self.greet(en_or_es, user_name)

        return greeting

    @trace.bundle(trainable=True)
    def decide_lang(self, response):
        """Map the language into a variable"""
        return

    @trace.bundle(trainable=True)
    def greet(self, lang, user_name):
        """Produce a greeting based on the language"""
        greeting = "Hola"
        return f"{greeting}, {user_name}!"


def feedback_fn(generated_response, gold_label='en'):
    if  gold_label == 'en' and 'Hello' in generated_response:
        return "Correct"
    elif gold_label == 'es' and 'Hola' in generated_response:
        return "Correct"
    else:
        return "Incorrect"


def train():
    epoch = 3
    agent = Agent("You are a sales assistant.")
    optimizer = OptoPrime(agent.parameters())

    for i in range(epoch):
        print(f"Training Epoch {i}")
        try:
            greeting = agent("Hola, soy Juan.")
            feedback = feedback_fn(greeting.data, 'es')
        except ExecutionError as e:
            greeting = e.exception_node
            feedback, terminal, reward = greeting.data, False, 0

        optimizer.zero_feedback()
        optimizer.backward(greeting, feedback)
        optimizer.step(verbose=True)

        if feedback == 'Correct':
            break

    return agent


class CorrectAgent:

    def __init__(self, system_prompt):
        self.system_prompt = system_prompt
        self.instruct1 = node("Decide the language: es or en?", trainable=True)
        self.instruct2 = node("Extract name if it's there", trainable=True)

    def __call__(self, user_query):
        response = trace.operators.call_llm(self.system_prompt, self.instruct1, user_query)
        en_or_es = self.decide_lang(response)

        user_name = trace.operators.call_llm(self.system_prompt, self.instruct2, user_query)
        greeting = self.greet(en_or_es, user_name)

        return greeting

    @bundle(trainable=True)
    def decide_lang(self, response):
        """Map the language into a variable"""
        return 'es' if 'es' or 'spanish' in response.lower() else 'en'

    @bundle(trainable=True)
    def greet(self, lang, user_name):
        """Produce a greeting based on the language"""
        greeting = "Hola" if lang.lower() == "es" else "Hello"
        return f"{greeting}, {user_name}!"


if __name__ == "__main__":
    train()
