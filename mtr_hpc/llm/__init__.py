"""LLM clients behind one protocol (`LLMClient`), and the OpenAI-compatible server behind `mtr serve`.

Backends: `OpenAIHTTPClient` (any OpenAI-compatible endpoint), `TransformersClient` (local, the
embedded default) and `VLLMClient` (vLLM offline, GPU), both the one adapter over a rollout engine
(`engine_client.py`), and the model-free `EchoClient` / `ScriptedClient`.
Importing this package imports no HTTP or inference library; each backend imports its own when used.
"""

from .protocol import (
    ChatRequest,
    ChatResponse,
    InvalidRequestError,
    LLMClient,
    LLMError,
    gather_settled,
    run_sync,
)

__all__ = [
    "ChatRequest",
    "ChatResponse",
    "InvalidRequestError",
    "LLMClient",
    "LLMError",
    "gather_settled",
    "run_sync",
    "make_client",
]


def make_client(backend: str, model: str, **options):
    """A client by backend name: `openai` (needs `base_url`), `transformers`, `vllm`, `echo`."""
    from ..errors import ConfigError

    if backend == "openai":
        from .openai_http import OpenAIHTTPClient

        if "base_url" not in options:
            raise ConfigError("llm.base_url", "the openai backend needs the endpoint's base_url")
        return OpenAIHTTPClient(options.pop("base_url"), model, **options)
    if backend == "transformers":
        from .transformers_client import TransformersClient

        return TransformersClient(model, **options)
    if backend == "vllm":
        from .vllm_client import VLLMClient

        return VLLMClient(model, **options)
    if backend == "echo":
        from .fake import EchoClient

        return EchoClient(**options)
    raise ConfigError(
        "llm.backend", f"unknown backend '{backend}'; expected openai, transformers, vllm or echo"
    )
