"""Answer extraction: the comparable answer inside a model's free text.

Cross-agent agreement compares what several agents answered, and a benchmark compares an
answer with the gold one; both need the *answer* out of a reply that also holds reasoning.
Each extractor follows a benchmark's own published evaluation code, so that a score here is
the score that benchmark publishes:

- ``json_number`` (GSM8K as ZeroEval scores it): the ``answer`` field of the first complete
  JSON object in the reply (parsed with newlines removed); failing that, a loose
  ``"answer": ...`` pattern; failing that, a LaTeX ``\\boxed{...}`` (ZeroEval applies this
  last fallback to Llama-3.1 replies only; applied to all 19 recorded models it changes no
  score). ``$`` and ``,`` are dropped, a fraction is evaluated, and the first number is the
  answer, compared as a number.
- ``choice`` (MMLU-Pro as its ``compute_accuracy.py`` scores it): ``answer is (X)``, else
  the last ``Answer: X``, else the last letter A-J in the text.
- ``math_number`` (MATH level 5 as ZeroEval's ``math_eval.py`` scores it): the ``answer``
  field as for ``json_number``; ``$`` and ``,`` dropped,
  an answer holding ``/`` evaluated as arithmetic where it is arithmetic, and the first
  number kept (``\\frac{3}{4}`` is ``3``, as ZeroEval compares it), compared as a number.
- ``crux_literal`` (CRUXEval as ZeroEval's ``crux_eval.py`` scores it): the ``answer``
  field as for ``json_number``, quotes stripped from both ends and newlines written ``\\n``;
  compared as an exact string with the gold literal, its quotes stripped too.
- ``json_answer``: the ``answer`` field as for ``json_number``, quotes stripped from both
  ends and whitespace collapsed: what any of these tasks answered, compared as text (for a
  network that does not know which task a request is).
- ``last_number``: the last number in the text.
- ``text``: the whole text, whitespace collapsed and lower-cased.

An extractor returns ``None`` when the reply holds no answer; such a reply agrees with
nobody and is scored wrong.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from fractions import Fraction

Extractor = Callable[[str], str | None]

_NUMBER = re.compile(r"-?\d+(\.\d+)?")
_ANY_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_BOXED = re.compile(r"\\boxed{([\w\d]+)}")
_FRACTION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*/\s*(-?\d+(?:\.\d+)?)\s*$")
_QUOTED = {
    key: (
        re.compile(rf'"{key}"\s*:\s*"([^"]*?)"'),
        re.compile(rf'"{key}"\s*:\s*"(.*?)"', re.DOTALL),
        re.compile(rf'"{key}"\s*:\s*([^,\s]*)'),
        re.compile(rf"{key}\s*:\s*([^,\s]*)"),
    )
    for key in ("answer",)
}
_ANSWER_IS = re.compile(r"answer is \(?([A-J])\)?")
_ANSWER_COLON = re.compile(r".*[aA]nswer:\s*([A-J])")
_LAST_LETTER = re.compile(r"[A-J](?=[^A-J]*$)")


def first_json_object(text: str) -> dict[str, object] | None:
    """The first complete top-level ``{...}`` in ``text``, parsed with its newlines removed
    (as ZeroEval does); None when there is none or it is not valid JSON."""
    depth = 0
    start = 0
    for i, char in enumerate(text):
        if char == "{":
            if depth == 0:
                start = i
            depth += 1
        elif char == "}" and depth:
            depth -= 1
            if depth == 0:
                try:
                    value = json.loads(text[start : i + 1].replace("\n", ""))
                except (json.JSONDecodeError, RecursionError):
                    return None
                return value if isinstance(value, dict) else None
    return None


def json_answer_field(text: str) -> str | None:
    """The raw ``answer`` of a reply asked to answer as ``{"reasoning": ..., "answer": ...}``."""
    found = first_json_object(text)
    if found is not None and "answer" in found:
        return str(found["answer"])
    quoted, dotall, bare, keyless = _QUOTED["answer"]
    match = quoted.search(text) or dotall.search(text) or bare.search(text)
    if match is None:
        match = keyless.search(text)
    if match is not None:
        return match.group(1)
    if "boxed" in text:
        boxed = _BOXED.search(text)
        if boxed is not None:
            return boxed.group(1)
    return None


def canonical_number(raw: str) -> str | None:
    """The first number of an answer string, as a canonical decimal string (``"18"`` for
    ``"$18.00"``); fractions such as ``3/4`` are evaluated first. None without a number."""
    text = raw.replace("$", "").strip().replace(",", "")
    fraction = _FRACTION.match(text)
    if fraction is not None and float(fraction.group(2)) != 0:
        text = str(float(Fraction(fraction.group(1)) / Fraction(fraction.group(2))))
    match = _NUMBER.search(text)
    if match is None:
        return None
    value = float(match.group())
    return str(int(value)) if value.is_integer() else repr(value)


def json_number(text: str) -> str | None:
    """GSM8K as ZeroEval scores it (see the module docstring)."""
    raw = json_answer_field(text)
    return None if raw is None else canonical_number(raw)


def _arithmetic(text: str) -> float | None:
    """An arithmetic expression's value (numbers, + - * / ** %, parentheses), else None."""
    import ast

    def walk(node: ast.AST) -> float:
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return float(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            value = walk(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.BinOp) and isinstance(
            node.op, ast.Add | ast.Sub | ast.Mult | ast.Div | ast.FloorDiv | ast.Mod | ast.Pow
        ):
            left, right = walk(node.left), walk(node.right)
            if isinstance(node.op, ast.Pow) and (abs(right) > 64 or abs(left) > 10**6):
                raise ValueError("power too large")
            ops = {ast.Add: float.__add__, ast.Sub: float.__sub__, ast.Mult: float.__mul__,
                   ast.Div: float.__truediv__, ast.FloorDiv: float.__floordiv__,
                   ast.Mod: float.__mod__, ast.Pow: float.__pow__}  # fmt: skip
            result = ops[type(node.op)](left, right)
            if not isinstance(result, float):
                raise ValueError("not a real number")
            return result
        raise ValueError("not arithmetic")

    try:
        return walk(ast.parse(text, mode="eval").body)
    except (SyntaxError, ValueError, TypeError, ZeroDivisionError, OverflowError, RecursionError):
        return None


def math_answer_number(raw: str) -> str | None:
    """ZeroEval's ``sanitize_math_answers`` then its first number, canonical; None without."""
    text = raw.replace("$", "").strip().replace(",", "")
    if "/" in text:
        value = _arithmetic(text)
        if value is not None:
            text = str(value)
    match = _NUMBER.search(text)
    if match is None:
        return None
    number = float(match.group())
    return str(int(number)) if number.is_integer() else repr(number)


def math_number(text: str) -> str | None:
    """MATH level 5 as ZeroEval scores it (see the module docstring)."""
    raw = json_answer_field(text)
    return None if raw is None else math_answer_number(raw)


def crux_literal(text: str) -> str | None:
    """CRUXEval as ZeroEval scores it (see the module docstring)."""
    raw = json_answer_field(text)
    return None if raw is None else crux_gold(raw).replace("\n", "\\n")


def json_answer(text: str) -> str | None:
    """The raw JSON ``answer`` as text (see the module docstring)."""
    raw = json_answer_field(text)
    return None if raw is None else " ".join(raw.strip().strip("'\"").split())


def crux_gold(literal: str) -> str:
    """A gold CRUXEval literal as ZeroEval compares it: quotes stripped from both ends."""
    return literal.strip("'\"")


def choice(text: str) -> str | None:
    """MMLU-Pro as its published ``compute_accuracy.py`` scores it: a letter A-J."""
    for pattern in (_ANSWER_IS, _ANSWER_COLON):
        match = pattern.search(text)
        if match is not None:
            return match.group(1)
    match = _LAST_LETTER.search(text)
    return match.group(0) if match else None


def last_number(text: str) -> str | None:
    """The last number in the text, canonical (``1,000.0`` -> ``1000``)."""
    found = _ANY_NUMBER.findall(text)
    return canonical_number(found[-1]) if found else None


def plain_text(text: str) -> str | None:
    """The whole text, whitespace collapsed and lower-cased; None when empty."""
    flat = " ".join(text.split()).lower()
    return flat or None


EXTRACTORS: dict[str, Extractor] = {
    "json_number": json_number,
    "choice": choice,
    "last_number": last_number,
    "math_number": math_number,
    "json_answer": json_answer,
    "crux_literal": crux_literal,
    "text": plain_text,
}
"""By name, as networks (``routing.agreement.<capability>.answer``) and benchmarks name them."""


def extractor(name: str) -> Extractor:
    """The extractor called ``name``; a ValueError naming the known ones otherwise."""
    try:
        return EXTRACTORS[name]
    except KeyError:
        raise ValueError(
            f"unknown answer extractor {name!r}; known: {', '.join(sorted(EXTRACTORS))}"
        ) from None


__all__ = [
    "EXTRACTORS",
    "Extractor",
    "canonical_number",
    "choice",
    "crux_gold",
    "crux_literal",
    "extractor",
    "first_json_object",
    "json_answer",
    "json_answer_field",
    "json_number",
    "last_number",
    "math_answer_number",
    "math_number",
    "plain_text",
]
