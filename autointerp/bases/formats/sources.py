"""Where a checkpoint comes from: a local path or ``hf://owner/repo[/sub][@rev]``."""

from __future__ import annotations

from pathlib import Path

from autointerp.bases.formats.common import fail


def parse_hf_source(source: str) -> tuple[str, str | None, str | None]:
    """``hf://owner/repo[/sub/folder][@revision]`` -> (repo_id, subfolder, revision)."""
    rest = source[len("hf://") :]
    revision = None
    if "@" in rest:
        rest, revision = rest.rsplit("@", 1)
        revision = revision or None
    parts = [p for p in rest.split("/") if p]
    if len(parts) < 2:
        raise fail(f"bad hub source {source!r}: expected hf://owner/repo[/subfolder][@revision]")
    repo_id = "/".join(parts[:2])
    sub = "/".join(parts[2:]) or None
    return repo_id, sub, revision


def hub_snapshot(source: str, allow_patterns: list[str] | None) -> Path:
    """The local snapshot folder (repo root) of a ``hf://`` source, holding the files that
    match ``allow_patterns`` (downloaded, or found in the local HF cache when offline)."""
    repo_id, _, revision = parse_hf_source(source)
    try:
        from huggingface_hub import snapshot_download

        local = snapshot_download(repo_id, revision=revision, allow_patterns=allow_patterns)
    except Exception as e:  # offline, DNS failure, 401/404, ...
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise fail(
            f"cannot fetch {source!r} from the Hugging Face Hub ({type(e).__name__}: {msg}). "
            "The hub is unreachable or offline (HF_HUB_OFFLINE) and the files are not in the "
            "local HF cache, or the repo/revision does not exist. Download the folder where "
            "there is network access and pass its local path instead"
        ) from None
    return Path(local)


def fetch_hf(source: str) -> Path:
    """Download (or find in the local HF cache) the files of a ``hf://`` source."""
    repo_id, sub, _ = parse_hf_source(source)
    local = hub_snapshot(source, [f"{sub}/*"] if sub else None)
    path = local / sub if sub else local
    if not path.exists():
        raise fail(f"{source!r}: subfolder {sub!r} not found in {repo_id}")
    return path


def resolve_source(source: str | Path) -> Path:
    """Local path for a source (``hf://`` fetched); a clear error when it does not exist."""
    s = str(source)
    if s.startswith("hf://"):
        return fetch_hf(s)
    p = Path(s).expanduser()
    if not p.exists():
        raise fail(
            f"checkpoint {s!r} does not exist (give a local folder/file or hf://owner/repo[/sub])"
        )
    return p
