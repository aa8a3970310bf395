"""What identifies a task's data (`TaskData.fingerprint`), and how two such descriptions differ.

A run records the fingerprint next to its vocabulary; comparing it with the fingerprint of the data on disk
later (resume, evaluation) tells whether the numbers still mean the same thing. It holds the task, the cache
format, the cache key and the settings it hashes, the split sizes, the skipped inputs, a digest of the
vocabulary, and per source its size and content hash (SHA-256 of a file's bytes; for a folder of reviews, of
every file's). Pathfinder's image folders are not read twice (200k images): they are identified by their
listing, a digest of every image's (path, size), next to the content hashes of the metadata files that hold
the labels. So an image rewritten in place with the same size changes no fingerprint (the cache's own check
on load also compares mtimes and does notice it). mtimes are left out so that a copy of the same data on
another machine has the same fingerprint.
"""

from __future__ import annotations

import hashlib
import json

MACHINE_LOCAL = ("mtime_ns", "stat_sha256")  # differ between copies of the same data


def fingerprint(meta: dict, cache_key: str) -> dict:
    """The fingerprint of a cache folder from its meta.json contents."""
    vocab = meta.get("vocab")
    return {
        "task": meta["task"], "format": meta["format"], "cache_key": cache_key, "settings": meta["settings"],
        "splits": meta["splits"], "skipped": meta.get("skipped", {}),
        "vocab_sha256": hashlib.sha256(json.dumps(vocab).encode()).hexdigest() if vocab else None,
        "sources": [{k: v for k, v in e.items() if k not in MACHINE_LOCAL} for e in meta["sources"]],
    }


def _short(value) -> str:
    if isinstance(value, str) and len(value) == 64:  # a SHA-256
        return value[:12]
    return json.dumps(value, sort_keys=True)


def _source_changes(old: list[dict], new: list[dict]) -> list[str]:
    before, after = {e["path"]: e for e in old}, {e["path"]: e for e in new}
    out = [f"source {p}: removed" for p in before if p not in after]
    out += [f"source {p}: added" for p in after if p not in before]
    for path in (p for p in after if p in before):
        a, b = before[path], after[path]
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                label = {"bytes": "size in bytes", "files": "number of files", "sha256": "content (SHA-256)",
                         "listing_sha256": "listing of (path, size) (SHA-256)"}.get(key, key)
                out.append(f"source {path}: {label} {_short(a.get(key))} -> {_short(b.get(key))}")
    return out


def fingerprint_changes(old: dict, new: dict) -> list[str]:
    """Human-readable differences between two fingerprints; an empty list means the same data."""
    out = []
    for key in ("task", "format"):
        if old.get(key) != new.get(key):
            out.append(f"{'cache format' if key == 'format' else key}: {_short(old.get(key))} -> "
                       f"{_short(new.get(key))}")
    for group, label, unit in (("settings", "setting", ""), ("splits", "split", " examples"),
                               ("skipped", "skipped", "")):
        a, b = old.get(group) or {}, new.get(group) or {}
        out += [f"{label} {k}: {_short(a.get(k))}{unit} -> {_short(b.get(k))}{unit}"
                for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    if old.get("vocab_sha256") != new.get("vocab_sha256"):
        out.append(f"vocabulary: {_short(old.get('vocab_sha256'))} -> {_short(new.get('vocab_sha256'))} (SHA-256)")
    out += _source_changes(old.get("sources") or [], new.get("sources") or [])
    if not out and old.get("cache_key") != new.get("cache_key"):
        out.append(f"cache key: {old.get('cache_key')} -> {new.get('cache_key')}")
    return out
