"""``python -m bench.generation``: streamed text generation, output tokens/s and
time-to-first-token at several client counts, for this project (continuous and static
scheduling) and ``transformers serve --continuous-batching``.

Every system runs alone on the machine and gets the same seeded requests (prompts of
16-256 tokens, max_tokens from 16/32/64/128, greedy) from the same closed-loop streaming
client, on ``POST /v1/completions`` (the project's ``POST /models/{name}`` with TGI-style
events while its OpenAI route is missing). The model is a GPT-2-small-size decoder with
random weights built into bench/.generation-models/ on first use. Results go to ``--out``
as <time>.json and <time>.md; the full run takes about 16 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench.generation import models, report, systems, workload
from bench.generation.runner import GenerationBench, Plan, machine
from bench.project import ROOT

QUICK = {"warmup": 0.5, "duration": 2.0, "drain": 10.0, "stall": 20.0, "requests": 64}


def _options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.generation", description=__doc__)
    parser.add_argument("--systems", default=",".join(systems.SYSTEMS),
                        help=f"comma-separated subset of {', '.join(systems.SYSTEMS)}")
    parser.add_argument("--concurrency", default="1,16,64", help="client counts")
    parser.add_argument("--warmup", type=float, default=10, help="seconds before each window")
    parser.add_argument("--duration", type=float, default=60, help="measured seconds per point")
    parser.add_argument("--drain", type=float, default=60, help="seconds answers still "
                        "streaming at the window's end may take before they are cut")
    parser.add_argument("--stall", type=float, default=180,
                        help="seconds a stream may stay silent before it is cut (an error)")
    parser.add_argument("--requests", type=int, default=256, help="requests in the list")
    parser.add_argument("--route", choices=("auto", *workload.ROUTES), default="auto",
                        help="the project's route: auto uses POST /v1/completions when it "
                        "answers, else POST /models/{name} (tgi)")
    parser.add_argument("--prefill-tokens", type=int, default=2048,
                        help="prompt tokens per step at most, in both continuous batchers "
                        "(the project's max_batch_prefill_tokens, transformers serve's "
                        "--cb-max-batch-tokens)")
    parser.add_argument("--max-batch-size", type=int, default=64,
                        help="the project's max_batch_size (rows decoding together)")
    parser.add_argument("--models-dir", type=Path, default=models.MODELS_DIR)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "report" / "generation")
    parser.add_argument("--quick", action="store_true", help="a smoke run in about a minute: "
                        "a 2-layer decoder, short prompts and answers, seconds per point")
    options = parser.parse_args()
    if options.quick:
        for key, value in QUICK.items():
            if parser.get_default(key) == getattr(options, key):
                setattr(options, key, value)
    return options


def main() -> None:
    """Run the benchmark the options describe, write its report and print the table.

    Raises:
        SystemExit: an option is wrong, or a system failed.
    """
    from transformers import AutoTokenizer

    options = _options()
    names = [s.strip() for s in options.systems.split(",") if s.strip()]
    if unknown := set(names) - set(systems.SYSTEMS):
        raise SystemExit(f"unknown systems: {', '.join(sorted(unknown))}")
    size = models.TINY if options.quick else models.GPT2_SMALL
    model_dir = models.ensure_decoder(size, options.models_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    shape = {"prompt_tokens": (8, 48), "max_tokens": (8, 16)} if options.quick else {}
    requests = workload.requests(tokenizer, options.requests, **shape)
    concurrency = [int(c) for c in options.concurrency.split(",") if c]
    sizing = systems.Sizing(
        max_clients=max(concurrency),
        max_request_tokens=max(r.prompt_tokens + r.max_tokens for r in requests),
        prefill_tokens=options.prefill_tokens, rows=options.max_batch_size)
    plan = Plan(names, concurrency, options.warmup, options.duration, options.drain,
                options.stall, options.route, options.out, sizing)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    host = machine()
    bench = GenerationBench(plan, model_dir, requests)
    bench.run()
    run = {
        "started": started, "machine": host,
        "model": {"dir": str(model_dir), "size": vars(size), "description":
                  f"GPT-2 decoder ({size.n_layer} layers, {size.n_embd} wide, vocabulary "
                  f"{size.vocab_size}), random weights, float32"},
        "plan": {"concurrency": concurrency, "warmup_s": plan.warmup_s,
                 "duration_s": plan.duration_s, "drain_s": plan.drain_s,
                 "stall_s": plan.stall_s, "sizing": vars(sizing)},
        "workload": workload.describe(requests), "configs": bench.configs,
        "results": bench.results, "failures": bench.failures,
    }
    run["targets"] = report.targets(bench.results)
    for path in report.write(run, options.out):
        print(path)
    print(report.markdown(run))
    if bench.failures:
        raise SystemExit("failed: " + "; ".join(f.splitlines()[0] for f in bench.failures))


if __name__ == "__main__":
    main()
