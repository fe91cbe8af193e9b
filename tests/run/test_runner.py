"""The runner on toy stages (seconds): resume, hash change, shared reuse across runs, force,
a journaled stage killed mid-run, the lock, the stage graph, async stages and teardown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from autointerp.errors import AutointerpError, ConfigError
from autointerp.run import (
    JSON,
    Artifact,
    Runner,
    RunStore,
    Stage,
    format_summary,
    order_stages,
    register_stage,
    registered_stages,
    unregister_stage,
)
from autointerp.run.stage import FileCodec

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Env:
    n: int = 4
    calls: dict[str, int] = field(default_factory=dict)
    fail_at: int | None = None

    def called(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1


def numbers(ctx, inputs):
    ctx.env.called("numbers")
    return list(range(ctx.env.n))


def total(ctx, inputs):
    ctx.env.called("total")
    return sum(inputs["numbers"])


def squares(ctx, inputs):
    """A journaled stage: one item per number, appended as each finishes."""
    ctx.env.called("squares")
    for x in inputs["numbers"]:
        if (x,) not in ctx.done:
            ctx.append([{"key": [x], "sq": x * x}])
    return {k[0]: r["sq"] for k, r in ctx.done.items()}


def toy_stages() -> list[Stage]:
    return [
        Stage("numbers", numbers, key=lambda ctx, i: {"n": ctx.env.n}, artifact=Artifact(JSON)),
        Stage(
            "total",
            total,
            deps=("numbers",),
            key=lambda ctx, i: {"numbers": ctx.upstream["numbers"]},
            artifact=Artifact(JSON),
        ),
        Stage(
            "squares",
            squares,
            deps=("numbers",),
            key=lambda ctx, i: {"numbers": ctx.upstream["numbers"]},
            journal=True,
        ),
    ]


def run(tmp_path: Path, env: Env, run_name: str = "r", **kw) -> Runner:
    store = RunStore(tmp_path / "results" / run_name, tmp_path / "work")
    r = Runner(toy_stages(), store, env, progress=False, **kw)
    r.run()
    return r


def statuses(r: Runner) -> dict[str, str]:
    return {row["stage"]: row["status"] for row in r.summary()}


def test_first_run_computes_and_a_rerun_resumes_everything(tmp_path):
    env = Env()
    r = run(tmp_path, env)
    assert r.values == {"numbers": [0, 1, 2, 3], "total": 6, "squares": {0: 0, 1: 1, 2: 4, 3: 9}}
    assert statuses(r) == {"numbers": "computed", "total": "computed", "squares": "computed (4)"}
    assert r.computed_anything()
    env2 = Env()
    r2 = run(tmp_path, env2)
    assert r2.values == r.values
    assert env2.calls == {"squares": 1}  # called with every item done: appends nothing
    assert statuses(r2) == {"numbers": "cached", "total": "cached", "squares": "cached (4)"}
    assert not r2.computed_anything()
    text = format_summary(r2.summary(), 0.5)
    assert text.splitlines()[0] == "stage times (this invocation):"
    assert "numbers" in text and "cached" in text and "total" in text.splitlines()[-1]


def test_a_changed_key_recomputes_and_keeps_the_old_outputs(tmp_path):
    run(tmp_path, Env(n=4))
    env = Env(n=5)
    r = run(tmp_path, env)
    assert r.values["total"] == 10 and env.calls == {"numbers": 1, "total": 1, "squares": 1}
    assert statuses(r)["squares"] == "computed (5)"
    stages = tmp_path / "results" / "r" / "stages"
    assert len(list(stages.glob("numbers-*.json"))) == 2
    assert len(list(stages.glob("squares-*.jsonl"))) == 2


def test_another_run_reuses_outputs_from_the_shared_cache(tmp_path):
    run(tmp_path, Env(), run_name="a")
    env = Env()
    r = run(tmp_path, env, run_name="b")
    assert env.calls == {"squares": 1}  # numbers and total: no compute
    st = statuses(r)
    assert st["numbers"] == st["total"] == "reused from another run"
    assert st["squares"] == "computed (4)"  # journals belong to their run
    # the reused output is copied into run b, byte for byte the same as run a's
    (got,) = (tmp_path / "results" / "b" / "stages").glob("numbers-*.json")
    (src,) = (tmp_path / "results" / "a" / "stages").glob("numbers-*.json")
    assert got.name == src.name and got.read_bytes() == src.read_bytes()
    env3 = Env()
    assert statuses(run(tmp_path, env3, run_name="b"))["numbers"] == "cached"


def test_force_redoes_a_stage_and_what_it_names(tmp_path):
    run(tmp_path, Env())
    env = Env()
    r = run(tmp_path, env, force=("numbers",))
    assert env.calls["numbers"] == 1 and "total" not in env.calls  # same hash downstream
    assert statuses(r)["numbers"] == "computed"
    env = Env()
    r = run(tmp_path, env, force=("squares",))
    assert statuses(r)["squares"] == "computed (4)"
    with pytest.raises(ConfigError, match=r"--force \['nope'\]: unknown stage; use one of"):
        run(tmp_path, Env(), force=("nope",))


def test_an_exception_mid_stage_keeps_the_finished_items(tmp_path):
    def flaky(ctx, inputs):
        for x in inputs["numbers"]:
            if (x,) in ctx.done:
                continue
            if x == ctx.env.fail_at:
                raise RuntimeError("killed")
            ctx.append([{"key": [x], "sq": x * x}])
        return len(ctx.done)

    stages = [
        toy_stages()[0],
        Stage("squares", flaky, deps=("numbers",), key=lambda c, i: 1, journal=True),
    ]
    store = RunStore(tmp_path / "r", tmp_path / "w")
    with pytest.raises(RuntimeError):
        Runner(stages, store, Env(fail_at=2), progress=False).run()
    r = Runner(stages, store, Env(), progress=False)
    r.run()
    assert r.values["squares"] == 4
    assert statuses(r)["squares"] == "computed 2, cached 2"


def slow_items(ctx, inputs):
    for x in range(40):
        if (x,) not in ctx.done:
            time.sleep(0.05)
            ctx.append([{"key": [x], "v": x}])
    return len(ctx.done)


def kill_stages() -> list[Stage]:
    return [
        Stage("numbers", numbers, key=lambda c, i: 1, artifact=Artifact(JSON)),
        Stage("slow", slow_items, deps=("numbers",), key=lambda c, i: 1, journal=True),
    ]


KILL_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from test_runner import Env, kill_stages
from autointerp.run import Runner, RunStore
Runner(kill_stages(), RunStore(sys.argv[1], sys.argv[2]), Env(), progress=False).run()
"""


def test_kill_9_mid_stage_then_rerun_resumes(tmp_path):
    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT.format(tests=str(Path(__file__).parent)))
    run_dir, work = tmp_path / "r", tmp_path / "w"
    p = subprocess.Popen(
        [sys.executable, str(script), str(run_dir), str(work)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    stages_dir = run_dir / "stages"
    deadline = time.time() + 60
    while time.time() < deadline:
        files = list(stages_dir.glob("slow-*.jsonl"))
        if files and len(files[0].read_bytes().splitlines()) >= 5:
            break
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)  # no cleanup runs
    p.wait()
    (f,) = stages_dir.glob("slow-*.jsonl")
    n_done = len(f.read_bytes().splitlines())
    assert 5 <= n_done < 40
    r = Runner(kill_stages(), RunStore(run_dir, work), Env(), progress=False)
    r.run()
    assert r.values["slow"] == 40
    rep = {row["stage"]: row for row in r.summary()}["slow"]
    assert rep["cached"] == n_done and rep["computed"] == 40 - n_done
    assert statuses(r)["numbers"] == "cached"


def test_a_second_runner_on_the_same_run_dir_is_refused(tmp_path):
    store = RunStore(tmp_path / "r", tmp_path / "w")
    with store.lock():
        with pytest.raises(AutointerpError, match=r"in use by another autointerp run \(pid"):
            Runner(toy_stages(), store, Env(), progress=False).run()
    Runner(toy_stages(), store, Env(), progress=False).run()  # released


def test_graph_errors_are_one_clear_message():
    a = Stage("a", numbers, deps=("b",))
    b = Stage("b", numbers, deps=("a",))
    with pytest.raises(ConfigError, match="depend on each other in a cycle"):
        order_stages([a, b])
    with pytest.raises(ConfigError, match="needs stage 'zz', which no stage provides"):
        order_stages([Stage("a", numbers, deps=("zz",))])
    with pytest.raises(ConfigError, match="two stages are named 'a'"):
        order_stages([Stage("a", numbers), Stage("a", numbers)])
    # dependency order, otherwise the order given
    names = [s.name for s in order_stages([Stage("x", numbers, deps=("y",)), Stage("y", numbers)])]
    assert names == ["y", "x"]


class TextCodec(FileCodec):
    suffix = ".txt"
    streams = True  # compute writes the file itself

    def save(self, path, value):  # pragma: no cover - streaming codecs do not save
        raise AssertionError

    def load(self, path):
        return path.read_text()


def test_streaming_codec_fixed_name_marker_async_compute_and_teardown(tmp_path):
    closed = []

    def write(ctx, inputs):
        ctx.path.parent.mkdir(parents=True, exist_ok=True)
        ctx.path.write_text(f"n={ctx.env.n}")
        return ctx.path.read_text()

    async def later(ctx, inputs):
        ctx.on_close(lambda: closed.append("sync"))

        async def aclose():
            closed.append("async")

        ctx.on_close(aclose)
        return inputs["file"].upper()

    def fixed(store, h):
        return store.out("fixed.txt")

    def per_item(ctx, inputs):
        return [
            ctx.cached(
                f"item-{x}",
                str(x),
                lambda x=x: {"x": x},
                Artifact(
                    JSON,
                    place=lambda s, h, x=x: s.out(f"items/{x}.json"),
                    marker=lambda s, x=x: s.stages / f"item-{x}.hash",
                ),
            )  # fmt: skip
            for x in range(3)
        ]

    stages = [
        Stage(
            "file",
            write,
            key=lambda c, i: c.env.n,
            artifact=Artifact(
                TextCodec(), fixed, marker=lambda s: s.stages / "file.hash", shared=False
            ),
        ),  # fmt: skip
        Stage("upper", later, deps=("file",)),
        Stage("items", per_item),
    ]
    store = RunStore(tmp_path / "r", tmp_path / "w")
    r = Runner(stages, store, Env(), progress=False)
    r.run()
    assert r.values["upper"] == "N=4" and closed == ["async", "sync"]
    assert r.values["items"] == [{"x": 0}, {"x": 1}, {"x": 2}]
    assert statuses(r)["items"] == "computed (3)" and statuses(r)["upper"] == "ran"
    r = Runner(stages, store, Env(n=7), progress=False)
    r.run()
    assert (tmp_path / "r" / "fixed.txt").read_text() == "n=7"
    assert statuses(r)["file"] == "computed"  # the marker named another hash
    assert statuses(r)["items"] == "cached (3)"


def test_a_stage_registered_from_outside_the_package(tmp_path):
    toy = Stage("toy-double", lambda ctx, i: 2, key=lambda c, i: 1, artifact=Artifact(JSON))
    register_stage(toy)
    try:
        assert toy in registered_stages()
        with pytest.raises(ValueError, match="already registered"):
            register_stage(Stage("toy-double", numbers))
        store = RunStore(tmp_path / "r", tmp_path / "w")
        r = Runner([*toy_stages(), *registered_stages()], store, Env(), progress=False)
        r.run()
        assert r.values["toy-double"] == 2
    finally:
        unregister_stage("toy-double")
    assert toy not in registered_stages()
