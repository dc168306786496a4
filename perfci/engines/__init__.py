"""Engine adapters, by name. Adding an engine = one module + one line here."""

from __future__ import annotations

from perfci.engines.base import Engine
from perfci.engines.openai import OpenAIEndpoint
from perfci.engines.sglang import SglangEngine
from perfci.engines.sim import SimEngine
from perfci.engines.transformers import TransformersEngine
from perfci.engines.trtllm import TrtllmEngine
from perfci.engines.vllm import VllmEngine
from perfci.errors import ConfigError

REGISTRY: dict[str, Engine] = {
    SimEngine.name: SimEngine(),
    OpenAIEndpoint.name: OpenAIEndpoint(),
    VllmEngine.name: VllmEngine(),
    SglangEngine.name: SglangEngine(),
    TrtllmEngine.name: TrtllmEngine(),
    TransformersEngine.name: TransformersEngine(),
}


def get(name: str) -> Engine:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown engine {name!r}; known: {', '.join(sorted(REGISTRY))}") from None
