"""A runtimes survey (``bench.runtimes.measure.survey``) read back: the true float32 limit,
the int8 variants good enough to recommend, and its Markdown table."""

from __future__ import annotations

# Recommend an int8 variant only this close to float32 (the performance issue's bar).
MIN_COSINE, MIN_AGREEMENT = 0.99, 0.95


def recommended(result: dict) -> bool:
    """Whether an int8 runtime's answers are close enough to float32's to recommend it."""
    return result["cosine_mean"] >= MIN_COSINE and result["neighbour_agreement"] >= MIN_AGREEMENT


def best(run: dict, size: int | None = None, int8: bool = False) -> dict | None:
    """The fastest float32 runtime (``int8``: recommended int8 one) at batch ``size`` (None:
    any size) as ``{"texts_per_s", "runtime", "split", "batch"}``; None if there is none."""
    found = []
    for name, result in run["runtimes"].items():
        if ("int8" in name) != int8 or (int8 and not recommended(result)):
            continue
        for key, rate in result["texts_per_s"].items():
            split, batch = key.split()
            if size is None or batch == f"b{size}":
                found.append({"texts_per_s": rate, "runtime": name, "split": split,
                              "batch": int(batch[1:])})
    return max(found, key=lambda x: x["texts_per_s"], default=None)


def markdown(run: dict) -> str:
    results = run["runtimes"]
    keys = sorted({key for r in results.values() for key in r["texts_per_s"]},
                  key=lambda k: (int(k.split()[1][1:]), k))
    lines = [f"Runtimes {run['started']}, {run['cores']} cores, {run['seconds']:g} s per "
             f"measurement; short texts; texts/s by processes x threads and batch size. "
             f"Accuracy on {run['held_out']} held-out sentences of the docs against PyTorch "
             f"float32 (int8 static: calibrated on {run['calibration_sentences']} others).",
             "", "| runtime | " + " | ".join(keys)
             + " | cosine mean | cosine min | neighbours | convert s |",
             "|---" * (1 + len(keys) + 4) + "|"]
    for name, r in results.items():
        rates = [r["texts_per_s"].get(key) for key in keys]
        lines.append(f"| {name} | " + " | ".join("–" if x is None else f"{x:.0f}" for x in rates)
                     + f" | {r['cosine_mean']:.4f} | {r['cosine_min']:.4f} | "
                     f"{r['neighbour_agreement']:.1%} | {r['prepare_s']:.1f} |")
    lines.append("")
    for size in sorted({int(key.split()[1][1:]) for key in keys}):
        limit = best(run, size)
        if limit:
            lines.append(f"- **True float32 limit at batch {size}: {limit['texts_per_s']:.0f} "
                         f"texts/s** ({limit['runtime']}, {limit['split']}).")
        good = best(run, size, int8=True)
        if good:
            lines.append(f"- Best int8 within cosine >= {MIN_COSINE} and neighbours >= "
                         f"{MIN_AGREEMENT:.0%} at batch {size}: {good['texts_per_s']:.0f} "
                         f"texts/s ({good['runtime']}, {good['split']}).")
    if not any("int8" in name and recommended(r) for name, r in results.items()):
        lines.append(f"- No int8 variant reaches cosine >= {MIN_COSINE} and neighbours >= "
                     f"{MIN_AGREEMENT:.0%}: none is recommended.")
    return "\n".join(lines) + "\n"
