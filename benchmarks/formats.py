"""Format anchoring on the formats dev set: integrity, BLEU and time against plain text.

plain:   `translate_texts` over `plain_source` (the same sentences without any markup).
remove:  prepare_formats -> translate units -> align -> restore (verbatim spans taken out of
         the text and re-inserted by alignment, as jobs do).
BLEU is over the output with every tag and protected span stripped, against `reference`.

    python -m benchmarks.formats --limit 200 --threads 2
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import sacrebleu
import torch

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "formats" / "dev_formats.jsonl"
# An independent check of the guarantee (not the lexer under test): tags by a plain regex,
# protected spans by the patterns the data set uses.
_TAG = re.compile(r"<[^<>]+>")
_SPAN = re.compile(
    r"https?://\S+?(?=\s|$)|`[^`]+`|\{\{\w+\}\}|\{\w+\}|\$\{\w+\}|%\(\w+\)\w|%s|\[\[\w+\]\]"
    r"|\d[\d,.]*\d|\*\*"
)


def intact(source: str, output: str) -> bool:
    """Every tag and span of the source in the output, as many times, tags well-nested."""
    src_tags, out_tags = Counter(_TAG.findall(source)), Counter(_TAG.findall(output))
    if src_tags != out_tags:
        return False
    stack: list[str] = []
    for tag in _TAG.findall(output):
        name = re.match(r"</?([\w-]+)", tag)
        if name is None or tag.endswith("/>") or tag.startswith("<!"):
            continue
        if tag.startswith("</"):
            if not stack or stack.pop() != name.group(1):
                return False
        else:
            stack.append(name.group(1))
    spans = Counter(_SPAN.findall(_TAG.sub(" ", source)))
    return not stack and all(output.count(s) >= n for s, n in spans.items())


def stripped(output: str, html: bool, markdown: bool) -> str:
    from batchmt.workers.formats.markup import lex

    text = "".join(t.raw for t in lex(output, html=html, markdown=markdown) if t.kind == "text")
    return re.sub(r"\s+", " ", text.replace("&amp;", "&")).strip()


def engine_for(model_dir: str) -> tuple[object, Callable[[list[str]], list[str]]]:
    from benchmarks.common import demo_engine

    return demo_engine(model_dir, terms=True)


def formatted(
    rows: list[dict[str, str]],
    run: Callable[[list[str]], list[str]],
    aligner: Callable[[list[str], list[str]], list[object]] | None,
) -> tuple[list[str], list[str], list[str]]:
    from batchmt.workers.formats.plan import prepare_formats
    from batchmt.workers.formats.restore import restore_many

    plans = [prepare_formats(r["source"], "auto") for r in rows]
    flat = [u for p in plans for u in p.units]
    outs = run(flat)
    per_row, k = [], 0
    for p in plans:
        per_row.append(outs[k : k + len(p.units)])
        k += len(p.units)
    results = restore_many(plans, per_row, aligner, run)  # type: ignore[arg-type]
    bleu_text = [stripped(r.text, p.html, p.markdown) for p, r in zip(plans, results)]
    return [r.text for r in results], [r.status for r in results], bleu_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(REPO / "models" / "demo-en-de"))
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--limit", type=int, default=0, help="first N rows (0: all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--show", type=int, default=0, help="print N example rows")
    parser.add_argument("--repeat", type=int, default=1, help="alternating timing rounds")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [json.loads(line) for line in Path(args.data).read_text(encoding="utf-8").splitlines()]
    rows = rows[: args.limit] if args.limit else rows
    refs = [r["reference"] for r in rows]

    engine, run = engine_for(args.model)
    run([r["plain_source"] for r in rows[:8]])  # warm-up
    # On the CTranslate2 path markup is placed by CTranslate2's own attention; the
    # transformers aligner (the constrained decoder, when the engine declares one) is raced
    # beside it.
    aligners = {"remove+align": engine.aligner()}  # type: ignore[attr-defined]
    constrained = engine.constrained  # type: ignore[attr-defined]
    if constrained is not None and constrained.aligner() is not None:
        aligners["remove+align, hf aligner"] = constrained.aligner()
    variants = list(aligners)
    # The machine is shared: wall time, best of --repeat alternating runs.
    best: dict[str, float] = {}
    outputs: dict[str, tuple[list[str], list[str], list[str]]] = {}
    for _ in range(args.repeat):
        start = time.perf_counter()
        plain = run([r["plain_source"] for r in rows])
        best["plain"] = min(best.get("plain", 1e9), time.perf_counter() - start)
        for name in variants:
            start = time.perf_counter()
            outputs[name] = formatted(rows, run, aligners[name])
            best[name] = min(best.get(name, 1e9), time.perf_counter() - start)
    base = best["plain"]
    table = [("plain_source", sacrebleu.corpus_bleu(plain, [refs]).score, base, 1.0, "", 1.0)]
    for name in variants:
        texts, statuses, bleu_text = outputs[name]
        share = sum(intact(r["source"], t) for r, t in zip(rows, texts)) / len(rows)
        counts = Counter(statuses)
        mix = " ".join(f"{k}={counts[k] / len(rows):.1%}" for k in sorted(counts))
        score = sacrebleu.corpus_bleu(bleu_text, [refs]).score
        table.append((name, score, best[name], best[name] / base, mix, share))
        if args.show and name.startswith("remove"):
            for r, t, s in list(zip(rows, texts, statuses))[: args.show]:
                print(f"{s}: {r['source']}\n  -> {t}")
    print(f"\n{len(rows)} rows, {args.threads} threads, beam 4, {Path(args.model).name}")
    print(f"{'variant':24} {'BLEU':>6} {'wall s':>7} {'x plain':>8} {'intact':>7}  statuses")
    for name, score, took, ratio, mix, share in table:
        print(f"{name:24} {score:6.2f} {took:7.1f} {ratio:8.2f} {share:7.1%}  {mix}")


if __name__ == "__main__":
    main()
