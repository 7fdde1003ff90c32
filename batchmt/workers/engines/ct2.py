"""Encoder-decoder models decoded by CTranslate2 (Marian/opus-mt, M2M100, NLLB).

CTranslate2's C++ beam search is 1.6-1.9x our Python one on CPU, but it knows no lexical
constraints. So every row is decoded free here and its glossary terms are checked; a row
that misses a term takes the best of the beam's other hypotheses that writes every term,
else its terms are placed where the free output rendered the source terms, the model
choosing the words around them and finishing the sentence (`decoding/placement.py`, #22);
only a row that cannot be placed is deferred to the engine's `constrained` collaborator: our
constrained search on the transformers model, which the loader builds at replica start when
the job has terms (workers/engines/loading.py), so the term guarantee is the same as on the
transformers path, and jobs without a glossary never load torch weights.

Engine semantics follow `Seq2SeqEngine`: the same tokenizer (so `count_tokens` agrees),
the output bound per row, the target language as forced first token, context behind the
tokenizer's separator when asked for.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import torch

from batchmt.pipeline.text.glossary import Term, check_terms
from batchmt.pipeline.text.term_checks import term_fragments
from batchmt.workers.decoding.placement import TermPlacer
from batchmt.workers.decoding.renderings import PROBE_BEAMS, TermDefaults, default_rendering_left
from batchmt.workers.engines.base import (
    Aligner,
    Alignment,
    EngineConfig,
    EngineLoadError,
    Segment,
    Translation,
    TranslationEngine,
)
from batchmt.workers.engines.conversion import compute_type, import_ctranslate2, read_meta
from batchmt.workers.engines.nllb_codes import nllb_code
from batchmt.workers.engines.seq2seq import after_last_separator, uses_context

log = structlog.get_logger(__name__)

# Headroom under the position limit for the special tokens the tokenizer adds (as seq2seq).
_SPECIAL_TOKEN_MARGIN = 2
# Rows per CTranslate2 call on CPU (see CTranslate2Engine.__init__).
_CPU_SUB_BATCH = 32
# Rows per call for the placer's one-step calls (alignment, next piece, alternatives),
# split by length. On CPU a call of two rows or more costs ~35 ms more than one of one row
# under load (thread hand-over), and a row about 1-2 ms; the longer the call, the more its
# rows pad to the longest: the override set's 417 next-piece prefixes, idle CPU, best of 7:
# 0.59 s CPU in calls of 128, 0.63 s of 256, 0.75 s of 64, 0.91 s in one call.
_PLACER_CHUNK = 128
# Tokenizers report "no limit" as a huge number; a real position limit is far below it.
_NO_LIMIT = 1_000_000
# Token ids kept from count_tokens for the decode that follows: more than a shard's worth.
_MAX_KEPT_IDS = 50_000


class CTranslate2Engine(TranslationEngine):
    """A CTranslate2 `Translator` replica; rows that miss a term go to its declared
    `constrained` engine (the transformers model of the same checkpoint)."""

    def __init__(
        self,
        config: EngineConfig,
        ct2_path: str,
        device: torch.device,
        *,
        hf_path: str | None,
        checkpoint_dtype: str | None = None,
        constrained: TranslationEngine | None = None,
    ) -> None:
        from transformers import AutoTokenizer

        ctranslate2 = import_ctranslate2()
        self.config = config
        self.device = device
        self.hf_path = hf_path
        self.ct2_path = ct2_path
        meta = read_meta(ct2_path)
        self.compute_type = compute_type(config.model, device.type, checkpoint_dtype)
        try:
            # The converted folder carries the tokenizer files; the checkpoint has them too.
            self.tokenizer: Any = AutoTokenizer.from_pretrained(hf_path or ct2_path)
        except (OSError, ValueError) as exc:
            raise EngineLoadError(
                f"no tokenizer for CTranslate2 model {config.model_name!r}: {exc}. A converted "
                "folder needs the Hugging Face tokenizer files beside model.bin (convert with "
                "ct2-transformers-converter --copy_files ...)"
            ) from exc
        try:
            self.translator = ctranslate2.Translator(
                ct2_path,
                device=device.type,
                device_index=device.index or 0,
                compute_type=self.compute_type,
                # The actor sized torch's pool to its CPU slots; CTranslate2 takes the same.
                intra_threads=torch.get_num_threads() if device.type == "cpu" else 0,
                inter_threads=1,
            )
        except (RuntimeError, ValueError) as exc:
            raise EngineLoadError(
                f"CTranslate2 could not load {config.model_name!r} ({self.compute_type} on "
                f"{device.type}): {exc}"
            ) from exc
        self.target_prefix = self._language_setup()
        self.force_eos_at_max = _forces_eos(hf_path or ct2_path)
        self.max_input_tokens = self._input_limit(meta)
        self.use_context = uses_context(config, self.tokenizer)
        self.constrained = constrained  # declared by the loader (None: no terms placed)
        self._ids: dict[str, list[int]] = {}  # token ids of counted texts (count_tokens)
        self._num_hypotheses = config.decoding.num_beams
        # The model's own renderings of each forced source term (#10): a free hypothesis that
        # writes the forced term *beside* one of them ("Vierbeiner Hund") is not accepted.
        self.term_defaults = TermDefaults(self.tokenizer, self._n_best)
        # Rows that miss a term get it placed where the free output rendered the source
        # term (placement.py), on CTranslate2; only what that cannot place is deferred to
        # the constrained search. False: every such row is deferred (the behaviour before).
        self.place_terms = True
        self.placer = TermPlacer(
            self._score_texts,
            self._continuations,
            self._source_links,
            self._piece_count,
            self._finish_texts,
            self._next_glued,
        )
        self._vocab: dict[str, int] = self.tokenizer.get_vocab()
        # What the tokenizer writes for an empty target (a language code): not the text's.
        self._empty_pieces = len(self._target_tokens([""])[0])
        self.no_repeat_ngram_size = 0  # set on a QE fallback view (fallback_engine)
        # On CPU, CTranslate2 splits the shard loop's batches (up to 64 rows, 256 beams) into
        # its own batches of 32 rows: 512 sorted test sentences, int8, 2 threads, best of 3:
        # 64-row calls 46.4 s wall, the same calls split to 32 rows 37.9 s (raw script
        # 37.8 s), at equal CPU time. On a GPU the whole batch is one call.
        self._sub_batch = _CPU_SUB_BATCH if device.type == "cpu" else 0
        self._chunk = _PLACER_CHUNK
        self.signature = {
            "model": config.model_name,
            "family": "seq2seq",
            "backend": "ctranslate2",
            "quantization": config.model.quantization,
            "dtype": self.compute_type,
            "device": device.type,
        }

    # -- setup ---------------------------------------------------------------------------------

    def _language_setup(self) -> list[str]:
        """Multilingual models: the source code set on the tokenizer, the target code as the
        forced first target token (what `forced_bos_token_id` does for generate)."""
        tok = self.tokenizer
        if not hasattr(tok, "src_lang"):
            return []  # bilingual (Marian): the direction is baked in
        src, tgt = self.config.source_lang, self.config.target_lang
        if hasattr(tok, "get_lang_id"):  # M2M100: __de__
            tok.src_lang = src
            try:
                return [str(tok.convert_ids_to_tokens(tok.get_lang_id(tgt)))]
            except KeyError:
                raise EngineLoadError(f"model does not know target language {tgt!r}") from None
        tok.src_lang = nllb_code(src)  # NLLB: deu_Latn
        code = nllb_code(tgt)
        if tok.convert_tokens_to_ids(code) in (None, tok.unk_token_id):
            raise EngineLoadError(f"model does not know target language code {code!r}")
        return [code]

    def _input_limit(self, meta: dict[str, Any]) -> int:
        positions = meta.get("max_position_embeddings")
        if positions is None and self.hf_path is not None:
            config_file = Path(self.hf_path) / "config.json"
            if config_file.is_file():
                positions = json.loads(config_file.read_text()).get("max_position_embeddings")
        positions = positions or 512
        tok_limit = getattr(self.tokenizer, "model_max_length", None) or positions
        limit = min(positions, tok_limit if tok_limit < _NO_LIMIT else positions)
        limit -= _SPECIAL_TOKEN_MARGIN
        configured = self.config.model.max_input_tokens
        return min(configured, limit) if configured else limit

    # -- the interface ---------------------------------------------------------------------------

    def count_tokens(self, texts: list[str]) -> list[int]:
        encoded = self.tokenizer(texts, add_special_tokens=True, truncation=False, verbose=False)[
            "input_ids"
        ]
        # The shard loop counts every segment before it translates it: keep the ids, so the
        # (slow, Python) Marian tokenizer runs once per segment, not twice.
        if len(self._ids) > _MAX_KEPT_IDS:
            self._ids.clear()
        self._ids.update(zip(texts, encoded))
        return [len(ids) for ids in encoded]

    def translate(self, segments: list[Segment], *, marked: bool = False) -> list[Translation]:
        """Free decoding for every row; rows that miss a glossary term go to our search."""
        return self.resolve_deferred(segments, self.translate_or_defer(segments, marked=marked))

    def translate_or_defer(
        self, segments: list[Segment], *, marked: bool = False
    ) -> list[Translation]:
        """Free decoding for every row; a row that misses a glossary term comes back
        `deferred`, for `constrain` (our search on the transformers model)."""
        if marked:
            raise ValueError("seq2seq engines do not take <sn>-marked text (translates_marked)")
        if not segments:
            return []
        # Batches with glossary terms keep the beam's other finished hypotheses too: one of
        # them often writes the term already. Measured on dev_consistent (678 rows, int8):
        # num_hypotheses=beam costs no more than 1 and leaves every best hypothesis as it
        # was, and it spares 34 of the 79 rows that miss a term from our slower search.
        with_terms = any(s.terms for s in segments)
        decoded = self._decode_free(segments, self._num_hypotheses if with_terms else 1)
        out = [row[0] for row in decoded]
        redo = []
        if with_terms:
            self.term_defaults.learn(
                s for seg in segments for s, t in seg.terms if s.casefold() != t.casefold()
            )
        for i, segment in enumerate(segments):
            if not segment.terms or self._meets_terms(out[i].text, segment):
                continue
            met = next((t for t in decoded[i] if self._meets_terms(t.text, segment)), None)
            if met is None:
                redo.append(i)
            else:
                out[i] = met
        for i in redo:
            out[i] = dataclasses.replace(out[i], deferred=True)
        # With placement on, the rows wait for `place_deferred`, which takes a whole shard's
        # deferred rows in one go.
        return out if self.place_terms else self._unsearched(segments, out)

    def place_deferred(
        self, segments: list[Segment], drafts: list[Translation]
    ) -> list[Translation]:
        """The terms of every deferred row placed in its free translation (`drafts`); the
        rows it could not place stay deferred, for the constrained search. All of a shard's
        rows in one go: each placement step is one CTranslate2 call for all of them, and a
        call of several rows costs ~35 ms more than its rows on a loaded CPU (463 override
        rows placed per batch of 64: 2.0 s CPU; at once: 1.5 s, the same texts)."""
        out = list(drafts)
        redo = [i for i, t in enumerate(out) if t.deferred]
        if redo and self.place_terms:
            self._place(segments, out, redo)
        return self._unsearched(segments, out)

    def _unsearched(self, segments: list[Segment], out: list[Translation]) -> list[Translation]:
        """`out`, where there is no constrained decoder (a converted folder without its
        checkpoint, or a job declared without terms): a deferred row keeps its free
        translation and says which terms are missing (glossary_missed), rather than
        failing its whole batch."""
        redo = [i for i, t in enumerate(out) if t.deferred]
        if not redo or self.constrained is not None:
            return out
        log.warning("glossary_terms_unmet_no_constrained_decoder", rows=len(redo))
        for i in redo:
            _, missed = check_terms(out[i].text, [Term(s, t, True) for s, t in segments[i].terms])
            out[i] = Translation(out[i].text, [t for _, t in missed], logprob=out[i].logprob)
        return out

    def constrain(self, segments: list[Segment]) -> list[Translation]:
        """The constrained search; a row whose term it could only write as a fragment
        (a sentence of its own, after a cut copy of itself) says so (`term_placement`)."""
        found = super().constrain(segments)
        for k, (segment, result) in enumerate(zip(segments, found, strict=True)):
            if term_fragments(segment.text, result.text, [t for _, t in segment.terms]):
                found[k] = dataclasses.replace(result, term_placement=True)
        return found

    def _place(self, segments: list[Segment], out: list[Translation], rows: list[int]) -> None:
        """Place the terms of `rows` in their free translations (`out`, updated); the rows
        it could not place are left as they are, for the constrained search."""
        placed = self.placer.place(
            [segments[i].text for i in rows],
            [out[i].text for i in rows],
            [segments[i].terms for i in rows],
            self.term_defaults.renderings,
            self.term_defaults.answers,
        )
        for i, found in zip(rows, placed, strict=True):
            text = found.text
            targets = [t for _, t in segments[i].terms]
            if (
                text is not None
                and self._meets_terms(text, segments[i])
                and not term_fragments(segments[i].text, text, targets)
            ):
                out[i] = Translation(text, logprob=found.logprob)

    def _meets_terms(self, text: str, segment: Segment) -> bool:
        """Every term is in `text`, and no forced term sits beside the model's own rendering
        of its source (that row must be re-decoded so the term *replaces* the rendering)."""
        if _misses_terms(text, segment):
            return False
        return not default_rendering_left(text, segment.terms, self.term_defaults.renderings)

    def _n_best(self, texts: list[str]) -> list[list[str]]:
        """Probe answers for `TermDefaults`: each source term translated alone, every
        hypothesis of the beam (CTranslate2 returns at most the beam's width)."""
        width = min(PROBE_BEAMS, max(1, self.config.decoding.num_beams))
        decoded = self._decode_free([Segment(t) for t in texts], width)
        return [[t.text for t in row] for row in decoded]

    def score(self, segments: list[Segment], translations: list[str]) -> list[float | None]:
        """Forced decoding by CTranslate2: mean log-prob per target token, EOS included (the
        forced language code too, as the transformers engine's labels have it)."""
        if not segments:
            return []
        tok = self.tokenizer
        labels = tok(text_target=translations, add_special_tokens=True, truncation=False)
        targets = []
        for ids in labels["input_ids"]:
            body = ids[:-1] if ids and ids[-1] == tok.eos_token_id else ids
            targets.append(tok.convert_ids_to_tokens(body))  # CTranslate2 adds the EOS
        results = self.translator.score_batch(
            self._source_tokens(segments), targets, max_input_length=0
        )
        return [float(sum(r.log_probs) / max(1, len(r.log_probs))) for r in results]

    # -- what the term placer asks of the model ----------------------------------------------

    def _target_tokens(self, texts: list[str]) -> list[list[str]]:
        """Target pieces of each text, without the EOS (CTranslate2 adds it when scoring)."""
        tok = self.tokenizer
        labels = tok(text_target=texts, add_special_tokens=True, truncation=False)["input_ids"]
        bodies = [ids[:-1] if ids and ids[-1] == tok.eos_token_id else ids for ids in labels]
        return [tok.convert_ids_to_tokens(ids) for ids in bodies]

    def _score_texts(self, sources: list[str], targets: list[str]) -> list[list[float]]:
        """Each target's token log-probs as a prefix (its EOS left out) given its source."""
        if not sources:
            return []
        prefix = self.target_prefix
        results = self.translator.score_batch(
            self._source_tokens([Segment(s) for s in sources]),
            [[*prefix, *t] for t in self._target_tokens(targets)],
            max_input_length=0,
            # CTranslate2 sorts the rows by source length into batches of this many: rows
            # of 32 pad less than of 128 (the placer's 562 texts of the override rows,
            # loaded CPU: 1.24 s placement against 1.38 s, the same scores).
            max_batch_size=self._sub_batch,
        )
        return [[float(p) for p in r.log_probs[:-1]] for r in results]

    def _continuations(self, sources: list[str], prefixes: list[str], k: int) -> list[list[str]]:
        """The k likeliest next words after each target prefix: the k likeliest pieces at
        the first free position, each run on greedily for two more pieces. What
        CTranslate2's `return_alternatives` returns, text for text, at 0.17 s instead of
        0.39 s for the override rows' 13 prefixes (its expansion is slow on CPU)."""
        if not sources:
            return []
        heads = [
            [*self.target_prefix, *(t if p else [])]
            for p, t in zip(prefixes, self._target_tokens(prefixes), strict=True)
        ]
        tokens = self._source_tokens([Segment(s) for s in sources])
        firsts = self._greedy(tokens, heads, 1, logits=True)
        vocabulary = self._target_vocabulary
        owners: list[int] = []
        longer: list[list[str]] = []
        for i, result in enumerate(firsts):
            # The step after the prefix's own (forced) steps; as CTranslate2's alternatives,
            # not the end of the sentence.
            scores = _host_floats(result.logits[0][len(heads[i])])
            order = (int(t) for t in np.argsort(-scores, kind="stable"))
            top = list(itertools.islice((t for t in order if t != self._eos_id), k))
            owners += [i] * len(top)
            longer += [[*heads[i], vocabulary[t]] for t in top]
        runs = self._greedy([tokens[i] for i in owners], longer, 2)
        tails = []
        for i, result in zip(owners, runs, strict=True):
            # Three pieces each, whatever the longest prefix beside it: greedy steps do
            # not depend on how many more the call allowed.
            start = len(heads[i])
            tails.append(list(result.hypotheses[0])[start : start + 3])
        found: list[list[str]] = [[] for _ in sources]
        for i, text in zip(owners, self._detokenize(tails), strict=True):
            found[i].append(text.strip())
        return found

    def _greedy(
        self,
        tokens: list[list[str]],
        heads: list[list[str]],
        steps: int,
        *,
        logits: bool = False,
        attention: bool = False,
    ) -> list[Any]:
        """CTranslate2's greedy result for each source and target prefix, at most `steps`
        pieces past the prefix (with each step's scores over the vocabulary, `logits`, or
        its cross-attention, `attention`)."""
        found: list[Any] = [None] * len(heads)
        for rows in _similar_lengths([len(h) for h in heads], self._chunk):
            results = self.translator.translate_batch(
                [tokens[i] for i in rows],
                target_prefix=[heads[i] for i in rows],
                beam_size=1,
                max_decoding_length=max(len(heads[i]) for i in rows) + steps,
                max_input_length=0,
                return_logits_vocab=logits,
                return_attention=attention,
            )
            for i, result in zip(rows, results, strict=True):
                found[i] = result
        return found

    @functools.cached_property
    def _eos_id(self) -> int:
        """The end of sentence in CTranslate2's target ids (-1: none, nothing to skip)."""
        vocabulary = self._target_vocabulary
        eos = self.tokenizer.eos_token
        return vocabulary.index(eos) if eos in vocabulary else -1

    @functools.cached_property
    def _target_vocabulary(self) -> list[str]:
        """CTranslate2's target pieces by id (its ids are not the tokenizer's: the
        converter may drop or reorder entries)."""
        for name in ("target_vocabulary", "shared_vocabulary"):
            path = Path(self.ct2_path) / f"{name}.json"
            if path.is_file():
                return list(json.loads(path.read_text(encoding="utf-8")))
            path = path.with_suffix(".txt")
            if path.is_file():
                return path.read_text(encoding="utf-8").splitlines()
        raise EngineLoadError(f"no target vocabulary in CTranslate2 folder {self.ct2_path}")

    def _finish_texts(self, sources: list[str], prefixes: list[str]) -> list[tuple[str, float]]:
        """Each prefix finished by beam search under its row's output bound."""
        if not sources:
            return []
        tokens = self._source_tokens([Segment(s) for s in sources])
        heads = [[*self.target_prefix, *t] for t in self._target_tokens(prefixes)]
        limits = [
            max(self._content_bound(len(t)), len(h) - len(self.target_prefix) + 1)
            + len(self.target_prefix)
            for t, h in zip(tokens, heads, strict=True)
        ]
        found: list[tuple[str, float]] = [("", 0.0)] * len(sources)
        # As in _decode_free: one call to the longest row's bound, and the rare row that ran
        # past its own decoded again under it, so a row's finish is its own.
        todo = [(max(limits), list(range(len(sources))))]
        while todo:
            limit, rows = todo.pop()
            results = self.translator.translate_batch(
                [tokens[i] for i in rows],
                target_prefix=[heads[i] for i in rows],
                beam_size=self.config.decoding.num_beams,
                max_decoding_length=limit,
                max_input_length=0,
                max_batch_size=self._sub_batch,
                return_scores=True,
                no_repeat_ngram_size=self.no_repeat_ngram_size,
            )
            over: dict[int, list[int]] = {}
            pieces = []
            for i, result in zip(rows, results, strict=True):
                if len(result.hypotheses[0]) > limits[i]:
                    over.setdefault(limits[i], []).append(i)
                pieces.append(list(result.hypotheses[0])[len(self.target_prefix) :])
            texts = self._detokenize(pieces)
            for i, text, result in zip(rows, texts, results, strict=True):
                found[i] = (text, float(result.scores[0]))
            todo += over.items()
        return found

    def _next_glued(self, sources: list[str], prefixes: list[str]) -> list[str]:
        """The piece the model writes after each prefix, when glued to its last word."""
        if not sources:
            return []
        heads = [[*self.target_prefix, *t] for t in self._target_tokens(prefixes)]
        results = self._greedy(self._source_tokens([Segment(s) for s in sources]), heads, 1)
        found = []
        for head, result in zip(heads, results, strict=True):
            # Greedy: the first piece after the prefix is the same however many more the
            # call allowed.
            tail = list(result.hypotheses[0])[len(head) :]
            piece = tail[0] if tail else ""
            found.append("" if piece.startswith("\u2581") else piece)
        return found

    def _source_links(self, sources: list[str], targets: list[str]) -> list[tuple[int, ...]]:
        return [a.best_target for a in self._align(sources, targets)]

    def _piece_count(self, text: str) -> int:
        """Pieces of `text` alone. A word the vocabulary holds whole is one, without a call
        to the (slow, Python) tokenizer: the placer asks about every ending of every word
        of a phrase."""
        if " " not in text and f"\u2581{text}" in self._vocab:
            return 1
        return len(self._target_tokens([text])[0]) - self._empty_pieces

    def fallback_engine(self, num_beams: int, no_repeat_ngram_size: int) -> CTranslate2Engine:
        """A view of this replica (same translator, no copy) with another search."""
        other = copy.copy(self)
        decoding = self.config.decoding.model_copy(update={"num_beams": num_beams})
        other.config = dataclasses.replace(self.config, decoding=decoding)
        other.no_repeat_ngram_size = no_repeat_ngram_size
        other._num_hypotheses = num_beams  # CTranslate2 returns at most beam_size of them
        return other

    def aligner(self) -> Aligner:
        """Word alignment from CTranslate2's cross-attention, teacher-forced on the
        translation (all heads of the last decoder layer)."""

        def run(sources: list[str], targets: list[str]) -> list[Alignment]:
            return self._align(sources, targets)

        return run

    # -- decoding --------------------------------------------------------------------------------

    def _source_tokens(self, segments: Sequence[Segment]) -> list[list[str]]:
        sources = [self._source(s) for s in segments]
        ids: list[list[int] | None] = [self._ids.get(text) for text in sources]
        missing = [i for i, row in enumerate(ids) if row is None]
        if missing:
            found = self.tokenizer(
                [sources[i] for i in missing], add_special_tokens=True, truncation=False
            )["input_ids"]
            for i, row in zip(missing, found, strict=True):
                ids[i] = row
        return [self.tokenizer.convert_ids_to_tokens(row) for row in ids if row is not None]

    def _source(self, segment: Segment) -> str:
        if self.use_context and segment.context:
            sep = f" {self.tokenizer.sep_token} "
            return sep.join([*segment.context, segment.text])
        return segment.text

    def _decode_free(
        self, segments: Sequence[Segment], hypotheses: int = 1
    ) -> list[list[Translation]]:
        """Unconstrained beam search: the `hypotheses` best translations of each segment."""
        tokens = self._source_tokens(segments)
        bounds = [self._content_bound(len(t)) for t in tokens]
        hyps = self._search(tokens, max(bounds), hypotheses)
        # One bound per call in CTranslate2, one per row here: the batch runs to the longest
        # row's bound, and the rare row that ran past its own is decoded again under it.
        # Below its bound a row's search is the same either way (a shorter budget only
        # changes the steps after it), so this is exact, not an approximation.
        over: dict[int, list[int]] = {}
        for i, (row, bound) in enumerate(zip(hyps, bounds, strict=True)):
            if any(len(hyp.tokens) > bound for hyp in row):
                over.setdefault(bound, []).append(i)
        for bound, rows in over.items():
            again = self._search([tokens[i] for i in rows], bound, hypotheses)
            for i, row in zip(rows, again, strict=True):
                hyps[i] = row
        flat = [hyp for row in hyps for hyp in row]
        texts = self._detokenize([hyp.tokens for hyp in flat])
        found = [Translation(t, logprob=h.score) for t, h in zip(texts, flat, strict=True)]
        return [found[k : k + hypotheses] for k in range(0, len(found), hypotheses)]

    def _content_bound(self, source_tokens: int) -> int:
        """Tokens of text a row may produce. `output_bound` counts every decoding step as our
        search does: the forced language code, and the EOS forced at the limit (Marian)."""
        steps = self.config.output_bound(source_tokens)
        return max(1, steps - len(self.target_prefix) - int(self.force_eos_at_max))

    def _search(self, tokens: list[list[str]], bound: int, hypotheses: int) -> list[list[_Hyp]]:
        """Beam search; per row, `hypotheses` token lists (no forced prefix, no EOS)."""
        prefix = self.target_prefix
        results = self.translator.translate_batch(
            tokens,
            target_prefix=[prefix] * len(tokens) if prefix else None,
            beam_size=self.config.decoding.num_beams,
            num_hypotheses=hypotheses,
            # CTranslate2 counts the forced prefix in the decoding length, not the EOS.
            max_decoding_length=bound + len(prefix),
            max_input_length=0,  # rows are split to max_input_tokens before they get here
            max_batch_size=self._sub_batch,
            # Length-normalised log-prob (length penalty 1), what our search reports too:
            # the row-level QE reads it as the model's confidence.
            return_scores=True,
            no_repeat_ngram_size=self.no_repeat_ngram_size,
        )
        rows = []
        for result in results:
            found = [
                _Hyp(list(h)[len(prefix) :], float(score))
                for h, score in zip(result.hypotheses, result.scores, strict=True)
            ][:hypotheses]
            # Fewer finished hypotheses than asked (a short beam): repeat the best one.
            rows.append(found + [found[0]] * (hypotheses - len(found)))
        return rows

    def _detokenize(self, hyps: list[list[str]]) -> list[str]:
        ids = [self.tokenizer.convert_tokens_to_ids(h) for h in hyps]
        if not self.use_context:
            return [t.strip() for t in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]
        # As on the transformers path: keep what follows the last separator.
        raw = self.tokenizer.batch_decode(ids, skip_special_tokens=False)
        return after_last_separator(self.tokenizer, raw)

    # -- alignment ---------------------------------------------------------------------------------

    def _align(self, sources: list[str], targets: list[str]) -> list[Alignment]:
        # The folding of piece attention into word links is the transformers aligner's own.
        from batchmt.workers.engines.alignment import _links, _word_matrix

        if len(sources) != len(targets):
            raise ValueError(f"align got {len(sources)} sources and {len(targets)} targets")
        if not sources:
            return []
        tok = self.tokenizer
        src_ids = tok(sources, add_special_tokens=True, truncation=False)["input_ids"]
        tgt_ids = tok(text_target=targets, add_special_tokens=True, truncation=False)["input_ids"]
        prefixes = []
        for ids in tgt_ids:
            # Teacher forcing: the translation (without its EOS) is the forced prefix; the
            # attention row of each prefix token is the one that produced it.
            body = ids[:-1] if ids and ids[-1] == tok.eos_token_id else ids
            prefixes.append(tok.convert_ids_to_tokens(body))
        # Greedy calls group rows of similar length: few decode on past their own
        # translation (the attention of the forced steps does not depend on the steps after).
        sources_tokens = [tok.convert_ids_to_tokens(ids) for ids in src_ids]
        results = self._greedy(sources_tokens, prefixes, 1, attention=True)
        found = []
        for k, result in enumerate(results):
            attention = torch.tensor(result.attention[0], dtype=torch.float32)
            rows = len(tgt_ids[k])
            if attention.shape[0] < rows:  # stopped early: pad with the last row
                pad = attention[-1:].expand(rows - attention.shape[0], -1)
                attention = torch.cat([attention, pad])
            n_src, n_tgt = len(sources[k].split()), len(targets[k].split())
            if n_src == 0 or n_tgt == 0:
                found.append(Alignment((0,) * n_tgt, (0,) * n_src))
                continue
            matrix = _word_matrix(attention[:rows], tok, src_ids[k], tgt_ids[k], n_src, n_tgt)
            found.append(_links(matrix))
        return found


def _host_floats(view: Any) -> np.ndarray:
    """A CTranslate2 StorageView (any device, any float type) as float32 numbers here."""
    ct2 = import_ctranslate2()
    if view.device != "cpu":
        view = view.to_device(ct2.Device.cpu)
    if view.dtype != ct2.DataType.float32:
        view = view.to(ct2.DataType.float32)
    return np.asarray(view)


def _similar_lengths(lengths: Sequence[int], size: int) -> list[list[int]]:
    """Row indices sorted by length, in runs of at most `size`: CTranslate2 takes one
    decoding length per call, so a run's shorter rows decode only a few steps past theirs."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    return [order[k : k + size] for k in range(0, len(order), size)]


@dataclass
class _Hyp:
    tokens: list[str]
    score: float


def _forces_eos(path: str) -> bool:
    """Whether generate forces EOS at the length limit (Marian's forced_eos_token_id)."""
    from transformers import GenerationConfig

    try:
        return GenerationConfig.from_pretrained(path).forced_eos_token_id is not None
    except (OSError, ValueError):
        return False


def _misses_terms(text: str, segment: Segment) -> bool:
    """Case-sensitive on purpose: the segment no longer says which terms ignore case, and the
    exact form is what the constrained search would write (so a re-decode never loses)."""
    _, missed = check_terms(text, [Term(s, t, True) for s, t in segment.terms])
    return bool(missed)
