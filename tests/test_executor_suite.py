"""Per-basis items of one suite as executor tasks (autointerp.run.remote) and the progress view
(autointerp.run.progress): a tiny single-hookpoint suite under a local Ray instance gives the
local executor's stage files and leaderboard; a worker killed mid-item fails that item only,
named with its stage, and the rerun gives the local results."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from test_executor import HAVE_RAY, assert_same_results

from autointerp.config import suite_from_dict
from autointerp.errors import AutointerpError
from autointerp.run import JSON, Artifact, Runner, RunStore, Stage
from autointerp.run.executor import JobFailed, make_executor
from autointerp.run.progress import format_status, job_status, read_progress

# --------------------------------------------------------------------------- no Ray


def _one(ctx, inputs):
    return 1


def _boom(ctx, inputs):
    raise AutointerpError("the corpus file went away")


def test_progress_follows_stages_and_names_the_failing_one(tmp_path, capsys):
    """Every run writes progress.json as it goes: each stage's status, how it ended; a
    failure names its stage and error; ``autointerp status`` prints it."""
    store = RunStore(tmp_path / "run", tmp_path / "work")
    a = Stage("a", _one, key=lambda c, i: {"a": 1}, artifact=Artifact(JSON))
    b = Stage("b", _boom, deps=("a",))
    with pytest.raises(AutointerpError):
        Runner([a, b], store, progress=False).run()
    st = read_progress(store.run_dir)
    assert st["state"] == "failed" and st["stage"] == "b", st
    assert st["stages"] == {"a": "computed", "b": "running"}
    assert "the corpus file went away" in st["error"]
    from autointerp.cli import main

    assert main(["status", str(store.run_dir)]) == 0  # `autointerp status RUN_DIR`
    text = capsys.readouterr().out
    assert "run: failed, 1/2 stages" in text and "error in stage b" in text, text
    Runner([a], store, progress=False).run()  # the same directory, now finishing
    st = read_progress(store.run_dir)
    assert st["state"] == "done" and st["stages"] == {"a": "cached"} and "error" not in st
    assert [s["unit"] for s in job_status(tmp_path)] == ["run"]  # the folder above: its runs
    assert "no progress.json" in format_status(tmp_path / "work")


def test_local_executor_prefetches_nothing(tmp_path):
    """Under the local executor a stage's per-basis items are computed by its own loop, in
    this process (ctx.parallel is False; prefetch is a no-op)."""
    seen = {}

    def stage(ctx, inputs):
        seen["parallel"] = ctx.parallel
        ctx.prefetch(_one, ["x", "y"])  # would fail if sent anywhere: _one takes 2 args
        return 2

    store = RunStore(tmp_path / "run", tmp_path / "work")
    Runner([Stage("s", stage)], store, progress=False, executor=make_executor("local")).run()
    assert seen == {"parallel": False}


def _square_plus(ctx, inputs, item, shared):
    return item * item + shared, ctx.stage.name


def test_local_map_runs_each_item_here_in_order(tmp_path):
    """``ctx.map`` under the local executor: ``fn(ctx, inputs, item, shared)`` for each item,
    in order, in this process (a causal stage's local loop)."""
    seen = {}

    def stage(ctx, inputs):
        seen["values"] = ctx.map(_square_plus, [3, 1, 2], shared=10, gpu=True)
        return 0

    store = RunStore(tmp_path / "run", tmp_path / "work")
    Runner([Stage("s", stage)], store, progress=False, executor=make_executor("local")).run()
    assert seen["values"] == [(19, "s"), (11, "s"), (14, "s")]
    assert read_progress(store.run_dir)["tasks"] == {}  # nothing was sent anywhere


def test_ioi_states_ship_from_the_cpu_and_land_on_the_workers_device():
    """The IOI states go to workers as CPU tensors; those that were on the model's device go
    back to the worker's (here the ``meta`` device stands in for a worker's GPU), the others
    stay on the CPU; on a CPU-only driver nothing is copied."""
    import numpy as np
    import torch

    from autointerp.causal.patching import Group, IOIData
    from autointerp.stages.ioi import from_host, to_host

    t = torch.zeros(2, 3)
    g = Group(np.arange(2), t.long(), t.long(), t.bool(), t, t + 1, t, t, grad_kl=t + 2)
    data = IOIData([], [g], 0, np.zeros(2), np.zeros(2))
    shipped, moved = to_host(data)
    assert shipped is data and moved == set()  # all on the CPU already: the same object
    landed = from_host((data, {(0, "x_clean"), (0, "grad_kl")}), torch.device("meta"))
    lg = landed.groups[0]
    assert lg.x_clean.device.type == "meta" and lg.grad_kl.device.type == "meta"
    assert lg.x_cf is g.x_cf and lg.clean is g.clean and landed.pairs is data.pairs
    assert data.groups[0] is g and g.x_clean.device.type == "cpu"  # the original untouched


def test_llm_items_leave_the_driver_only_for_http_endpoints_without_a_cost_cap():
    """The LLM stages' per-basis tasks: only under a parallel executor, with every role the
    stage uses an HTTP endpoint (an in-process model would load in each worker) and no
    --max-cost (one ledger counts every request against the cap)."""
    from types import SimpleNamespace

    from autointerp.stages.llm_items import by_basis

    http = {"backend": "openai", "model": "m", "base_url": "http://127.0.0.1:1/v1"}
    local = {"backend": "transformers", "model": "tiny"}

    def ctx(parallel=True, max_cost=None, **roles):
        suite = suite_from_dict({"llm": roles})
        return SimpleNamespace(parallel=parallel, env=SimpleNamespace(max_cost=max_cost,
                                                                      suite=suite))  # fmt: skip

    assert by_basis(ctx(explainer=http), ["explainer"])
    assert not by_basis(ctx(parallel=False, explainer=http), ["explainer"])
    assert not by_basis(ctx(max_cost=1.0, explainer=http), ["explainer"])
    assert not by_basis(ctx(explainer=http, simulator=local), ["explainer", "simulator"])
    assert by_basis(ctx(explainer=http, simulator=local), ["explainer"])


# --------------------------------------------------------------------------- under Ray


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray instance (2 CPUs, loopback only) for the module: Ray starts slowly. It
    declares one logical GPU (none is needed): subject-model items ask for it and get its id,
    fits do not; torch in a task sees CUDA only where the host has it."""
    if not HAVE_RAY:
        pytest.skip("ray is not installed (pip install 'autointerp[ray]')")
    import ray

    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, _node_ip_address="127.0.0.1")
    yield ray
    ray.shutdown()


def _suite_dict(tmp_path: Path, llm_url: str | None = None) -> dict:
    """The tiny sweep's suite at one hookpoint, its subject model the word-level one (single-
    token names: the IOI stage runs, with its greedy curve and re-ranked replicates);
    ``llm_url``: every LLM role at that OpenAI-compatible server, explanations by LLM."""
    from causal_tiny import tiny_word_model
    from test_sweep import HOOKS, _tiny_dict

    d = _tiny_dict(tmp_path)  # its LLMs: the character-level tiny model
    words = tmp_path / "words"
    if not words.exists():
        sm = tiny_word_model()
        sm.model.save_pretrained(words)
        sm.tokenizer.save_pretrained(words)
    text = tmp_path / "words.txt"
    text.write_text("The cat sat on the mat . A dog ran to 12 red doors . " * 1600)
    d["name"] = "tinysuite"
    d["model"] = {"name": str(words), "hookpoint": HOOKS[1]}
    d["corpus"]["source"] = str(text)
    d["causal"] = {
        "ioi": {"n_pairs": 8, "ks": [1, 4], "greedy": True, "greedy_thresholds": 4,
                "ranking_bootstrap": 2},
        "attribution": {"n_tokens": 64},
    }  # fmt: skip
    # metrics items long enough (one row per pass) for the kill test's watcher to catch one
    # running on a loaded host: on 64 tokens in one batch an item ends before it is seen
    d["corpus"]["n_tokens"] = 16384
    d["metrics"] = {"n_tokens": 4096, "ablations": ["zero"], "batch_size": 1}
    if llm_url is not None:
        llm = {"backend": "openai", "model": "fault", "base_url": llm_url, "max_concurrency": 4}
        d["llm"] = {"explainer": llm, "simulator": llm, "scorer": llm}
        d["explain"] = {"style": "compact"}
    return d


@pytest.fixture(scope="module")
def llm_server():
    """A real OpenAI-compatible HTTP server on loopback (deterministic answers, echo
    logprobs): every LLM role of the module's suite, so the LLM stages' items are tasks."""
    from autointerp.llm.faultserver import FaultServer

    srv = FaultServer(latency_s=0.0).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def local_ref(tmp_path_factory, llm_server):
    """The tiny suite run by the local executor (the reference), once for the module."""
    from autointerp.pipeline import run_suite

    tmp = tmp_path_factory.mktemp("suite")
    d = _suite_dict(tmp, llm_server.url)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUTOINTERP_CACHE_DIR", str(tmp / "cache-local"))
        rd = run_suite(suite_from_dict(d), results_root=tmp / "res-local", run_name="r",
                       progress=False, executor="local")  # fmt: skip
    return d, rd


def _statuses(rd: Path) -> dict[str, str]:
    m = json.loads((rd / "manifest.json").read_text())
    return {r["stage"]: r["status"] for r in m["stages"]}


#: stages whose per-basis items are tasks under Ray (density: those the fits did not make)
ITEMS = ("density", "metrics", "records")
#: stages that keep one value for every basis, each basis's work a task (StageContext.map)
MAPPED = ("ioi", "output")
#: the stages whose tasks run the subject model: each asks for a GPU
GPU_STAGES = ("metrics", "absorption", "ioi", "output")


@pytest.mark.slow
def test_single_suite_under_ray_equals_local(tmp_path, monkeypatch, ray_session, local_ref):
    from autointerp.pipeline import run_suite

    d, ref = local_ref
    monkeypatch.setenv("AUTOINTERP_CACHE_DIR", str(tmp_path / "cache-ray"))
    kw = {"results_root": tmp_path / "res-ray", "run_name": "r", "progress": False}
    rd = run_suite(suite_from_dict(d), executor="ray", **kw)
    assert_same_results(ref, rd)
    names = [b.get("name", b["kind"]) for b in d["bases"]]
    prog = read_progress(rd)
    assert prog["state"] == "done", prog
    tasks = prog["tasks"]
    assert all(v.startswith("done") for v in tasks.values()), tasks
    for stage in ("metrics", "records", "output", "explain", "score"):  # a task per basis
        assert {t for t in tasks if t.startswith(f"{stage}:")} == {f"{stage}:{n}" for n in names}
    # IOI: every basis and the PCA's full rotation, each a task on the shared IOI states
    ioi = {f"ioi:{n}" for n in [*names, "pca-full"]}
    assert {t for t in tasks if t.startswith("ioi:")} == ioi
    # resources: subject-model tasks asked for the (logical) GPU and got its id; the fits did
    # not; the device each chose is CUDA only where torch sees one
    import torch

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    for t, v in tasks.items():
        if t.split(":")[0] in GPU_STAGES:
            assert v.startswith(f"done on {dev}") and "(GPU 0)" in v, (t, v)
        else:
            assert v.startswith("done on cpu") and "GPU" not in v, (t, v)
    cols = json.loads(next((rd / "stages").glob("ioi-*.json")).read_text())
    assert cols["rows"]["pca"]["ioi_kl_k1"]["n"] == 8  # computed, not undefined
    assert set(cols["extra"]["ranking_bootstrap_cost"]["states"]) == {t[4:] for t in ioi}
    # densities: those the random null's fit (matched to the others) did not make already
    assert {t for t in tasks if t.startswith("density:")} == {"density:random"}, tasks
    # the fits: PCA and neurons (one wave), then the random null; the SAE trains here
    assert {t for t in tasks if t.startswith("bases:")} == {
        "bases:pca", "bases:neurons", "bases:random"}  # fmt: skip
    st, st_ref = _statuses(rd), _statuses(ref)
    assert st["metrics"] == st["records"] == "computed (4)", st  # tasks' items count computed
    assert st["bases"] == st_ref["bases"], (st, st_ref)
    assert {k: v for k, v in st.items() if k not in ITEMS} == {
        k: v for k, v in st_ref.items() if k not in ITEMS}  # fmt: skip
    assert ray_session.is_initialized()  # left running: the executor did not start it

    # a rerun sends no task and changes nothing
    rd2 = run_suite(suite_from_dict(d), executor="ray", **kw)
    assert rd2 == rd and read_progress(rd)["tasks"] == {}
    assert all(v.startswith("cached") for k, v in _statuses(rd).items() if k in ITEMS)
    assert_same_results(ref, rd)


def _kill_when_running(tag: str, killed: list[int], stop: threading.Event) -> None:
    """SIGKILL the Ray worker whose process title is ``tag`` (``ray::<task label>``)."""
    import psutil

    while not stop.is_set() and not killed:
        for p in psutil.process_iter(["cmdline"]):
            try:
                if any(tag in c for c in p.info["cmdline"] or ()):
                    p.kill()
                    killed.append(p.pid)
            except psutil.Error:
                pass
        stop.wait(0.02)


@pytest.mark.slow
def test_killed_item_fails_alone_and_a_rerun_matches_local(
    tmp_path, monkeypatch, ray_session, local_ref
):
    from autointerp.pipeline import SuiteRun, run_suite
    from autointerp.run.ray_executor import RayExecutor

    d, ref = local_ref
    monkeypatch.setenv("AUTOINTERP_CACHE_DIR", str(tmp_path / "cache-ray"))
    kw = {"results_root": tmp_path / "res-ray", "run_name": "r", "progress": False}
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=_kill_when_running, args=("ray::metrics:pca", killed, stop))
    killer.start()
    try:
        run = SuiteRun(suite_from_dict(d), executor=RayExecutor(max_retries=0), **kw)
        with pytest.raises(JobFailed) as e:
            run.run()
    finally:
        stop.set()
        killer.join()
    assert killed, "the item's worker was never seen running"
    msg = str(e.value)
    assert "1 of 4 tasks failed" in msg and "metrics:pca: failed in stage metrics" in msg, msg
    rd = run.store.run_dir
    kept = sorted(p.name.split("-")[1] for p in (rd / "stages").glob("metrics-*.json"))
    assert kept == ["neurons", "random", "sae"], kept  # the other items finished: kept
    prog = read_progress(rd)
    assert prog["state"] == "failed" and prog["stage"] == "metrics", prog
    assert prog["tasks"]["metrics:pca"].startswith("failed") and "JobFailed" in prog["error"]
    assert "metrics:pca: failed" in format_status(rd)

    # the rerun (Ray's retries on) makes the killed item only, and matches the local run
    assert run_suite(suite_from_dict(d), executor="ray", **kw) == rd
    assert _statuses(rd)["metrics"] == "computed 1, cached 3"
    assert [t for t in read_progress(rd)["tasks"] if t.startswith("metrics:")] == ["metrics:pca"]
    assert_same_results(ref, rd)
