"""Engine adapters, by name. Adding an engine = one module + one line here."""

from __future__ import annotations

from perfci.errors import ConfigError
from perfci.measure.engines.base import Engine
from perfci.measure.engines.openai import OpenAIEndpoint
from perfci.measure.engines.sglang import SglangEngine
from perfci.measure.engines.sim import SimEngine
from perfci.measure.engines.transformers import TransformersEngine
from perfci.measure.engines.trtllm import TrtllmEngine
from perfci.measure.engines.vllm import VllmEngine

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
