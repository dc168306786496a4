"""Prompts of an exact token length, and the request specs of a workload.

With the served model's tokenizer: sample token ids (special tokens excluded), decode, re-encode, and adjust
until the encoding has exactly n tokens — for BPE tokenizers decode -> encode is not length-stable (pieces
merge across the joins, stray bytes become several tokens). Without one: whitespace words `w3 w4 …`, one
token each for perfci's WordLevel tiny model and for the sim engine, which counts words.

Words and token ids are drawn at random so that prompts do not share prefixes (a server's prefix cache
would otherwise make TTFT look better than it is).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import overload

from tokenizers import Tokenizer

from perfci.config import Distribution, Workload
from perfci.errors import ConfigError, PerfciError
from perfci.measure.loadgen.client import RequestSpec

WORDS = range(3, 1003)  # w3 … w1002; ids 0-2 of the tiny model's vocabulary are its special tokens
_MAX_ADJUSTMENTS = 64


class Prompts:
    """Builds prompt text of an exact token length. Use one of the constructors."""

    def __init__(self, make: Callable[[int, random.Random], str], source: str):
        self._make = make
        self.source = source  # what the lengths are exact for: a tokenizer path or "words"

    @classmethod
    def from_tokenizer_file(cls, path: str | Path) -> Prompts:
        """Exact lengths for the tokenizer in a Hugging Face `tokenizer.json`."""
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as e:  # the Rust side raises plain Exception for unreadable or invalid files
            raise ConfigError(f"{path}: cannot load tokenizer: {e}") from e
        ids = _stable_ids(tokenizer)
        if not ids:
            raise ConfigError(f"{path}: tokenizer has no ordinary tokens to build prompts from")
        return cls(lambda n, rng: _exact_text(tokenizer, ids, n, rng, path), str(path))

    @classmethod
    def from_model_dir(cls, path: str | Path) -> Prompts:
        """The model directory's `tokenizer.json` when it has one, else words."""
        path = Path(path)
        if not path.is_dir():
            raise ConfigError(f"{path}: not a model directory")
        tokenizer = path / "tokenizer.json"
        return cls.from_tokenizer_file(tokenizer) if tokenizer.is_file() else cls.words()

    @classmethod
    def words(cls) -> Prompts:
        """Whitespace words, one token per word."""
        return cls(lambda n, rng: " ".join(f"w{rng.choice(WORDS)}" for _ in range(n)), "words")

    def make(self, n_tokens: int, rng: random.Random) -> str:
        """Text that encodes to exactly n_tokens tokens (without special tokens such as BOS)."""
        if n_tokens < 1:
            raise ConfigError(f"prompt length must be >= 1 token, got {n_tokens}")
        return self._make(n_tokens, rng)


def _stable_ids(tokenizer: Tokenizer) -> list[int]:
    """Ids of the ordinary tokens that decode to text encoding back to themselves alone: no special tokens,
    no stray bytes of a multi-byte character (they decode to U+FFFD and re-encode as several tokens), no
    whitespace-only or control-character tokens."""
    special = {i for i, tok in tokenizer.get_added_tokens_decoder().items() if tok.special}
    ids = [i for i in range(tokenizer.get_vocab_size(with_added_tokens=True)) if i not in special]
    texts = tokenizer.decode_batch([[i] for i in ids])
    encoded = tokenizer.encode_batch(texts, add_special_tokens=False)
    return [i for i, text, enc in zip(ids, texts, encoded, strict=True)
            if enc.ids == [i] and text.strip() and text.isprintable()]  # fmt: skip


def _exact_text(tokenizer: Tokenizer, ids: list[int], n: int, rng: random.Random, path: str | Path) -> str:
    tokens = rng.choices(ids, k=n)
    for _ in range(_MAX_ADJUSTMENTS):
        text = tokenizer.decode(tokens, skip_special_tokens=True)
        encoded = tokenizer.encode(text, add_special_tokens=False).ids
        if len(encoded) == n:
            return text
        # Continue from what the text really encodes to: cut the excess, or top up with fresh samples
        # (which may merge with their neighbours again, hence the loop).
        tokens = encoded[:n] if len(encoded) > n else encoded + rng.choices(ids, k=n - len(encoded))
    raise PerfciError(f"{path}: could not build a prompt of exactly {n} tokens in {_MAX_ADJUSTMENTS} tries")


def request_specs(workload: Workload, n: int, prompts: Prompts) -> Specs:
    """n request specs for a workload, seeded by `workload.seed`, built lazily: a duration-bounded point
    gets a generous budget of requests and pays only for the prompts it sends."""
    if n < 0:
        raise ConfigError(f"workload {workload.name!r}: request count must be >= 0, got {n}")
    return Specs(workload, n, prompts)


class Specs(Sequence[RequestSpec]):
    """Spec i depends only on (workload, seed, i). Token counts come from their own RNG stream, so the same
    workload asks for the same lengths whichever tokenizer builds the text (comparable across engines)."""

    def __init__(self, workload: Workload, n: int, prompts: Prompts):
        self.workload, self.n, self.prompts = workload, n, prompts
        self._built: dict[int, RequestSpec] = {}

    def __len__(self) -> int:
        return self.n

    @overload
    def __getitem__(self, i: int) -> RequestSpec: ...
    @overload
    def __getitem__(self, i: slice) -> list[RequestSpec]: ...
    def __getitem__(self, i: int | slice) -> RequestSpec | list[RequestSpec]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self.n))]
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise IndexError(i)
        if i not in self._built:
            seed = self.workload.seed
            counts = random.Random(f"perfci-counts-{seed}-{i}")
            p = _tokens(self.workload.prompt_tokens, counts)
            o = _tokens(self.workload.output_tokens, counts)
            text = self.prompts.make(p, random.Random(f"perfci-prompts-{seed}-{i}"))
            self._built[i] = RequestSpec(prompt=text, prompt_tokens=p, output_tokens=o)
        return self._built[i]


def _tokens(count: int | Distribution, rng: random.Random) -> int:
    """A fixed count, or one draw clamped to [min, max] and to >= 1. For normal and lognormal, mean and std
    are those of the token count itself (lognormal: the underlying normal is solved from them)."""
    if isinstance(count, int):
        return count
    lo, hi, mean, std = count.min, count.max, count.mean, count.std  # presence checked by Distribution
    if count.dist == "uniform":
        value = rng.randint(lo, hi)  # type: ignore[arg-type]
    elif count.dist == "normal":
        value = round(rng.gauss(mean, std))  # type: ignore[arg-type]
    else:
        sigma2 = math.log1p((std / mean) ** 2)  # type: ignore[operator]
        value = round(rng.lognormvariate(math.log(mean) - sigma2 / 2, math.sqrt(sigma2)))  # type: ignore[arg-type]
    if lo is not None:
        value = max(value, lo)
    if hi is not None:
        value = min(value, hi)
    return max(value, 1)
