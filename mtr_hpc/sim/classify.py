"""Task classification for the ToolMaker: what kind of question is this, and how many hops?

Three sources, in the order `classifier="dataset"` tries them: the benchmark's own annotation (HotpotQA
bridge/comparison, 2Wiki's four types, MuSiQue's hop count), then surface rules (comparison cues such as
"which ... first", "both", "same"; yes/no questions start with an auxiliary verb). `classifier="llm"`
asks a model under a JSON schema and falls back to the rules on any failure.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from ..data.example import QAExample

KINDS = ("comparison", "bridge", "compositional", "inference", "bridge_comparison")

_YESNO_RE = re.compile(r"^\s*(is|are|was|were|do|does|did|can|could|has|have|had|will|would|should)\b", re.I)
_COMPARE_RE = re.compile(
    r"\b(first|earlier|earliest|older|oldest|younger|youngest|later|latest|last|more|fewer|less|longer|"
    r"shorter|larger|smaller|bigger|higher|lower|taller|both|same|different|either)\b",
    re.I,
)
_CHOICE_RE = re.compile(r"^\s*(which|who|what|whose)\b.*\bor\b", re.I)
_HOPS_RE = re.compile(r"^(\d)hop")


@dataclass(frozen=True)
class TaskType:
    kind: str
    yes_no: bool
    hops: int
    source: str


def is_yes_no(question: str, answers: list[str] | None = None) -> bool:
    if answers:
        return answers[0].strip().lower() in ("yes", "no")
    # "Was X or Y born first?" starts like a yes/no question but asks for a choice.
    return bool(_YESNO_RE.match(question)) and not re.search(r"\bor\b", question)


def _hops(example: QAExample) -> int:
    ev = example.evidence or {}
    m = _HOPS_RE.match(example.qtype or "")
    if m:
        return int(m.group(1))
    for key in ("decomposition", "triples"):
        if ev.get(key):
            return len(ev[key])
    return 2


def classify_rules(example: QAExample) -> TaskType:
    q = example.question
    yes_no = is_yes_no(q, example.answers)
    choice = _CHOICE_RE.match(q) or re.search(r"\b(or|and)\b", q)
    comparison = yes_no or bool(_COMPARE_RE.search(q) and choice)
    return TaskType("comparison" if comparison else "bridge", yes_no, _hops(example), "rules")


def classify_dataset(example: QAExample) -> TaskType:
    qtype = (example.qtype or "").lower()
    if qtype in KINDS:
        return TaskType(qtype, is_yes_no(example.question, example.answers), _hops(example), "dataset")
    if _HOPS_RE.match(qtype):
        return TaskType(
            "compositional", is_yes_no(example.question, example.answers), _hops(example), "dataset"
        )
    return classify_rules(example)


CLASSIFY_SCHEMA = {
    "type": "object",
    "properties": {
        "kind": {"type": "string", "enum": ["comparison", "bridge", "compositional"]},
        "yes_no": {"type": "boolean"},
    },
    "required": ["kind", "yes_no"],
    "additionalProperties": False,
}


def classify_prompt(question: str) -> list[dict]:
    return [
        {
            "role": "system",
            "content": "Classify a multi-hop question. kind: comparison (compares two entities), bridge "
            "(finds an intermediate entity first) or compositional (a chain of relations). yes_no: whether "
            'the answer is yes or no. Reply with JSON only: {"kind": ..., "yes_no": ...}.',
        },
        {"role": "user", "content": question},
    ]


def parse_classification(text: str, example: QAExample) -> TaskType | None:
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    if not isinstance(obj, dict) or obj.get("kind") not in KINDS or not isinstance(obj.get("yes_no"), bool):
        return None
    return TaskType(obj["kind"], obj["yes_no"], _hops(example), "llm")
