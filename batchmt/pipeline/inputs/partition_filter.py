"""`input.filter`: a small boolean expression over partition values, checked per file before
any data file is opened.

Grammar (keywords in any case):

    expr       := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | "(" expr ")" | test
    test       := column ("=" | "!=" | "<>" | "<" | "<=" | ">" | ">=") literal
                | column ["not"] "in" "(" literal ("," literal)* ")"
                | column "is" ["not"] "null"
    column     := name | "quoted name" | `quoted name`
    literal    := 'text' ('' inside for a quote) | number

Partition values are text (hive folders and table partitions alike), so a comparison is a
string comparison unless both sides are numbers: `part = 7` matches a partition `007`,
`part = '7'` does not; `day >= '2026-11-01'` compares ISO dates as text, which orders them.
A null partition value compares like SQL's NULL: every comparison with it is unknown, so
only `is null` (or an `or` with a true side) keeps it.

Our own parser, not pyiceberg's: Parquet jobs must not need the lakes extra, and the
semantics above are the same for every input format.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NoReturn

from batchmt.pipeline.inputs.corpus import CorpusError


class FilterError(CorpusError):
    """An `input.filter` that cannot be parsed or applied; the message names the fix."""


# Parentheses and `not`s nest at most this deep: the parser recurses once per level, and a
# machine-written filter 3,000 deep once ended in a RecursionError 3,000 lines long.
MAX_DEPTH = 100

# Three-valued logic, as SQL: None is "unknown" (a comparison with a null partition value).
Truth = bool | None

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^']|'')*')
      | (?P<number>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?(?![\w.]))
      | (?P<quoted>"[^"]+"|`[^`]+`)
      | (?P<word>[A-Za-z_][\w.-]*)
      | (?P<op><>|!=|<=|>=|=|<|>|\(|\)|,)
    )""",
    re.VERBOSE,
)
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_KEYWORDS = {"and", "or", "not", "in", "is", "null"}
_COMPARE: dict[str, Callable[[int], bool]] = {
    "=": lambda c: c == 0,
    "!=": lambda c: c != 0,
    "<>": lambda c: c != 0,
    "<": lambda c: c < 0,
    "<=": lambda c: c <= 0,
    ">": lambda c: c > 0,
    ">=": lambda c: c >= 0,
}


@dataclass(frozen=True)
class _Token:
    kind: str  # string, number, quoted, word, op, end
    text: str
    position: int


@dataclass(frozen=True)
class _Value:
    """A literal as written: its text, and its number when it is one."""

    text: str
    number: float | None


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    position = 0
    while position < len(text):
        if not text[position:].strip():
            break
        match = _TOKEN.match(text, position)
        if match is None or match.lastgroup is None:
            start = len(text) - len(text[position:].lstrip())
            raise FilterError(
                f"input.filter: cannot read {text[start : start + 12]!r} at character {start + 1}"
                " (write e.g. date >= '2026-11-01' and lang in ('de', 'fr'))"
            )
        kind = match.lastgroup
        out.append(_Token(kind, match.group(kind), match.start(kind)))
        position = match.end()
    out.append(_Token("end", "", len(text)))
    return out


class Filter:
    """A parsed filter: which columns it names, and whether a file's partition matches."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.columns: list[str] = []
        self._tokens = _tokens(text)
        self._at = 0
        self._depth = 0
        self._test = self._expr()
        if self._peek().kind != "end":
            self._fail("expected 'and', 'or' or the end")

    # -- parsing ---------------------------------------------------------------------------

    def _peek(self) -> _Token:
        return self._tokens[self._at]

    def _next(self) -> _Token:
        token = self._tokens[self._at]
        self._at += 1
        return token

    def _is(self, word: str) -> bool:
        token = self._peek()
        return token.kind in ("word", "op") and token.text.lower() == word

    def _expect(self, word: str) -> None:
        if not self._is(word):
            self._fail(f"expected {word!r}")
        self._next()

    def _fail(self, what: str) -> NoReturn:
        token = self._peek()
        found = repr(token.text) if token.kind != "end" else "the end"
        shown = self.text if len(self.text) <= 120 else self.text[:100] + "..."
        raise FilterError(
            f"input.filter {shown!r}: {what} at character {token.position + 1}, found "
            f"{found} (write e.g. date >= '2026-11-01' and lang in ('de', 'fr'))"
        )

    def _expr(self) -> Callable[[Mapping[str, str | None]], Truth]:
        parts = [self._and()]
        while self._is("or"):
            self._next()
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else _any(parts)

    def _and(self) -> Callable[[Mapping[str, str | None]], Truth]:
        parts = [self._not()]
        while self._is("and"):
            self._next()
            parts.append(self._not())
        return parts[0] if len(parts) == 1 else _all(parts)

    def _not(self) -> Callable[[Mapping[str, str | None]], Truth]:
        if self._is("not") or self._is("("):
            self._depth += 1
            if self._depth > MAX_DEPTH:
                self._fail(f"at most {MAX_DEPTH} nested parentheses or 'not's")
            try:
                return self._nested()
            finally:
                self._depth -= 1
        return self._comparison()

    def _nested(self) -> Callable[[Mapping[str, str | None]], Truth]:
        if self._is("not"):
            self._next()
            inner = self._not()
            return lambda values: None if (t := inner(values)) is None else not t
        if self._is("("):
            self._next()
            inner = self._expr()
            self._expect(")")
            return inner
        return self._comparison()

    def _column(self) -> str:
        token = self._peek()
        if token.kind == "quoted":
            self._next()
            name = token.text[1:-1]
        elif token.kind == "word" and token.text.lower() not in _KEYWORDS:
            self._next()
            name = token.text
        else:
            self._fail("expected a partition column name")
        if name not in self.columns:
            self.columns.append(name)
        return name

    def _literal(self) -> _Value:
        token = self._peek()
        if token.kind == "string":
            self._next()
            return _Value(token.text[1:-1].replace("''", "'"), None)
        if token.kind == "number":
            self._next()
            return _Value(token.text, float(token.text))
        self._fail("expected a 'quoted text' or a number")

    def _comparison(self) -> Callable[[Mapping[str, str | None]], Truth]:
        column = self._column()
        if self._is("is"):
            self._next()
            negate = self._is("not")
            if negate:
                self._next()
            self._expect("null")
            return lambda values: (values.get(column) is None) != negate
        negate = self._is("not")
        if negate:
            self._next()
        if self._is("in"):
            self._next()
            self._expect("(")
            options = [self._literal()]
            while self._is(","):
                self._next()
                options.append(self._literal())
            self._expect(")")
            return _member(column, options, negate)
        if negate:
            self._fail("expected 'in' after 'not'")
        token = self._peek()
        if token.kind != "op" or token.text not in _COMPARE:
            self._fail("expected = != <> < <= > >= in, not in, is null or is not null")
        self._next()
        check = _COMPARE[token.text]
        literal = self._literal()
        return lambda values: _compare(values.get(column), literal, check)

    # -- use --------------------------------------------------------------------------------

    def matches(self, values: Mapping[str, str | None]) -> bool:
        """True when the partition `values` (column -> text, None or absent = null) pass."""
        return self._test(values) is True


def _any(parts: list[Callable[[Mapping[str, str | None]], Truth]]) -> Callable[..., Truth]:
    def test(values: Mapping[str, str | None]) -> Truth:
        results = [p(values) for p in parts]
        return True if True in results else (None if None in results else False)

    return test


def _all(parts: list[Callable[[Mapping[str, str | None]], Truth]]) -> Callable[..., Truth]:
    def test(values: Mapping[str, str | None]) -> Truth:
        results = [p(values) for p in parts]
        return False if False in results else (None if None in results else True)

    return test


def _order(value: str, literal: _Value) -> int:
    """-1, 0 or 1: numbers when both sides are numbers, else text."""
    if literal.number is not None and _NUMBER.fullmatch(value.strip()):
        left: float | str = float(value)
        right: float | str = literal.number
    else:
        left, right = value, literal.text
    return (left > right) - (left < right)  # type: ignore[operator]


def _compare(value: str | None, literal: _Value, check: Callable[[int], bool]) -> Truth:
    return None if value is None else check(_order(value, literal))


def _member(column: str, options: list[_Value], negate: bool) -> Callable[..., Truth]:
    def test(values: Mapping[str, str | None]) -> Truth:
        value = values.get(column)
        if value is None:
            return None
        found = any(_order(value, option) == 0 for option in options)
        return found != negate

    return test


def parse_filter(text: str) -> Filter:
    """Parse `input.filter`, or raise FilterError naming where it went wrong."""
    if not text.strip():
        raise FilterError("input.filter is empty; remove the key or write a condition")
    return Filter(text)
