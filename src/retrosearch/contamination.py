"""Benchmark contamination: which training problems are benchmark problems, by n-gram overlap.

Texts are compared as tokens of normalized text: Unicode NFKC, lower case, LaTeX spacing and sizing commands,
dollar signs and braces dropped, thousands separators joined; a token is a word, a number, a LaTeX command or one
other character, so spaces never matter. A row matches a benchmark problem when

1. they share an n-gram of tokens (8 by default, as open-r1's decontamination; a problem shorter than n tokens
   counts whole);
2. the n-grams they share cover at least half of the problem's tokens (`min_coverage`), so that a stock phrase
   ("? express your answer as a common fraction") is not a match, while the problem inside a longer row is; and
3. the problem's mathematics, its numbers, commands and symbols in order, appears unbroken among the row's, so
   that problems worded alike that differ in a number or an operation (templated problems such as the organism's,
   or a benchmark problem rewritten with other numbers) are kept apart: they are other problems.

`min_coverage=0` and `math_check=False` leave the first rule alone: open-r1's.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

DEFAULT_NGRAM = 8
SPACING = re.compile(
    r"\\(?:left|right|big+[lr]?|displaystyle|textstyle|q?quad|mathrm|mathbf|text(?:bf|it|rm)?)(?![a-z])|\\[,;:! ]|~"
)
GROUPING = re.compile(r"[${}]")
LATEX_COMMA = "{,}"  # 1{,}000: LaTeX's thousands separator
SAME_COMMAND = {r"\dfrac": r"\frac", r"\tfrac": r"\frac", r"\le": r"\leq", r"\ge": r"\geq", r"\cdot": "*"}
THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
TOKEN = re.compile(r"\d+(?:\.\d+)?|\\[a-z]+|[^\W\d_]+|\S")
NOT_MATH = frozenset(".,;:?!'\"`")  # sentence punctuation: its spelling varies where the mathematics does not


def tokens(text: str) -> list[str]:
    """The tokens texts are compared by (see the module's help)."""
    normalized = unicodedata.normalize("NFKC", text).lower().replace(LATEX_COMMA, ",")
    normalized = THOUSANDS.sub("", GROUPING.sub(" ", SPACING.sub(" ", normalized)))
    return [SAME_COMMAND.get(token, token) for token in TOKEN.findall(normalized)]


def is_math(token: str) -> bool:
    """Numbers, LaTeX commands and symbols; not words, nor sentence punctuation."""
    return not token.isalpha() and token not in NOT_MATH


def contains(sequence: tuple[str, ...], part: tuple[str, ...]) -> bool:
    """Whether `part` occurs unbroken in `sequence`."""
    if not part:
        return True
    first, width = part[0], len(part)
    return any(
        sequence[start : start + width] == part
        for start in range(len(sequence) - width + 1)
        if sequence[start] == first
    )


DEFAULT_MIN_COVERAGE = 0.5


def check_min_coverage(value: float) -> None:
    if not 0 <= value <= 1:
        raise ValueError(f"--min-coverage must be between 0 and 1 (got {value})")


@dataclass(frozen=True)
class BenchmarkProblem:
    benchmark: str
    id: str
    length: int  # tokens
    grams: tuple[tuple[str, ...], ...]  # its n-grams in order (the whole problem when shorter than n)
    math: tuple[str, ...]

    def coverage(self, shared: set[tuple[str, ...]]) -> float:
        """The share of this problem's tokens inside its n-grams that are among `shared`."""
        covered = reach = 0
        for start, gram in enumerate(self.grams):
            if gram in shared:
                end = start + len(gram)
                covered += end - max(start, reach)
                reach = end
        return covered / self.length


@dataclass(frozen=True)
class Match:
    benchmark: str
    problem_id: str
    ngram: str  # the first shared n-gram, as its tokens joined by spaces

    def as_dict(self) -> dict[str, str]:
        return {"benchmark": self.benchmark, "problem_id": self.problem_id, "ngram": self.ngram}


class ContaminationIndex:
    """The n-grams of benchmark problems, looked up for each row in time linear in the row's length."""

    def __init__(
        self, n: int = DEFAULT_NGRAM, min_coverage: float = DEFAULT_MIN_COVERAGE, math_check: bool = True
    ) -> None:
        if n < 1:
            raise ValueError(f"--ngram must be at least 1 (got {n})")
        check_min_coverage(min_coverage)
        self.n = n
        self.min_coverage = min_coverage
        self.math_check = math_check
        self.problems: list[BenchmarkProblem] = []
        self._problems_by_ngram: dict[tuple[str, ...], list[int]] = defaultdict(list)
        self._short_lengths: set[int] = set()  # problems shorter than n are looked up whole, at their own length

    def add(self, benchmark: str, problem_id: str, text: str) -> None:
        words = tuple(tokens(text))
        if not words:
            return
        index = len(self.problems)
        width = min(self.n, len(words))
        if width < self.n:
            self._short_lengths.add(width)
        grams = tuple(words[start : start + width] for start in range(len(words) - width + 1))
        self.problems.append(
            BenchmarkProblem(benchmark, problem_id, len(words), grams, tuple(t for t in words if is_math(t)))
        )
        for gram in dict.fromkeys(grams):
            self._problems_by_ngram[gram].append(index)

    def matches(self, text: str) -> list[Match]:
        """The benchmark problems `text` matches, each once, in the order they were added."""
        words = tuple(tokens(text))
        first_gram: dict[int, tuple[str, ...]] = {}
        for width in (self.n, *sorted(self._short_lengths)):
            for start in range(len(words) - width + 1):
                gram = words[start : start + width]
                for index in self._problems_by_ngram.get(gram, ()):
                    first_gram.setdefault(index, gram)
        if not first_gram:
            return []
        grams = {words[start : start + self.n] for start in range(len(words) - self.n + 1)}
        math = tuple(t for t in words if is_math(t))
        found = []
        for index, gram in sorted(first_gram.items()):
            problem = self.problems[index]
            if problem.length >= self.n and problem.coverage(grams) < self.min_coverage:
                continue
            if self.math_check and not contains(math, problem.math):
                continue
            found.append(Match(problem.benchmark, problem.id, " ".join(gram)))
        return found

    def ngram_count(self) -> int:
        return len(self._problems_by_ngram)


def build_index(
    problems: Iterable[tuple[str, str, str]],
    n: int = DEFAULT_NGRAM,
    min_coverage: float = DEFAULT_MIN_COVERAGE,
    math_check: bool = True,
) -> ContaminationIndex:
    """An index of (benchmark, problem id, problem text) triples."""
    index = ContaminationIndex(n, min_coverage, math_check)
    for benchmark, problem_id, text in problems:
        index.add(benchmark, problem_id, text)
    return index
