"""Benchmark of the embedded LLM backend; prints one JSON object.

Measures, over N calls (default 50) on the embedded model (SmolLM2-135M on llama.cpp):
server start-up, latency per plain call, generation speed (completion tokens / s),
latency of cache hits, and how often structured replies validate (on the first try, and
after tracekit's repair + re-asks).

    .venv/bin/python benchmarks/llm.py [--calls 50] [--max-tokens 32]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

from pydantic import BaseModel


class Person(BaseModel):
    name: str
    age: int
    city: str


TOPICS = ["rivers", "mountains", "bread", "cats", "trains", "music", "rain", "chess", "tea",
          "bridges"]
PEOPLE = ["Ana", "Bo", "Chen", "Dara", "Eli", "Femi", "Gus", "Hana", "Ivo", "Jun"]
CITIES = ["Lima", "Oslo", "Pune", "Kyiv", "Rome"]


def summary(values: list[float], scale: float = 1.0, digits: int = 4) -> dict[str, float]:
    ordered = sorted(v * scale for v in values)
    return {
        "mean": round(statistics.fmean(ordered), digits),
        "median": round(statistics.median(ordered), digits),
        "p90": round(ordered[int(0.9 * (len(ordered) - 1))], digits),
        "min": round(ordered[0], digits),
        "max": round(ordered[-1], digits),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args()

    from tracekit.llm import EmbeddedLLM, StructuredOutputError

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as cache_dir:
        llm = EmbeddedLLM(cache=cache_dir)
        start = time.perf_counter()
        llm.server.ensure_started()
        startup_s = time.perf_counter() - start

        prompts = [
            [{"role": "user", "content": f"Write one sentence about {TOPICS[i % 10]} (#{i})."}]
            for i in range(args.calls)
        ]
        latencies, speeds = [], []
        with llm.accounting.scope() as plain:
            for messages in prompts:
                llm(messages, max_tokens=args.max_tokens)
                record = llm.accounting.records[-1]
                latencies.append(record.latency_s)
                speeds.append(record.completion_tokens / record.latency_s)

        hit_latencies = []
        with llm.accounting.scope() as hits:
            for messages in prompts:
                t0 = time.perf_counter()
                llm(messages, max_tokens=args.max_tokens)
                hit_latencies.append(time.perf_counter() - t0)

        without_reask, valid, correct, structured_latency = 0, 0, 0, []
        with llm.accounting.scope() as structured:
            for i in range(args.calls):
                text = (f"{PEOPLE[i % 10]} is {20 + i} years old and lives in "
                        f"{CITIES[i % 5]}. Extract name, age and city.")
                t0 = time.perf_counter()
                with llm.accounting.scope() as one:
                    try:
                        person = llm.structured(text, Person, max_tokens=64, cache=False)
                        valid += 1
                        correct += (person.name, person.age, person.city) == (
                            PEOPLE[i % 10], 20 + i, CITIES[i % 5])
                    except StructuredOutputError:
                        pass
                structured_latency.append(time.perf_counter() - t0)
                without_reask += one.calls == 1 and one.errors == 0

    result = {
        "backend": llm.name,
        "calls": args.calls,
        "max_tokens": args.max_tokens,
        "server_startup_s": round(startup_s, 3),
        "latency_per_call_s": summary(latencies),
        "completion_tokens_per_s": summary(speeds),
        "completion_tokens_total": plain.completion_tokens,
        "prompt_tokens_total": plain.prompt_tokens,
        "cache_hit_latency_ms": summary(hit_latencies, scale=1000.0, digits=3),
        "cache_hits": hits.cache_hits,
        "structured": {
            "schema": "Person(name: str, age: int, city: str)",
            "valid_without_reask_rate": without_reask / args.calls,
            "valid_after_repair_and_reasks_rate": valid / args.calls,
            "fields_correct_rate": correct / args.calls,
            "model_calls": structured.calls,
            "latency_per_reply_s": summary(structured_latency),
        },
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
        "load_average_1m": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
