"""Read a W&B offline run (`wandb/offline-run-*/run-<id>.wandb`) without network.

wandb >= 0.31 has no Python reader for its transaction log, so this is a small one. The file is a 7-byte
header (b":W&B", 0xBEE1 little-endian, version 0) followed by the LevelDB log format: 32 KiB blocks of
chunks, each with a 7-byte header (CRC32C, uint16 length, type FULL=1 FIRST=2 MIDDLE=3 LAST=4); a block tail
shorter than a chunk header is zero padding. The payload of each record is a `wandb_internal.Record` protobuf.
CRCs are not checked: a torn tail from a killed run shows up as a parse error and ends the read.

A resumed run writes one `offline-run-<date>_<time>-<id>` folder per process, all with the same run id;
`read_offline_runs` merges them (in folder-name order, i.e. start time) into one run (`merge_runs`).
"""

from __future__ import annotations

import json
import struct
import warnings
from pathlib import Path

from s5lra.report.wandb_runs import HISTORY_KEYS, WandbRun, merge_runs

HEADER = b":W&B" + struct.pack("<HB", 0xBEE1, 0)
BLOCK = 32 * 1024
CHUNK = struct.Struct("<IHB")
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _records(data: bytes, name: str):
    """The record payloads of a transaction log, reassembled from their chunks."""
    if not data.startswith(HEADER):
        raise ValueError(f"{name}: not a W&B transaction log (bad header)")
    pos, parts = len(HEADER), []
    while pos + CHUNK.size <= len(data):
        room = BLOCK - pos % BLOCK
        if room < CHUNK.size:
            pos += room
            continue
        _, length, kind = CHUNK.unpack_from(data, pos)
        pos += CHUNK.size
        if kind == 0:  # zero padding up to the block end
            pos += room - CHUNK.size
            continue
        parts.append(data[pos:pos + length])
        pos += length
        if kind in (FULL, LAST):
            yield b"".join(parts)
            parts = []


def _key(item) -> str:
    return item.key or ".".join(item.nested_key)


def find_offline_runs(root: str | Path) -> list[Path]:
    """`root` itself if it is a run file, else every `run-*.wandb` under it (a run's wandb/ folder, ...)."""
    if Path(root).is_file():
        return [Path(root)]
    return sorted(p for p in Path(root).rglob("run-*.wandb") if "latest-run" not in p.parts)


def read_offline_runs(paths) -> list[WandbRun]:
    """Every offline run under `paths` (files or folders), one per run id: the folders of a resumed run are
    merged in the order they were started (their names begin with the start time)."""
    files = sorted({f.resolve() for p in paths for f in find_offline_runs(p)}, key=lambda f: (f.parent.name, f.name))
    segments: dict[str, list[WandbRun]] = {}
    for f in files:
        run = read_offline_run(f)
        segments.setdefault(run.id, []).append(run)
    return [merge_runs(parts) for parts in segments.values()]


def read_offline_run(path: str | Path) -> WandbRun:
    """A WandbRun from an offline run file or its `offline-run-*` folder."""
    from wandb.proto import wandb_internal_pb2 as pb

    path = Path(path)
    if path.is_dir():
        files = list(path.glob("run-*.wandb"))
        if len(files) != 1:
            raise ValueError(f"{path}: expected one run-*.wandb file, found {len(files)}")
        path = files[0]
    run_id, config, summary, history, hardware, tags, group = path.stem[4:], {}, {}, [], None, [], None
    for payload in _records(path.read_bytes(), str(path)):
        try:
            record = pb.Record.FromString(payload)
        except Exception:  # protobuf's DecodeError; a torn final record of a killed process
            warnings.warn(f"{path}: unreadable record; stopped reading there")
            break
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run_id, tags, group = record.run.run_id, list(record.run.tags), record.run.run_group or None
            config.update({_key(i): json.loads(i.value_json) for i in record.run.config.update})
        elif kind == "config":
            config.update({_key(i): json.loads(i.value_json) for i in record.config.update})
        elif kind == "summary":
            summary.update({_key(i): json.loads(i.value_json) for i in record.summary.update})
        elif kind == "history":
            row = {_key(i): json.loads(i.value_json) for i in record.history.item}
            history.append({k: v for k, v in row.items() if k in HISTORY_KEYS})
        elif kind == "environment":
            env = record.environment
            if env.gpu_count:
                hardware = f"{env.gpu_count} x {env.gpu_type}"
            elif env.cpu.model and hardware is None:
                hardware = f"CPU ({env.cpu.model}, {env.cpu_count} cores)"
    config.pop("_wandb", None)
    return WandbRun(run_id, config, summary, history, hardware, tags, group)
