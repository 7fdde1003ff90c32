"""HY-MT1.5's official prompt templates, and cleaning what the model answers.

The templates are verbatim from the HY-MT1.5 model card (see shared/HY-MT-PROMPTS.md): the
model was fine-tuned on exactly these strings, so a changed comma is a changed model input.
Each prompt becomes the one user turn of the tokenizer's chat template (no system prompt).

Which template a segment gets:
- terms present  -> terminology (the only template that names required terms; the decoder
                    enforces them as well, so dropping the context there costs fluency at
                    worst, while the glossary is the user's hard requirement);
- context present -> contextual;
- otherwise       -> plain: ZH<=>XX (in Chinese) when Chinese is on either side,
                    XX<=>XX (in English) when it is not.
The official templates never combine terms and context, so neither do we.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from batchmt.pipeline.text.glossary import term_variants
from batchmt.workers.engines.base import Segment
from batchmt.workers.engines.hymt.languages import is_chinese, language_names

ZH_XX = (
    "将以下文本翻译为{target_language}，注意只需要输出翻译后的结果，不要额外解释：\n\n{source_text}"
)
XX_XX = (
    "Translate the following segment into {target_language}, without additional explanation."
    "\n\n{source_text}"
)
TERMINOLOGY = (
    "参考下面的翻译：\n{terms}\n\n"
    "将以下文本翻译为{target_language}，注意只需要输出翻译后的结果，不要额外解释：\n{source_text}"
)
# One line per term. The official template shows a single "X 翻译成 Y" line; several
# terms get one such line each, in the order they were matched.
TERM_LINE = "{source_term} 翻译成 {target_term}"
CONTEXTUAL = (
    "{context}\n参考上面的信息，把下面的文本翻译成{target_language}，"
    "注意不需要翻译上文，也不要额外解释：\n{source_text}\n"
)
# The official text names Chinese (中文) as the target; the target's Chinese name takes its
# place, as in the other Chinese templates.
FORMATTED = (
    "将以下<source></source>之间的文本翻译为{target_language}，注意只需要输出翻译后的结果，"
    "不要额外解释，原文中的<sn></sn>标签表示标签内文本包含格式信息，"
    "需要在译文中相应的位置尽量保留该标签。输出格式为：<target>str</target>"
    "\n\n<source>{src_text_with_format}</source>"
)


class PromptBuilder:
    """Builds the user message for one translation direction."""

    def __init__(self, source_lang: str, target_lang: str) -> None:
        names = language_names(target_lang)  # raises on a code HY-MT does not know
        language_names(source_lang)
        self.chinese_side = is_chinese(source_lang) or is_chinese(target_lang)
        self.target_zh = names.chinese
        self.target_en = names.english

    def plain(self, text: str) -> str:
        if self.chinese_side:
            return ZH_XX.format(target_language=self.target_zh, source_text=text)
        return XX_XX.format(target_language=self.target_en, source_text=text)

    def terminology(self, text: str, terms: Sequence[tuple[str, str]]) -> str:
        # A target listing variants ("Herr|Herrn") is shown in its base form: the model
        # inflects it, and the constraint accepts every listed form.
        lines = "\n".join(
            TERM_LINE.format(source_term=s, target_term=term_variants(t)[0]) for s, t in terms
        )
        return TERMINOLOGY.format(terms=lines, target_language=self.target_zh, source_text=text)

    def contextual(self, text: str, context: Sequence[str]) -> str:
        return CONTEXTUAL.format(
            context="\n".join(context), target_language=self.target_zh, source_text=text
        )

    def formatted(self, text_with_sn: str) -> str:
        return FORMATTED.format(target_language=self.target_zh, src_text_with_format=text_with_sn)

    def for_segment(self, segment: Segment) -> str:
        if segment.terms:
            return self.terminology(segment.text, _unique(segment.terms))
        if segment.context:
            return self.contextual(segment.text, segment.context)
        return self.plain(segment.text)


def _unique(terms: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """A term matched twice in one text is one instruction, not two."""
    return list(dict.fromkeys(terms))


_TARGET = re.compile(r"<target>(.*?)(?:</target>|$)", re.DOTALL)


def strip_target(text: str) -> str:
    """The answer inside <target></target> (the formatted template asks for it; the model
    sometimes wraps plain answers too); stray halves of the wrapper are dropped."""
    match = _TARGET.search(text)
    if match:
        text = match.group(1)
    return text.replace("<target>", "").replace("</target>", "")


def strip_echoed_context(text: str, context: Sequence[str]) -> str:
    """Drop context the model repeated before its translation: the contextual template asks
    it not to, but a small model sometimes does, and context must never reach the output."""
    if not context:
        return text
    stripped = text.lstrip()
    joined = "\n".join(context)
    rest = stripped[len(joined) :]
    # Only a whole echo followed by more text: an answer equal to a context line ("OK.")
    # may be the real translation.
    if joined and stripped.startswith(joined) and rest[:1].isspace() and rest.strip():
        return rest.lstrip()
    lines = stripped.split("\n")
    wanted = {c.strip() for c in context if c.strip()}
    kept = 0
    while kept < len(lines) - 1 and lines[kept].strip() in wanted:
        kept += 1
    return "\n".join(lines[kept:]).lstrip() if kept else text
