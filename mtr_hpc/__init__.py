"""mtr-hpc: Model-as-Tools Reasoning at cluster scale.

Importing the package imports nothing heavy: torch, Megatron-Core, transformers, vLLM and Transformer
Engine are imported by the modules that need them, when they need them.
"""

__version__ = "0.1.0"
