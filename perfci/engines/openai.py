"""`openai`: any OpenAI-compatible server that perfci measures but did not start (`--endpoint URL`)."""

from __future__ import annotations

from typing import Any, ClassVar

from perfci.engines.base import Launch, LaunchContext
from perfci.errors import ConfigError


class OpenAIEndpoint:
    name: ClassVar[str] = "openai"
    patterns: ClassVar = ()
    additive_phases: ClassVar = ()

    def launch(self, ctx: LaunchContext) -> Launch:
        raise ConfigError("engine 'openai' only measures a running server: use --endpoint URL --model NAME")

    def request_extras(self) -> dict[str, Any]:
        # vLLM, SGLang and most OpenAI-compatible servers accept ignore_eos; it makes output lengths exact.
        return {"ignore_eos": True}

    def identify(self, python: str) -> tuple[str | None, str | None]:
        return None, None

    def post_install(self, env) -> None:
        pass
