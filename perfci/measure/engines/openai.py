"""`openai`: any OpenAI-compatible server that perfci measures but did not start (`--endpoint URL`)."""

from __future__ import annotations

from typing import ClassVar

from perfci.errors import ConfigError
from perfci.measure.engines.base import Adapter, Launch, LaunchContext


class OpenAIEndpoint(Adapter):
    name: ClassVar[str] = "openai"

    def launch(self, ctx: LaunchContext) -> Launch:
        raise ConfigError("engine 'openai' only measures a running server: use --endpoint URL --model NAME")

    def identify(self, python: str) -> tuple[str | None, str | None]:
        return None, None  # a server perfci did not start: its version is not ours to read
