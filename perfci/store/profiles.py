"""Profile records: what a diagnostic profiling run sampled, kept beside run records and never mixed with them.

One record per `perfci profile` (`kind: "perfci-profile"`, its own `schema_version`): the build, machine, suite
and point it profiled, the profiler and its rate, and per fresh start ("sample") the requests served while
sampling and, per process role (api-server, engine-core, worker, …), the collapsed stacks gzip-compressed and
base64-encoded. Written once, atomically; read back, upgraded and validated like run records; ingested into the
store's `profiles` and `profile_samples` tables and rebuilt from the records by `perfci db rebuild`.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlite_utils import Database

from perfci.errors import RecordError
from perfci.store.records import write_once
from perfci.verdicts.explainstats import Profile

KIND = "perfci-profile"
SCHEMA_VERSION = 1
MAX_PROFILE_BYTES = 64 * 1024 * 1024
# Forward migrations of profile records (MIGRATIONS[v]: a version-v dict -> a version v+1 one); none yet.
MIGRATIONS: dict[int, Callable[[dict], dict]] = {}
_PROCESS = re.compile(r'^process (?P<pid>\d+):"(?P<cmd>.*)"$')


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Role(_Model):
    samples: int = Field(ge=0)
    pids: list[int]
    stacks: str  # collapsed stacks ("frame;frame;… count" per line), gzip, base64


class Sample(_Model):
    """One fresh start of the engine, sampled while it served the point's load."""

    index: int = Field(ge=0)
    status: Literal["ok", "failed"]
    error: str | None
    requests: int = Field(ge=0)  # served while sampling: the point's and its warmup's
    duration_s: float = Field(ge=0)
    metrics: dict[str, float | None]  # the point's headline metrics under the profiler (not measured results)
    roles: dict[str, Role]


class ProfileRecord(_Model):
    schema_version: int
    kind: Literal["perfci-profile"]
    profile_id: str
    created: str
    perfci_version: str
    suite: dict[str, str | None]  # name, hash
    build: dict[str, str | None]  # engine, version, commit, source
    hardware: dict[str, str]  # label
    point: dict[str, str]  # model, workload, load_label
    profiler: dict[str, str | float | bool | None]  # tool, version, rate_hz, native
    status: Literal["ok", "failed"]
    samples: list[Sample]

    def profiles(self) -> list[Profile]:
        """The ok samples, as the statistics take them."""
        return [to_profile(s, float(self.profiler["rate_hz"])) for s in self.samples
                if s.status == "ok" and s.requests > 0]  # fmt: skip


def to_profile(sample: Sample, rate_hz: float) -> Profile:
    return Profile(requests=sample.requests, interval_ms=1000.0 / rate_hz,
                   roles={r: decode_stacks(role.stacks) for r, role in sample.roles.items()})  # fmt: skip


def new_profile_id() -> str:
    return str(uuid.uuid4())


def role_of(commands: list[str]) -> str:
    """A process's role from its command line (vLLM names its processes: VLLM::EngineCore, VLLM::Worker_…) and,
    failing that, its depth under the process perfci started."""
    cmd = commands[-1]
    if "EngineCore" in cmd or "engine_core" in cmd:
        return "engine-core"
    if "Worker" in cmd or "worker" in cmd:
        return "worker"
    if "scheduler" in cmd.lower():
        return "scheduler"
    return "api-server" if len(commands) == 1 else f"process-{len(commands)}"


def split_roles(raw: str) -> tuple[dict[str, Counter], dict[str, set[int]]]:
    """py-spy's raw output with `--subprocesses` ("process PID:\"cmd\";…;frame;frame COUNT" per line) -> per role,
    the collapsed stacks without the process frames, and the pids seen in that role."""
    stacks: dict[str, Counter] = {}
    pids: dict[str, set[int]] = {}
    for line in raw.splitlines():
        head, _, count = line.rstrip().rpartition(" ")
        if not head or not count.isdigit():
            continue
        frames = head.split(";")
        commands, pid = [], None
        while frames and (m := _PROCESS.match(frames[0])):
            commands.append(m["cmd"])
            pid = int(m["pid"])
            frames.pop(0)
        if not frames:
            continue
        role = role_of(commands or [""])
        stacks.setdefault(role, Counter())[";".join(frames)] += int(count)
        if pid is not None:
            pids.setdefault(role, set()).add(pid)
    return stacks, pids


def encode_stacks(stacks: Counter) -> str:
    text = "".join(f"{s} {n}\n" for s, n in sorted(stacks.items()))
    return base64.b64encode(gzip.compress(text.encode(), mtime=0)).decode()


def decode_stacks(blob: str) -> dict[str, int]:
    text = gzip.decompress(base64.b64decode(blob)).decode()
    out: dict[str, int] = {}
    for line in text.splitlines():
        stack, _, n = line.rpartition(" ")
        out[stack] = out.get(stack, 0) + int(n)
    return out


def roles_from_raw(raw: str) -> dict[str, Role]:
    stacks, pids = split_roles(raw)
    return {r: Role(samples=sum(s.values()), pids=sorted(pids.get(r, ())), stacks=encode_stacks(s))
            for r, s in sorted(stacks.items())}  # fmt: skip


def write_profile(record: ProfileRecord, directory: Path) -> Path:
    """`<directory>/profile-<id>.json`, atomically and never over an existing file."""
    path = Path(directory) / f"profile-{record.profile_id}.json"
    return write_once(path, record.model_dump_json().encode(), what="profile record")


def is_profile_file(path: Path) -> bool:
    """Whether a JSON file says it is a profile record (read to its "kind" only)."""
    try:
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError:
        return False
    return re.search(rb'"kind"\s*:\s*"perfci-profile"', head) is not None


def read_profile(path: Path) -> ProfileRecord:
    path = Path(path)
    try:
        raw = path.read_bytes()
        data = json.loads(raw[: MAX_PROFILE_BYTES + 1].decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RecordError(f"{path}: not a readable profile record ({e})") from e
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise RecordError(f'{path}: not a perfci profile record (expected "kind": "{KIND}")')
    version = data.get("schema_version")
    if type(version) is not int or version < 1 or version > SCHEMA_VERSION:
        raise RecordError(f"{path}: profile record schema_version {version!r} is unknown to this perfci "
                          f"(it reads 1 to {SCHEMA_VERSION})")  # fmt: skip
    while data["schema_version"] < SCHEMA_VERSION:
        data = MIGRATIONS[data["schema_version"]](data)
    try:
        return ProfileRecord.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise RecordError(f"{path}: invalid profile record: {where}: {first['msg']}") from e


def ingest_profile(db: Database, record: ProfileRecord, *, record_path: str | None = None) -> bool:
    """Store one profile record in one transaction; False (nothing written) if its id is already stored."""
    from perfci.store import write_transaction  # store imports this module for ingest

    with write_transaction(db):
        if db.execute("SELECT 1 FROM profiles WHERE profile_id = ?", [record.profile_id]).fetchone():
            return False
        db["profiles"].insert({
            "profile_id": record.profile_id, "created": record.created, "engine": record.build.get("engine"),
            "version": record.build.get("version"), "build_source": record.build.get("source"),
            "hardware_label": record.hardware["label"], "suite_name": record.suite.get("name"),
            "suite_hash": record.suite.get("hash"), "model": record.point["model"],
            "workload": record.point["workload"], "load_label": record.point["load_label"],
            "tool": record.profiler.get("tool"), "rate_hz": record.profiler.get("rate_hz"), "status": record.status,
            "record_path": record_path,
        })  # fmt: skip
        db["profile_samples"].insert_all(
            {"profile_id": record.profile_id, "idx": s.index, "status": s.status, "requests": s.requests,
             "duration_s": s.duration_s, "role": role, "samples": r.samples, "stacks": r.stacks}
            for s in record.samples for role, r in s.roles.items()
        )  # fmt: skip
    return True


def stored_profiles(db: Database, *, build_source: str, hardware_label: str, suite_name: str, suite_hash: str | None,
                    workload: str, load_label: str, rate_hz: float) -> list[Profile]:  # fmt: skip
    """Every ok sample stored for this build, machine and point (of this version of the suite: its requests and
    settings are what a time per request depends on) at this sampling rate, newest first."""
    if "profile_samples" not in db.table_names():
        return []
    rows = db.execute(
        "SELECT s.profile_id, s.idx, s.requests, s.role, s.stacks FROM profile_samples s "
        "JOIN profiles p USING (profile_id) WHERE p.build_source = ? AND p.hardware_label = ? AND p.suite_name = ? "
        "AND p.suite_hash IS ? "
        "AND p.workload = ? AND p.load_label = ? AND p.rate_hz = ? AND s.status = 'ok' AND s.requests > 0 "
        "ORDER BY p.created DESC, s.profile_id, s.idx",
        [build_source, hardware_label, suite_name, suite_hash, workload, load_label, rate_hz],
    ).fetchall()
    grouped: dict[tuple[str, int], tuple[int, dict[str, dict[str, int]]]] = {}
    for pid, idx, requests, role, blob in rows:
        grouped.setdefault((pid, idx), (requests, {}))[1][role] = decode_stacks(blob)
    return [Profile(requests=n, interval_ms=1000.0 / rate_hz, roles=roles) for n, roles in grouped.values()]

