"""ToolMaker: the tool set of one task = utility tools + one lookup tool per evidence relation.

Relations come from 2Wiki evidence triples ("date of death" -> `get_date_of_death(person)`) and from
MuSiQue's relation-style steps ("Green >> performer" -> `get_performer(entity)`). Backends: `template`
(deterministic, default) and `llm` (a model writes the interface JSON under a JSON-schema constraint; an
interface failing `toolspec` validation is re-requested `llm_retries` times, then the template is used;
both outcomes are counted in `stats`). Every interface is validated and recorded in the `ToolLibrary`,
whose first interface per relation is reused, so a relation maps to one tool everywhere.

Departure from the paper: a lookup tool returns the entity's page and the best passages for "<entity>
<relation>" (the search format, `sim/observations.py`), not the value, so the policy learns to read a
value off a page, which is what a real engine gives it; the `retrieval` environment answers the same
tools from a corpus.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..data.example import QAExample
from ..errors import ConfigError
from ..toolspec import validate_tool
from .classify import (
    CLASSIFY_SCHEMA,
    TaskType,
    classify_dataset,
    classify_prompt,
    classify_rules,
    parse_classification,
)
from .config import ToolMakerConfig
from .drive import drive
from .evidence import EvidenceKB
from .schemas import returns_schema, with_error_shape
from .text import snake
from .tool_library import ToolLibrary
from .utility_tools import RESULTS_SCHEMA, UTILITY_TOOLS

PERSON_RELATIONS = frozenset(
    "date of birth,date of death,place of birth,place of death,country of citizenship,father,mother,spouse,"
    "child,sibling,educated at,employer,place of burial,cause of death,award received,occupation,"
    "student of,doctoral advisor,member of sports team,place of detention".split(",")
)
WORK_RELATIONS = frozenset(
    "director,producer,composer,performer,publication date,publisher,author,screenwriter,cast member,"
    "country of origin,record label,editor,presenter,creator".split(",")
)
COMPARE_KINDS = frozenset({"comparison", "bridge_comparison"})


@dataclass
class ToolSet:
    """The tools of one task; `relation_of` maps a lookup tool's name to the relation it answers."""

    tools: list[dict[str, Any]]
    relation_of: dict[str, str] = field(default_factory=dict)
    task: TaskType | None = None
    # Tools whose interface is a template of this module: the grounded simulator builds their
    # observations in exactly the declared shape, so it need not validate them call by call.
    templated: set[str] = field(default_factory=set)

    def names(self) -> list[str]:
        return [t["function"]["name"] for t in self.tools]


def _param_name(relation: str) -> str:
    if relation in PERSON_RELATIONS:
        return "person"
    return "title" if relation in WORK_RELATIONS else "entity"


def relation_tool(relation: str, name: str | None = None) -> dict[str, Any]:
    """The template interface of the lookup tool of `relation`."""
    param = _param_name(relation)
    what = {"person": "person", "title": "work (film, book, song, album)"}.get(param, "entity")
    return {
        "type": "function",
        "function": {
            "name": name or f"get_{snake(relation)}",
            "description": f"Look up the {relation} of a {what}: its encyclopedia page and the passages "
            "that best match, ranked.",
            "parameters": {
                "type": "object",
                "properties": {param: {"type": "string", "description": f"The name of the {what}."}},
                "required": [param],
                "additionalProperties": False,
            },
        },
        "x-returns": returns_schema(
            {"entity": {"type": "string"}, "relation": {"type": "string"}, "results": RESULTS_SCHEMA},
            ["entity", "relation", "results"],
        ),
    }


INTERFACE_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,64}$"},
        "description": {"type": "string"},
        "parameters": {"type": "object"},
        "returns": {"type": "object"},
    },
    "required": ["name", "description", "parameters", "returns"],
}


def interface_prompt(relation: str, question: str) -> list[dict]:
    example = relation_tool(relation)
    shape = {
        "name": example["function"]["name"],
        "description": example["function"]["description"],
        "parameters": example["function"]["parameters"],
        "returns": {
            "type": "object",
            "properties": {"results": RESULTS_SCHEMA},
        },
    }
    return [
        {
            "role": "system",
            "content": "You design tool interfaces for a question-answering agent. Write ONE JSON object "
            "with keys name, description, parameters (a JSON Schema object whose properties all have a "
            "description; one string parameter names the entity) and returns (the JSON Schema object of "
            f"the tool's output). Example of the shape: {json.dumps(shape)}",
        },
        {"role": "user", "content": f"Relation: {relation}\nA question that needs it: {question}"},
    ]


def interface_from_llm(text: str) -> tuple[dict[str, Any] | None, str]:
    """The tool built from a model's JSON, or (None, reason)."""
    try:
        obj = json.loads(text)
    except ValueError:
        return None, "not_json"
    if not isinstance(obj, dict) or not all(k in obj for k in INTERFACE_SCHEMA["required"]):
        return None, "missing_keys"
    params, returns = obj["parameters"], obj["returns"]
    if not isinstance(params, dict) or not isinstance(returns, dict):
        return None, "bad_schema"
    props = params.get("properties") or {}
    if not any(isinstance(p, dict) and p.get("type") == "string" for p in props.values()):
        return None, "no_string_parameter"
    tool = {
        "type": "function",
        "function": {"name": obj["name"], "description": obj["description"], "parameters": params},
        "x-returns": with_error_shape(returns),
    }
    # The ToolMaker's own output meets the project's quality rules too (described parameters).
    issues = validate_tool(tool, strict=True)
    return (None, f"invalid:{issues[0].code}") if issues else (tool, "")


class ToolMaker:
    def __init__(
        self, cfg: ToolMakerConfig | None = None, library: ToolLibrary | None = None, llm: Any = None
    ):
        self.cfg = cfg or ToolMakerConfig()
        unknown = [u for u in self.cfg.utility_tools if u not in UTILITY_TOOLS]
        if unknown:
            raise ConfigError(
                "toolmaker.utility_tools", f"unknown utility tool {unknown[0]!r} ({sorted(UTILITY_TOOLS)})"
            )
        if (self.cfg.backend == "llm" or self.cfg.classifier == "llm") and llm is None:
            raise ConfigError("toolmaker.backend", "the llm backend needs an LLM client")
        self.library = library if library is not None else ToolLibrary()
        self.llm = llm
        self.stats: Counter[str] = Counter()

    def make(self, example: QAExample, kb: EvidenceKB) -> ToolSet:
        """Synchronous `amake` (template backend and non-llm classifier only)."""
        return drive(self.amake(example, kb))

    async def amake(self, example: QAExample, kb: EvidenceKB) -> ToolSet:
        task = await self.classify(example)
        tools: list[dict[str, Any]] = []
        templated: set[str] = set()
        for name in self.cfg.utility_tools:
            if name == "compare" and not (task.kind in COMPARE_KINDS or task.yes_no):
                continue
            tools.append(self._library_tool(f"utility:{name}", UTILITY_TOOLS[name]))
            if tools[-1] == UTILITY_TOOLS[name]:
                templated.add(name)
        relation_of: dict[str, str] = {}
        for relation in dict.fromkeys(rel for _, rel in kb.facts):
            tool = await self._relation_tool(relation, example.question)
            name = tool["function"]["name"]
            relation_of[name] = relation
            tools.append(tool)
            if self.library.get(f"relation:{relation}").origin == "template" and tool == relation_tool(
                relation, name
            ):
                templated.add(name)
        self.stats["toolsets"] += 1
        return ToolSet(tools, relation_of, task, templated)

    async def classify(self, example: QAExample) -> TaskType:
        if self.cfg.classifier == "rules":
            return classify_rules(example)
        if self.cfg.classifier == "dataset":
            return classify_dataset(example)
        from ..llm.protocol import ChatRequest, LLMError

        try:
            resp = await self.llm.chat(
                ChatRequest(classify_prompt(example.question), max_tokens=64, json_schema=CLASSIFY_SCHEMA)
            )
            task = parse_classification(resp.text, example)
        except LLMError:
            task = None
        if task is None:
            self.stats["classify_fallback"] += 1
            return classify_rules(example)
        return task

    def _library_tool(self, key: str, tool: dict[str, Any], origin: str = "template") -> dict[str, Any]:
        entry = self.library.add(key, tool, origin)
        self.library.use(key)
        return entry.tool

    async def _relation_tool(self, relation: str, question: str) -> dict[str, Any]:
        key = f"relation:{relation}"
        if key in self.library:
            return self._library_tool(key, {})
        tool, origin = None, "template"
        if self.cfg.backend == "llm":
            tool = await self._llm_interface(relation, question, key)
            origin = "llm" if tool else "template"
        if tool is None:
            name = f"get_{snake(relation)}"
            i = 2
            while self.library.name_taken(name, key):
                name, i = f"get_{snake(relation, 44)}_{i}", i + 1
            tool = relation_tool(relation, name)
        return self._library_tool(key, tool, origin)

    async def _llm_interface(self, relation: str, question: str, key: str) -> dict[str, Any] | None:
        from ..llm.protocol import ChatRequest, LLMError

        req = ChatRequest(
            interface_prompt(relation, question),
            max_tokens=self.cfg.max_tokens,
            temperature=self.cfg.temperature,
            json_schema=INTERFACE_SCHEMA,
        )
        for _ in range(self.cfg.llm_retries + 1):
            try:
                text = (await self.llm.chat(req)).text
            except LLMError as exc:
                self.stats["llm_error"] += 1
                if not exc.retryable:
                    break
                continue
            tool, reason = interface_from_llm(text)
            if tool is not None and self.library.name_taken(tool["function"]["name"], key):
                tool, reason = None, "duplicate_name"
            if tool is not None:
                self.stats["llm_interfaces"] += 1
                return tool
            self.stats[f"llm_invalid:{reason.split(':')[0]}"] += 1
        self.stats["llm_fallback"] += 1
        return None
