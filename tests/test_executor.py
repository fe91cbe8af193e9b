"""Executors (autointerp.run.executor): the local one, failures named by member and stage,
the missing extra, and a tiny sweep under a local Ray cluster giving the local numbers."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from autointerp.config import suite_from_dict
from autointerp.errors import ConfigError
from autointerp.run.executor import JobFailed, Task, TaskFailed, make_executor

HAVE_RAY = importlib.util.find_spec("ray") is not None


def _boom(label: str) -> None:
    raise TaskFailed(label, "explain", "the LLM server went away")


def test_local_executor_waits_for_every_task_and_keeps_failures():
    ex = make_executor("local")
    assert not ex.parallel and ex.name == "local"
    out = ex.run_all(
        [Task("a", sum, ([1, 2],)), Task("b", _boom, ("b",)), Task("c", len, ("xyz",))]
    )
    assert out["a"] == 3 and out["c"] == 3  # the task after the failure still ran
    assert isinstance(out["b"], TaskFailed) and out["b"].stage == "explain"
    err = JobFailed([out["b"]], 3)
    assert "1 of 3 tasks failed" in str(err) and "b: failed in stage explain" in str(err)
    assert "rerun to resume" in str(err)


def test_executor_options_are_checked():
    with pytest.raises(ConfigError, match="unknown; use one of local, ray"):
        make_executor("dask")
    with pytest.raises(ConfigError, match="--address is for --executor ray"):
        make_executor("local", address="auto")
    s = suite_from_dict({"run": {"executor": "ray", "gpus_per_task": 1}})
    assert s.run.executor == "ray" and s.run.gpus_per_task == 1.0
    assert "run" not in s.model_dump()  # how a job runs never changes its config hash
    with pytest.raises(ConfigError, match="run.executor"):
        suite_from_dict({"run": {"executor": "slurm"}})


def test_local_path_never_imports_ray():
    code = (
        "import sys; from autointerp.pipeline import run_suite; import autointerp.sweep.run; "
        "from autointerp.run.executor import make_executor; make_executor('local').close(); "
        "print('ray' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_missing_extra_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what an install without the extra sees
    with pytest.raises(ConfigError, match=r"pip install 'autointerp\[ray\]'"):
        make_executor("ray")


def test_member_failure_names_member_and_stage(tmp_path, monkeypatch):
    """A member whose corpus file is missing fails in its ``tokens`` stage, for good (bad input
    is not retried), and the failure says so."""
    from autointerp.pipeline import SuiteRun
    from autointerp.sweep.run import run_member

    monkeypatch.setenv("AUTOINTERP_CACHE_DIR", str(tmp_path / "cache"))
    s = suite_from_dict({"corpus": {"source": str(tmp_path / "missing.txt")}})
    kw = {"run_dir": tmp_path / "m", "work_dir": tmp_path / "w", "progress": False}
    with pytest.raises(TaskFailed) as e:
        run_member("member:x", SuiteRun, s, kw)
    assert e.value.label == "member:x" and e.value.stage == "tokens"
    assert not e.value.retriable and "missing.txt" in e.value.message


# --------------------------------------------------------------------------- under Ray

#: timings, paths; progress.json: the progress view (clocks, tasks)
SKIP = ["manifest.json", "sweep.json", ".lock", "leaderboard.html", "progress.json"]
#: what differs between two runs of the same job: clocks and ids; and LLM usage, since which
#: member pays for a prompt that two members share (the LLM cache is shared) and which hits
#: the cache depends on the order the members ran in
CLOCKS = {"seconds", "seconds_per_basis", "seconds_prepare", "latency_s", "timings", "wall_time_s",
          "datetime_epoch_millis", "eval_id"}  # fmt: skip
USAGE = {
    "cache_hit",
    "prompt_tokens",
    "cached_tokens",
    "completion_tokens",
    "cost_usd",
    "llm_tokens",
    "llm_cost_usd",
}  # the headline's usage fields (csv / json)
USAGE_MD = {"wall s", "prompt tok", "compl tok", "cost $", "cost"}  # "cost": the headline's
#: floats: the in-process LLM's logprobs depend at ~1e-6 on which prompts share a batch, and a
#: pooled correlation over a few dozen tokens moves by up to ~1e-4 with them
REL, ABS = 1e-3, 1e-4
NUM = re.compile(r"-?\d+\.?\d*(?:e-?\d+)?")


def _files(root: Path) -> dict[str, Path]:
    return {
        str(p.relative_to(root)): p
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in SKIP and not p.name.startswith(".")
    }


def _same_json(a, b, where: str) -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), where
        for k in a:
            if k not in CLOCKS | USAGE:
                _same_json(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same_json(x, y, f"{where}[{i}]")
    elif isinstance(a, str) and isinstance(b, str) and a[:1] in "{[" and a != b:
        _same_json(json.loads(a), json.loads(b), where)  # a JSON column (scores' extra)
    elif isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=REL, abs=ABS, nan_ok=True), where
    elif isinstance(a, str) and isinstance(b, str):  # numbers in text: to their last digit
        _same_cell(a, b, where)
    else:
        assert a == b, where


def _rows(p: Path) -> list[dict]:
    from autointerp.journal import Journal

    if p.parent.name == "stages":  # checksummed journals
        raw = Journal(p).read()
    else:  # records/<basis>.jsonl: plain JSON lines
        raw = [json.loads(x) for x in p.read_text().splitlines() if x.strip()]
    drop = CLOCKS | USAGE | ({"kind"} if p.name == "llm_calls.jsonl" else set())  # kind: hit
    rows = [{k: v for k, v in r.items() if k not in drop} for r in raw]
    return sorted(rows, key=lambda r: json.dumps(r, sort_keys=True))


def _table(p: Path) -> list[list[str]]:
    """A markdown page's lines split on ``|``, the LLM usage and wall-time columns blanked."""
    out, drop = [], []
    for line in p.read_text().splitlines():
        cells = [c.strip() for c in line.split("|")]
        if USAGE_MD & set(cells):
            drop = [i for i, c in enumerate(cells) if c in USAGE_MD]
        elif line.startswith("|"):
            cells = ["" if i in drop else c for i, c in enumerate(cells)]
        out.append(cells)
    return out


def _same_cell(a: str, b: str, where: str) -> None:
    """The same text, and numbers equal to one unit of the last digit shown."""
    if a == b:  # equal text (also hashes such as `d0fb2e258898`, which hold no numbers)
        return
    assert NUM.sub("#", a) == NUM.sub("#", b), (where, a, b)
    for x, y in zip(NUM.findall(a), NUM.findall(b), strict=True):
        digits = len(x.split(".")[1]) if "." in x and "e" not in x else 6
        assert abs(float(x) - float(y)) <= 10.0**-digits + ABS, (where, a, b)


def _by_key(df: pl.DataFrame, cols: list[str]) -> list[dict]:
    """``df``'s rows (``cols`` only), ordered by their cells other than floats."""
    rows = df.select(cols).to_dicts()

    def key(r: dict) -> str:
        return json.dumps({k: v for k, v in r.items() if not isinstance(v, float)},
                          sort_keys=True, default=str)  # fmt: skip

    return sorted(rows, key=key)


def assert_same_results(r1: Path, r2: Path) -> None:
    """Every stage file and leaderboard of two runs: the same names and the same numbers
    (floats to 1e-5: the two processes may use different thread counts)."""
    f1, f2 = _files(r1), _files(r2)
    assert sorted(f1) == sorted(f2)
    for name, p in f1.items():
        q = f2[name]
        if p.suffix == ".json":
            _same_json(json.loads(p.read_text()), json.loads(q.read_text()), name)
        elif p.suffix == ".jsonl":  # journals: the same rows, maybe appended in another order
            _same_json(_rows(p), _rows(q), name)
        elif p.suffix == ".npy":
            np.testing.assert_allclose(np.load(p), np.load(q), rtol=REL, atol=ABS)
        elif p.suffix in (".parquet", ".csv"):
            read = pl.read_parquet if p.suffix == ".parquet" else pl.read_csv
            a, b = read(p), read(q)
            # the same columns (metrics.parquet's order varies with the process's hash seed)
            assert set(a.columns) == set(b.columns) and a.height == b.height, name
            keep = sorted(set(a.columns) - CLOCKS - USAGE)
            # the same rows: a table made from a journal lists its items in the order they
            # finished (concurrent LLM calls, per-basis tasks), so rows are matched by their
            # non-float cells
            _same_json(_by_key(a, keep), _by_key(b, keep), name)
        elif p.suffix == ".md":
            ta, tb = _table(p), _table(q)
            assert len(ta) == len(tb), name
            for la, lb in zip(ta, tb, strict=True):
                assert len(la) == len(lb), name
                for ca, cb in zip(la, lb, strict=True):
                    _same_cell(ca, cb, name)
        elif p.suffix in (".hash", ".txt"):
            assert p.read_text() == q.read_text(), name


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance (2 CPUs, loopback only) for the module: Ray starts slowly."""
    if not HAVE_RAY:
        pytest.skip("ray is not installed (pip install 'autointerp[ray]')")
    import ray

    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1")
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_tiny_sweep_under_ray_equals_local(tmp_path, monkeypatch, local_ray):
    from test_sweep import _tiny_dict

    from autointerp.pipeline import run_suite

    d = _tiny_dict(tmp_path)
    roots = {}
    for ex in ("local", "ray"):
        monkeypatch.setenv("AUTOINTERP_CACHE_DIR", str(tmp_path / f"cache-{ex}"))
        rd = run_suite(
            suite_from_dict(d),
            results_root=tmp_path / f"res-{ex}",
            run_name="r",
            progress=False,
            executor=ex,
        )
        roots[ex] = rd
    sweep = json.loads((roots["ray"] / "sweep.json").read_text())
    status = {r["stage"]: r["status"] for r in sweep["stages"]}
    assert all(status[f"member:{h}"] == "computed" for h in d["model"]["hookpoints"]), status
    assert set(sweep["member_stages"]) == set(d["model"]["hookpoints"])
    assert_same_results(roots["local"], roots["ray"])
    assert (roots["ray"] / "leaderboard.csv").is_file()
    # one progress view: the root (its members as tasks), then each member with its stages
    from autointerp.run.progress import job_status

    runs = job_status(roots["ray"])
    assert [r["state"] for r in runs] == ["done"] * 3, runs
    assert {k: v.split(" ")[0] for k, v in runs[0]["tasks"].items()} == {
        f"member:{h}": "done" for h in d["model"]["hookpoints"]}  # fmt: skip
    assert all(set(r["stages"].values()) != {"pending"} for r in runs[1:])
    assert local_ray.is_initialized()  # the executor leaves a cluster it did not start

    # a rerun under Ray computes nothing and changes nothing
    run_suite(suite_from_dict(d), results_root=tmp_path / "res-ray", run_name="r",
              progress=False, executor="ray")  # fmt: skip
    again = json.loads((roots["ray"] / "sweep.json").read_text())
    status = {r["stage"]: r["status"] for r in again["stages"]}
    assert all(status[f"member:{h}"] == "cached" for h in d["model"]["hookpoints"]), status
    assert_same_results(roots["local"], roots["ray"])


def _kill_member_when_busy(member_dir: Path, killed: list[int], stop) -> None:
    """SIGKILL the Ray worker running ``member_dir``'s member once it has written a few stage
    files (mid-run); its process title is ``ray::member:<hookpoint>``."""
    import psutil

    tag = f"ray::member:{member_dir.name}"
    while not stop.is_set() and not killed:
        st = member_dir / "stages"
        if st.is_dir() and len(list(st.iterdir())) >= 3:
            for p in psutil.process_iter(["cmdline"]):
                if any(tag in c for c in p.info["cmdline"] or ()):
                    p.kill()
                    killed.append(p.pid)
        stop.wait(0.02)


@pytest.mark.slow
def test_killed_worker_fails_its_member_only_and_a_rerun_matches_local(
    tmp_path, monkeypatch, local_ray
):
    import threading

    from test_sweep import _tiny_dict

    from autointerp.pipeline import SuiteRun, run_suite
    from autointerp.run.ray_executor import RayExecutor
    from autointerp.sweep.run import SweepRun

    d = _tiny_dict(tmp_path)
    hooks = d["model"]["hookpoints"]
    monkeypatch.setenv("AUTOINTERP_CACHE_DIR", str(tmp_path / "cache-local"))
    ref = run_suite(suite_from_dict(d), results_root=tmp_path / "res-local", run_name="r",
                    progress=False)  # fmt: skip
    monkeypatch.setenv("AUTOINTERP_CACHE_DIR", str(tmp_path / "cache-ray"))
    root = tmp_path / "res-ray" / d["name"] / "r"
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=_kill_member_when_busy, args=(root / hooks[1], killed, stop))
    killer.start()
    ex = RayExecutor(max_retries=0)  # no retry: the member fails for good
    try:
        run = SweepRun(suite_from_dict(d), member_run=SuiteRun, results_root=tmp_path / "res-ray",
                       run_name="r", progress=False, executor=ex)  # fmt: skip
        with pytest.raises(JobFailed) as e:
            run.run()
    finally:
        stop.set()
        killer.join()
    assert killed, "the member's worker was never seen running"
    msg = str(e.value)
    assert "1 of 2 tasks failed" in msg and f"member:{hooks[1]}: failed" in msg, msg
    assert (root / hooks[0] / "manifest.json").is_file()  # the other member finished, kept
    assert not (root / hooks[1] / "manifest.json").exists()
    # the rerun (retries on) runs the killed member again from what it had written
    run_suite(suite_from_dict(d), results_root=tmp_path / "res-ray", run_name="r",
              progress=False, executor="ray")  # fmt: skip
    sweep = json.loads((root / "sweep.json").read_text())
    status = {r["stage"]: r["status"] for r in sweep["stages"]}
    assert status[f"member:{hooks[0]}"] == "cached" and status[f"member:{hooks[1]}"] == "computed"
    assert_same_results(ref, root)


def test_run_section_survives_set_overrides(tmp_path):
    """``--set`` keeps a suite's ``[run]`` section and can change it."""
    from autointerp.commands import with_overrides
    from autointerp.config import load_suite

    toml = tmp_path / "s.toml"
    toml.write_text('[run]\nexecutor = "ray"\naddress = "auto"\n')
    s = with_overrides(load_suite(toml), ["run.gpus_per_task=1", "records.n_features=3"], "s")
    assert s.run.executor == "ray" and s.run.address == "auto" and s.run.gpus_per_task == 1.0
    assert s.records.n_features == 3


@pytest.mark.slow
def test_checkpoint_family_under_ray_equals_local(tmp_path, monkeypatch, local_ray):
    """A family (one native SAE checkpoint per hookpoint under one folder) scored as a sweep:
    each member loads its own checkpoint; the Ray run gives the local numbers."""
    import torch
    from test_sweep import _tiny_dict

    from autointerp.bases.formats.native import save_native
    from autointerp.bases.sae import sae_from_tensors
    from autointerp.pipeline import run_suite

    d = _tiny_dict(tmp_path)
    fam = tmp_path / "family"
    for i, hook in enumerate(d["model"]["hookpoints"]):
        g = torch.Generator().manual_seed(40 + i)
        w = {"W_enc": torch.randn(32, 48, generator=g) * 0.5,
             "W_dec": torch.randn(48, 32, generator=g) * 0.3,
             "b_enc": torch.randn(48, generator=g) * 0.1, "b_dec": torch.zeros(32)}  # fmt: skip
        sae = sae_from_tensors(w, {"architecture": "standard"}, name=f"s{i}")
        save_native(sae, fam / f"sae-{i}", hookpoint=hook, model="tiny-llama")
    d["bases"] = [{"kind": "sae", "name": "fam", "path": str(fam), "allow_mismatch": True},
                  {"kind": "random"}]  # fmt: skip
    roots = {}
    for ex in ("local", "ray"):
        monkeypatch.setenv("AUTOINTERP_CACHE_DIR", str(tmp_path / f"cache-{ex}"))
        roots[ex] = run_suite(suite_from_dict(d), results_root=tmp_path / f"res-{ex}",
                              run_name="r", progress=False, executor=ex)  # fmt: skip
    for i, hook in enumerate(d["model"]["hookpoints"]):
        suite = json.loads((roots["ray"] / hook / "suite.json").read_text())
        assert suite["bases"][0]["path"] == str(fam / f"sae-{i}")  # its own member
    assert_same_results(roots["local"], roots["ray"])
