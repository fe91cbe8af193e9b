"""The run store: the schema version in the manifest, refusal of a newer layout, journals."""

from __future__ import annotations

import json

import pytest

from autointerp.errors import AutointerpError
from autointerp.run import SCHEMA_VERSION, RunStore


def test_manifest_carries_the_schema_version_and_a_newer_one_is_refused(tmp_path):
    store = RunStore(tmp_path / "run", tmp_path / "work")
    assert store.read_manifest() == {}
    store.check_schema()  # no manifest yet: fine
    store.write_manifest({"suite": "s"})
    m = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert m == {"suite": "s", "schema_version": SCHEMA_VERSION}
    store.check_schema()
    (tmp_path / "run" / "manifest.json").write_text(json.dumps({"schema_version": 99}))
    with pytest.raises(AutointerpError, match="newer autointerp .*schema 99"):
        store.check_schema()


def test_paths_and_journals(tmp_path):
    store = RunStore(tmp_path / "run", tmp_path / "work")
    assert store.stage_file("metrics", "abc", ".json") == tmp_path / "run/stages/metrics-abc.json"
    assert store.shared_file("metrics", "abc", ".json") == tmp_path / "work/stages/metrics-abc.json"
    j = store.journal("score-x.jsonl", "score")
    j.append([{"key": [1]}])
    assert store.journal("score-x.jsonl").read() == [{"key": [1]}]
    store.write_json(store.out("a", "b.json"), {"x": 1})
    store.copy(store.out("a", "b.json"), store.work("c.json"))
    assert json.loads((tmp_path / "work" / "c.json").read_text()) == {"x": 1}
    assert not list(tmp_path.rglob("*.tmp"))


def test_lock_holder_drops_temps_of_writes_killed_midway(tmp_path):
    """A process killed inside an atomic write leaves ``.<name>.<random>.tmp``; the next holder
    of the run's lock removes them, but not those of a nested run with its own lock."""
    from autointerp.journal import RunLock

    run = tmp_path / "run"
    (run / "stages").mkdir(parents=True)
    member = run / "blocks.0.hook_resid_post"
    member.mkdir()
    (member / ".lock").write_text("")
    stale = [run / ".progress.json.ab12.tmp", run / "stages" / ".ioi-1.json.cd34.tmp"]
    for p in stale:
        p.write_text("{")
    kept = [run / "notes.tmp", run / "stages" / "ioi-1.json", member / ".manifest.json.ef56.tmp"]
    for p in kept:
        p.write_text("x")
    with RunLock(run):
        assert not any(p.exists() for p in stale)
        assert all(p.exists() for p in kept)
