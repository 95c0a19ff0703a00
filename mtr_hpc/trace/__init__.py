"""Traces (design §3): the record, its JSONL files, parsing model turns and validating whole traces."""

from .io import read_traces, record_problems, trace_from_dict, write_traces
from .model import Trace
from .parser import ParsedTurn, ToolCall, TurnError, parse_turn
from .validator import TraceIssue, validate_record, validate_trace

__all__ = [
    "ParsedTurn",
    "ToolCall",
    "Trace",
    "TraceIssue",
    "TurnError",
    "parse_turn",
    "read_traces",
    "record_problems",
    "trace_from_dict",
    "validate_record",
    "validate_trace",
    "write_traces",
]
