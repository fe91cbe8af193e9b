"""Checkpoint families: one checkpoint per hookpoint under one folder (or hub repo), each
matched by the hookpoint its *own metadata* records.

Layouts found (any depth up to :data:`MAX_DEPTH`; a folder that is a checkpoint is a member
and is not searched further):

* dictionary_learning: ``trainer_N/`` (or layer) folders, each with ``config.json`` whose
  ``trainer.layer`` + ``trainer.submodule_name`` name the hookpoint and ``ae.pt`` and/or
  ``checkpoints/ae_<step>.pt``;
* SAELens release: one folder per SAE with ``cfg.json`` naming ``hook_name``
  (``metadata.hook_name`` in v6 configs);
* sparsify: ``layers.N/``, ``layers.N.mlp/``, ... with ``cfg.json`` + ``sae.safetensors``;
  sparsify records the hookpoint as the folder's name;
* native: folders with ``autointerp.json`` (its ``hookpoint``);
* a plugin format (local folders only): the hookpoint its loaded ``info`` records.

A member whose metadata names no hookpoint falls back to its folder name when that is a
hookpoint spelling (``blocks.6.hook_resid_post``, ``layers.6``, ...). Hookpoints are compared
with :func:`~autointerp.bases.formats.hookpoints.same_hookpoint`. ``hf://owner/repo[/sub]``
families read only the JSON configs (and the hub's file listing); the member comes back as
an ``hf://`` source for :func:`~autointerp.bases.checkpoints.load_checkpoint`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autointerp.bases.formats import FORMATS, canonical_format
from autointerp.bases.formats.common import read_json
from autointerp.bases.formats.dictionary_learning import CHECKPOINTS, FINAL, is_step_name
from autointerp.bases.formats.hookpoints import (
    canonical_hookpoint,
    layer_submodule_hookpoint,
    same_hookpoint,
)
from autointerp.bases.formats.sources import fetch_hf, hub_snapshot, parse_hf_source
from autointerp.errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)

MAX_DEPTH = 4  # folder levels searched below a family's root
MAX_FILES = 200_000  # stop listing a local tree beyond this (not a checkpoint family)


class FamilyError(ConfigError, CheckpointError):
    """A family has no member, or two members, for a hookpoint (or no members at all)."""


@dataclass(frozen=True)
class Member:
    """One checkpoint of a family."""

    path: str  # loadable source: a local path or hf://owner/repo/sub[@rev]
    rel: str  # its folder inside the family ("" for the family's root)
    format: str
    hookpoint: str | None  # as the checkpoint records it
    hookpoint_from: str  # "metadata", "folder name" or "none"

    @property
    def canonical(self) -> str | None:
        """The TransformerLens-style name of its hookpoint."""
        return canonical_hookpoint(self.hookpoint)

    def label(self) -> str:
        """``hookpoint`` or ``hookpoint (folder)`` when the folder name differs."""
        hp = self.hookpoint or "(no hookpoint recorded)"
        return hp if self.rel.split("/")[-1] == hp else f"{hp} ({self.rel or '.'})"


@dataclass(frozen=True)
class Family:
    """What a source is: a single checkpoint (``single``, one member, the root) or a family."""

    source: str
    single: bool
    members: tuple[Member, ...]


# ----------------------------------------------------------------------------- file listings


def _listing_local(root: Path) -> set[str]:
    """Relative POSIX paths of the files under ``root`` (hidden folders skipped, depth
    bounded: ``MAX_DEPTH`` member levels + a ``checkpoints`` folder)."""
    out: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root).as_posix()
        depth = 0 if rel == "." else rel.count("/") + 1
        dirnames[:] = [] if depth > MAX_DEPTH else [d for d in dirnames if not d.startswith(".")]
        prefix = "" if rel == "." else rel + "/"
        out.update(prefix + f for f in filenames)
        if len(out) > MAX_FILES:
            break
    return out


def _children(files: set[str]) -> dict[str, tuple[set[str], set[str]]]:
    """folder -> (file names, subfolder names) for every folder of a listing."""
    tree: dict[str, tuple[set[str], set[str]]] = {"": (set(), set())}
    for f in files:
        parts = f.split("/")
        for i in range(len(parts)):
            folder = "/".join(parts[:i])
            tree.setdefault(folder, (set(), set()))
            if i == len(parts) - 1:
                tree[folder][0].add(parts[i])
            else:
                tree[folder][1].add(parts[i])
    return tree


def _builtin_format(folder: str, tree: dict[str, tuple[set[str], set[str]]]) -> str | None:
    """The built-in format of a folder from its file names (the detectors' rules, in order)."""
    names = tree.get(folder, (set(), set()))[0]
    if "autointerp.json" in names:
        return "native"
    if "cfg.json" in names and "sae_weights.safetensors" in names:
        return "saelens"
    if "cfg.json" in names and "sae.safetensors" in names:
        return "sparsify"
    ck = tree.get(f"{folder}/{CHECKPOINTS}" if folder else CHECKPOINTS, (set(), set()))[0]
    if FINAL in names or any(is_step_name(n) for n in names | ck):
        return "dictionary_learning"
    return None


# ----------------------------------------------------------------------------- hookpoints


def _recorded_hookpoint(fmt: str, folder: str, read: Callable[[str], dict | None]) -> str | None:
    """The hookpoint a member's own config records (None when it records none)."""

    def cfg(name: str) -> dict | None:
        return read(f"{folder}/{name}" if folder else name)

    if fmt == "native":
        return (cfg("autointerp.json") or {}).get("hookpoint")
    if fmt == "saelens":
        c = cfg("cfg.json") or {}
        meta = c.get("metadata") or c.get("meta") or {}
        meta = meta if isinstance(meta, dict) else {}
        return meta.get("hook_name") or c.get("hook_name") or c.get("hook_point")
    if fmt == "sparsify":  # sparsify names each folder after its hookpoint
        return folder.split("/")[-1] or None
    if fmt == "dictionary_learning":
        c = cfg("config.json") or {}
        t = c.get("trainer", c)
        if isinstance(t, dict) and (t.get("layer") is not None or t.get("submodule_name")):
            return layer_submodule_hookpoint(t.get("layer"), t.get("submodule_name"))
    return None


def _name_hookpoint(name: str) -> str | None:
    """A folder name that is itself a hookpoint spelling, else None."""
    c = canonical_hookpoint(name)
    return name if c and c.startswith("blocks.") else None


def _loaded_hookpoint(path: str, fmt: str) -> str | None:
    """Fallback for a local checkpoint whose configs name no hookpoint (a plugin format, a
    dictionary_learning backup with its config inside ``ae.pt``, a ``.pt`` file): read it
    with its format's reader and take the hookpoint it reports."""
    from autointerp.bases.formats import BY_NAME, load_path

    try:
        if fmt in BY_NAME:
            spec = BY_NAME[fmt]
            return spec.load(load_path(spec, Path(path))).info.get("hookpoint")
        from autointerp.bases.registry import get_plugin

        plugin = get_plugin(fmt)
        info = plugin.load(Path(path), {"format": fmt, "device": "cpu"}).info if plugin else {}
        return info.get("hookpoint")
    except Exception as e:  # unreadable: the member records no hookpoint we can use
        log.warning("%s: cannot read its hookpoint (%s: %s)", path, type(e).__name__, e)
        return None


# ----------------------------------------------------------------------------- scanning


def _members(
    files: set[str],
    read: Callable[[str], dict | None],
    to_source: Callable[[str], str],
    *,
    fmt: str | None,
    plugin_detect: Callable[[str], str | None] | None = None,
    load_fallback: bool = False,
) -> list[Member]:
    """Every checkpoint folder of a listing, shallowest first, with its recorded hookpoint."""
    tree = _children(files)
    found: list[Member] = []
    frontier = [("", 0)]
    while frontier:
        folder, depth = frontier.pop(0)
        kind = _builtin_format(folder, tree)
        if kind is None and plugin_detect is not None and folder:
            kind = plugin_detect(folder)
        if kind is not None and folder:
            if fmt is None or kind == fmt:
                found.append(_member(kind, folder, read, to_source, load_fallback))
            continue
        if depth < MAX_DEPTH:
            subs = sorted(s for s in tree.get(folder, (set(), set()))[1] if not s.startswith("."))
            frontier += [(f"{folder}/{s}" if folder else s, depth + 1) for s in subs]
    return found


def _member(
    kind: str,
    folder: str,
    read: Callable[[str], dict | None],
    to_source: Callable[[str], str],
    load_fallback: bool,
) -> Member:
    source = to_source(folder)
    hp = _recorded_hookpoint(kind, folder, read)
    src = "metadata" if kind != "sparsify" else "folder name"
    if hp is None and load_fallback:
        hp = _loaded_hookpoint(source, kind)
        src = "metadata"
    if hp is None:
        hp = _name_hookpoint(folder.split("/")[-1])
        src = "folder name" if hp else "none"
    return Member(source, folder, kind, None if hp is None else str(hp), src)


def _single(source: str, kind: str) -> Family:
    """A single checkpoint; its hookpoint is read when asked (:func:`list_family`)."""
    return Family(source, True, (Member(source, "", kind, None, "none"),))


def scan_family(source: str | Path, fmt: str | None = None) -> Family:
    """What ``source`` is: a single checkpoint, or a family and its members (see module doc).

    A folder with no checkpoint is a family without members."""
    s = str(source)
    want = canonical_format(fmt) if fmt else None
    if s.startswith("hf://"):
        return _scan_hub(s, want)
    path = Path(s).expanduser()
    if not path.exists():
        from autointerp.bases.formats.sources import resolve_source

        resolve_source(s)  # raises the "does not exist" error
    kind = detect_any(path)
    if path.is_file() or kind is not None:
        return _single(s, kind or want or "")
    from autointerp.bases.registry import detect_plugin, plugins

    has_plugins = bool(plugins())
    members = _members(
        _listing_local(path),
        lambda rel: _read_local(path / rel),
        lambda rel: str(path / rel),
        fmt=want,
        plugin_detect=(lambda rel: detect_plugin(path / rel)) if has_plugins else None,
        load_fallback=True,
    )
    return Family(s, False, tuple(members))


def detect_any(path: Path) -> str | None:
    """The format of a checkpoint folder or file: built-in, else an installed plugin's."""
    from autointerp.bases.formats import detect_format
    from autointerp.bases.registry import detect_plugin

    return detect_format(path) or detect_plugin(path)


def _read_local(p: Path) -> dict | None:
    return read_json(p) if p.exists() else None


def _scan_hub(source: str, fmt: str | None) -> Family:
    """A hub source: the JSON configs (downloaded alone) and the repo's file listing (the
    hub's, or the cached snapshot's when offline)."""
    repo_id, sub, rev = parse_hf_source(source)
    root = hub_snapshot(source, [f"{sub}/*.json" if sub else "*.json"])
    files = _hub_files(repo_id, rev, root)
    prefix = f"{sub}/" if sub else ""
    files = {f[len(prefix) :] for f in files if f.startswith(prefix)}
    base = root / sub if sub else root
    suffix = f"@{rev}" if rev else ""

    def to_source(rel: str) -> str:
        inner = "/".join(p for p in (sub, rel) if p)
        return f"hf://{repo_id}/{inner}{suffix}"

    def read(rel: str) -> dict | None:
        p = base / rel
        return read_json(p) if p.exists() else None

    tree = _children(files)
    kind = _builtin_format("", tree)
    if kind is not None:
        return _single(source, kind)
    members = _members(files, read, to_source, fmt=fmt)
    return Family(source, False, tuple(members))


def _hub_files(repo_id: str, revision: str | None, snapshot: Path) -> set[str]:
    """The repo's file paths: the hub's listing, else (offline) the cached snapshot's."""
    from huggingface_hub import constants

    if not constants.HF_HUB_OFFLINE:
        try:
            from huggingface_hub import HfApi

            return set(HfApi().list_repo_files(repo_id, revision=revision))
        except Exception as e:  # offline or unreachable: what the cache holds
            log.info("hub listing of %s failed (%s); using the cached snapshot", repo_id, e)
    return {p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file()}


def _nonempty(fam: Family, fmt: str | None) -> Family:
    if not fam.members:
        what = f"{fmt} checkpoints" if fmt else "checkpoints"
        raise FamilyError(
            f"{fam.source}: a folder with no {what} (searched {MAX_DEPTH} folder levels for "
            "cfg.json + sae_weights.safetensors / sae.safetensors, ae.pt or "
            "checkpoints/ae_<step>.pt, autointerp.json); pass a checkpoint or a family folder"
        )
    return fam


# ----------------------------------------------------------------------------- public API


def _hookpoints_text(fam: Family) -> str:
    return ", ".join(m.label() for m in fam.members)


def list_family(path: str, fmt: str | None = None) -> dict[str, str]:
    """Canonical hookpoint -> member path of a family (a single checkpoint: its own
    hookpoint -> ``path``). Members recording no hookpoint are left out with a warning;
    two members for one hookpoint are a :class:`FamilyError` naming both."""
    fam = _nonempty(scan_family(path, fmt), fmt)
    if fam.single:
        m = fam.members[0]
        local = fetch_hf(str(path)) if str(path).startswith("hf://") else Path(path)
        hp = canonical_hookpoint(_loaded_hookpoint(str(local), m.format))
        if hp is None:
            raise FamilyError(f"{path}: a single checkpoint that records no hookpoint")
        return {hp: str(path)}
    out: dict[str, str] = {}
    for m in fam.members:
        if m.canonical is None:
            log.warning("%s: records no hookpoint; left out of the family", m.path)
            continue
        if m.canonical in out:
            raise _ambiguous(fam, m.canonical, [out[m.canonical], m.path])
        out[m.canonical] = m.path
    return out


def resolve_family_member(path: str, hookpoint: str, fmt: str | None = None) -> str:
    """The member of the family ``path`` whose metadata names ``hookpoint``; ``path``
    unchanged when it is a single checkpoint. No member, or two, is a :class:`FamilyError`
    (a :class:`ConfigError`) listing the family's hookpoints / naming both."""
    fam = _nonempty(scan_family(path, fmt), fmt)
    return str(path) if fam.single else _match(fam, hookpoint)


def _match(fam: Family, hookpoint: str) -> str:
    """The path of the one member recording ``hookpoint`` (else: named so exactly)."""
    hits = [m for m in fam.members if m.hookpoint and same_hookpoint(m.hookpoint, hookpoint)]
    if not hits:  # a folder named exactly as asked
        hits = [m for m in fam.members if m.rel.split("/")[-1] == hookpoint]
    if len(hits) > 1:
        raise _ambiguous(fam, canonical_hookpoint(hookpoint) or hookpoint, [m.path for m in hits])
    if not hits:
        raise FamilyError(
            f"{fam.source}: no checkpoint for hookpoint {hookpoint!r} "
            f"(= {canonical_hookpoint(hookpoint)}) in this family; the family's hookpoints: "
            f"{_hookpoints_text(fam)}"
        )
    return hits[0].path


def pick_member(source: str | Path, hookpoint: str | None, fmt: str | None = None) -> str:
    """What :func:`~autointerp.bases.checkpoints.load_checkpoint` loads for ``source``:
    ``source`` itself for a single checkpoint (or a path with no checkpoint, a missing path
    or an unknown format, left to the loader's errors); a family's member for
    ``hookpoint``; without a hookpoint, its only member (several: an error asking for one)."""
    s = str(source)
    if not s.startswith("hf://") and not Path(s).expanduser().is_dir():
        return s
    if fmt is not None and canonical_format(fmt) not in FORMATS:
        from autointerp.bases.registry import get_plugin

        if get_plugin(canonical_format(fmt)) is None:
            return s
    fam = scan_family(s, fmt)
    if fam.single or not fam.members:
        return s
    if hookpoint is not None:
        return _match(fam, hookpoint)
    if len(fam.members) == 1:
        return fam.members[0].path
    raise FamilyError(
        f"{s}: holds {len(fam.members)} checkpoints "
        f"({', '.join(m.rel for m in fam.members)}); choose one by passing its subfolder "
        "(path/NAME or hf://owner/repo/NAME) or the hookpoint (expected_hookpoint, the "
        f"suite's model.hookpoint or --hookpoint). Hookpoints: {_hookpoints_text(fam)}"
    )


def _ambiguous(fam: Family, hookpoint: str, paths: list[str]) -> FamilyError:
    return FamilyError(
        f"{fam.source}: {len(paths)} checkpoints record hookpoint {hookpoint!r}: "
        f"{' and '.join(paths)}; pass the one you mean as the path"
    )


def describe_family(fam: Family) -> dict[str, Any]:
    """A JSON-ready summary of a family for ``autointerp inspect``."""
    return {
        "source": fam.source,
        "family": True,
        "n_members": len(fam.members),
        "members": [
            {
                "hookpoint": m.canonical,
                "recorded": m.hookpoint,
                "from": m.hookpoint_from,
                "format": m.format,
                "path": m.path,
            }
            for m in fam.members
        ],
    }


__all__ = [
    "Family",
    "FamilyError",
    "Member",
    "describe_family",
    "list_family",
    "pick_member",
    "resolve_family_member",
    "scan_family",
]
