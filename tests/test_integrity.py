"""Results integrity (issue 11): each defect reproduced, then shown held.

Torn and corrupt result lines, two runs on one results dir, unique temp names, unsafe names,
integer checkpoint weights, out-of-range suite numbers, non-UTF-8 suites, a corrupt response
cache, a truncated activation cache, a full disk, and a 401 from the LLM server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from autointerp.config import Suite, load_suite, suite_from_dict
from autointerp.errors import AutointerpError, CheckpointError, ConfigError
from autointerp.journal import Journal, JournalError, RunLock, encode_line
from autointerp.pipeline import SuiteRun
from tests.conftest import save_tiny_files

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ torn / corrupt lines


def test_torn_last_line_is_reported_cut_and_never_glued(tmp_path, caplog):
    j = Journal(tmp_path / "s.jsonl", "score")
    j.append([{"key": [1], "v": 1}, {"key": [2], "v": 2}])
    with j.path.open("ab") as f:  # a kill mid-write leaves half a line
        f.write(encode_line({"key": [3], "v": 3})[:9])
    assert [r["key"] for r in j.read()] == [[1], [2]]
    assert j.torn_bytes == 9 and "torn" in caplog.text and str(j.path) in caplog.text
    j.append([{"key": [3], "v": 3}])  # the redo lands on a clean line of its own
    assert [r["key"] for r in Journal(j.path).read()] == [[1], [2], [3]]


def test_a_corrupt_line_is_an_error_naming_file_and_line(tmp_path):
    j = Journal(tmp_path / "s.jsonl", "score")
    j.append([{"key": [1]}, {"key": [2]}, {"key": [3]}])
    lines = j.path.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b'"key"', b'"kez"')  # a flipped byte: checksum fails
    j.path.write_bytes(b"".join(lines))
    with pytest.raises(JournalError, match=r"s\.jsonl: line 2 is corrupt.*--force score"):
        j.read()
    j.path.write_bytes(b'{"key": [1]}\n')  # a line without checksum (e.g. hand-edited)
    with pytest.raises(JournalError, match="line 1"):
        j.read()


# ------------------------------------------------------------------ one run per directory


def test_second_run_on_the_same_results_dir_is_refused(tmp_path):
    suite = Suite(name="lock")
    run = SuiteRun(suite, results_root=tmp_path, run_name="r", work_dir=tmp_path / "w")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from autointerp.journal import RunLock; "
            f"RunLock({str(run.paths.run_dir)!r}).acquire(); print('held', flush=True); "
            "time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        cwd=REPO,
    )
    try:
        assert holder.stdout.readline().strip() == b"held"
        with pytest.raises(AutointerpError, match=rf"in use by another autointerp run \(pid "
                           rf"{holder.pid}\).*--run NAME"):  # fmt: skip
            run.run()
    finally:
        holder.kill()
        holder.wait()
    with RunLock(run.paths.run_dir):  # released when its holder died
        pass


def test_concurrent_activation_caches_use_unique_temp_names(tmp_path):
    """Two processes caching the same activations at once (as two runs from scratch do)."""
    code = (
        "import sys, numpy as np\n"
        "from tests.conftest import make_tiny_model\n"
        "from autointerp.activations import cache_activations\n"
        "sm = make_tiny_model()\n"
        "tok = np.random.default_rng(0).integers(3, 90, size=(300, 64)).astype(np.int32)\n"
        "a = cache_activations(sm, sm.hookpoint('blocks.1.hook_resid_post'), tok, "
        "sys.argv[1], progress=False)\n"
        "print(float(np.asarray(a).sum()))\n"
    )
    target = str(tmp_path / "acts.npy")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, target],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e[-1500:] for _, e in outs]
    assert outs[0][0] == outs[1][0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["acts.npy"]  # no temp left behind


# ------------------------------------------------------------------ names and numbers


@pytest.mark.parametrize(
    "patch,field",
    [
        ({"name": "../../x"}, "name"),
        ({"bases": [{"kind": "pca", "name": "../evil", "l0": 4}]}, "bases.0.name"),
        ({"bases": [{"kind": "pca", "name": "a/b", "l0": 4}]}, "bases.0.name"),
    ],
)
def test_unsafe_names_are_refused(patch, field):
    with pytest.raises(ConfigError, match=rf"{field}: not a safe name"):
        suite_from_dict(patch)


def test_unsafe_run_name_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="run name '../x' is not a safe name"):
        SuiteRun(Suite(), results_root=tmp_path, run_name="../x", work_dir=tmp_path)


@pytest.mark.parametrize(
    "section,field,value",
    [
        ("records", "n_features", 0),
        ("records", "n_features", -3),
        ("records", "window", 0),
        ("records", "n_test_random", -1),
        ("corpus", "context", 0),
        ("model", "batch_size", 0),
        ("metrics", "batch_size", -1),
        ("scoring", "n_bootstrap", 0),
        ("scoring", "examples_per_prompt", 0),
        ("explain", "max_tokens", 0),
    ],
)
def test_out_of_range_numbers_fail_at_load(section, field, value):
    d = load_suite(REPO / "evals" / "default.toml").model_dump()
    d[section][field] = value
    with pytest.raises(ConfigError, match=rf"{section}\.{field}: Input should be greater"):
        suite_from_dict(d, "x.toml")


def test_llm_numbers_are_range_checked():
    with pytest.raises(ConfigError, match=r"llm\.simulator\.max_concurrency"):
        suite_from_dict({"llm": {"simulator": {"max_concurrency": 0}}})


def test_non_utf8_suite_is_one_clear_error(tmp_path):
    p = tmp_path / "s.toml"
    p.write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match=r"not UTF-8 text .*save it as UTF-8"):
        load_suite(p)


# ------------------------------------------------------------------ checkpoints


def test_integer_weights_are_refused(tmp_path):
    from test_sae_formats import write_saelens

    from autointerp.bases.checkpoints import load_checkpoint

    write_saelens(tmp_path, "standard")
    f = tmp_path / "sae_weights.safetensors"
    w = load_file(str(f))
    w["W_enc"] = (w["W_enc"] * 100).to(torch.int32)  # cast silently: the encoder would be ~0
    save_file(w, str(f))
    with pytest.raises(CheckpointError, match=r"'W_enc' has dtype int32.*floating point"):
        load_checkpoint(tmp_path)


# ------------------------------------------------------------------ caches and disks


def test_corrupt_response_cache_is_one_clear_error(tmp_path):
    from autointerp.llm.cache import ResponseCache

    p = tmp_path / "llm.sqlite"
    p.write_bytes(b"this is not a database" * 100)
    with pytest.raises(AutointerpError, match=r"llm\.sqlite is corrupt.*delete it"):
        ResponseCache(p)


def test_truncated_activation_cache_is_one_clear_error(tmp_path):
    from autointerp.activations import load_activations

    p = tmp_path / "acts.npy"
    np.save(p, np.zeros((4, 8, 16), dtype=np.float32))
    p.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(AutointerpError, match=r"acts\.npy is unreadable.*--force activations"):
        load_activations(p, (4, 8))
    np.save(p, np.zeros((3, 8, 16), dtype=np.float32))  # whole, but not these tokens'
    with pytest.raises(AutointerpError, match=r"shape \(3, 8, 16\), expected \(4, 8\)"):
        load_activations(p, (4, 8))


@pytest.fixture
def full_disk(tmp_path):
    """A 64 KiB tmpfs: a real device that fills up (needs root, as on these machines)."""
    d = tmp_path / "small"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(d)])
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root)")
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)])


def test_full_disk_while_appending_keeps_the_file_whole(full_disk):
    j = Journal(full_disk / "s.jsonl")
    j.append([{"key": [0]}])
    before = j.path.read_bytes()
    with pytest.raises(AutointerpError, match="no space left on the device"):
        j.append([{"key": [1], "blob": "x" * 200_000}])
    assert j.path.read_bytes() == before and len(j.read()) == 1


def test_full_disk_while_caching_activations_is_an_error_not_sigbus(full_disk, tiny_model):
    code = (
        "import numpy as np\n"
        "from tests.conftest import make_tiny_model\n"
        "from autointerp.activations import cache_activations\n"
        "from autointerp.errors import AutointerpError\n"
        "sm = make_tiny_model()\n"
        "tok = np.random.default_rng(0).integers(3, 90, size=(400, 64)).astype(np.int32)\n"
        "try:\n"
        f"    cache_activations(sm, sm.hookpoint('blocks.1.hook_resid_post'), tok, "
        f"'{full_disk}/a.npy', progress=False)\n"
        "except AutointerpError as e:\n"
        "    print('error:', e)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]  # a SIGBUS would be -7
    assert "no space left on the device" in r.stdout
    assert list(full_disk.iterdir()) == []  # the partial file is removed


# ------------------------------------------------------------------ a 401 from the LLM


def test_http_401_is_one_error_line_and_exit_2(tmp_path, tiny_model):
    from autointerp.llm.faultserver import FaultServer

    model_dir = tmp_path / "tiny"
    tiny_model.model.save_pretrained(model_dir)
    tiny_model.tokenizer.save_pretrained(model_dir)
    text = tmp_path / "corpus.txt"
    text.write_text("The cat sat on the mat. " * 400)
    with FaultServer(api_key="sk-right") as fs:
        suite = tmp_path / "s.toml"
        suite.write_text(
            f"""
name = "auth"
[model]
name = "{model_dir}"
hookpoint = "blocks.1.hook_resid_post"
[corpus]
source = "{text}"
context = 16
n_tokens = 512
[[bases]]
kind = "neurons"
l0 = 4
[records]
n_features = 2
[metrics]
n_tokens = 64
[scoring]
floor = false
"""
            + "".join(
                f"""
[llm.{role}]
backend = "openai"
model = "m"
base_url = "{fs.url}"
api_key_env = "AUTOINTERP_TEST_WRONG_KEY"
max_retries = 0
max_concurrency = 8
"""
                for role in ("explainer", "simulator", "scorer")
            )
        )
        env = {**os.environ, "AUTOINTERP_TEST_WRONG_KEY": "sk-wrong"}
        r = subprocess.run(
            [sys.executable, "-m", "autointerp.cli", "run", str(suite), "-q",
             "--results", str(tmp_path / "res"), "--work-dir", str(tmp_path / "w")],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    assert r.returncode == 2, r.stderr[-3000:]
    err_lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(err_lines) == 1 and "401" in err_lines[0], r.stderr[-3000:]
    assert "Traceback" not in r.stderr and "sk-wrong" not in r.stderr


def _tiny_suite(tmp_path: Path, tiny_model, url: str, name: str = "tiny") -> Path:
    """A whole suite on the tiny model and a local text file, every LLM role on ``url``."""
    model_dir, text = save_tiny_files(tmp_path, tiny_model, repeat=300)
    roles = "".join(
        f'\n[llm.{r}]\nbackend = "openai"\nmodel = "m"\nbase_url = "{url}"\nmax_retries = 0\n'
        for r in ("explainer", "simulator", "scorer")
    )
    suite = tmp_path / f"{name}.toml"
    suite.write_text(
        f"""
name = "{name}"
[model]
name = "{model_dir}"
hookpoint = "blocks.1.hook_resid_post"
[corpus]
source = "{text}"
context = 16
n_tokens = 2048
[[bases]]
kind = "sae"
name = "sae"
train = {{ architecture = "topk", expansion = 2, k = 4, epochs = 2, batch_size = 256 }}
[[bases]]
kind = "pca"
[[bases]]
kind = "neurons"
[[bases]]
kind = "random"
[records]
n_features = 4
[metrics]
n_tokens = 128
"""
        + roles
    )
    return suite


def _run_cli(suite: Path, results: Path, cache: Path, **popen) -> subprocess.Popen:
    env = {**os.environ, "AUTOINTERP_CACHE_DIR": str(cache)}
    return subprocess.Popen(
        [sys.executable, "-m", "autointerp.cli", "run", str(suite), "-q", "--run", "r",
         "--results", str(results)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen,
    )  # fmt: skip


def _scores(results: Path) -> list[tuple]:
    import polars as pl

    (f,) = results.glob("*/r/scores.parquet")
    cols = ["basis", "feature", "scorer", "variant", "null", "method", "status", "value"]
    df = pl.read_parquet(f).select(cols).sort(cols[:6])
    return [tuple(r) for r in df.iter_rows()]


def _kill_after_stage(p: subprocess.Popen, stage: str, timeout: float = 600) -> str:
    """SIGKILL ``p`` the moment its log says ``stage`` finished (so the next stage is running);
    return the stage that was running. Fails if the process had already exited."""
    import re
    import threading

    seen = threading.Event()
    lines: list[str] = []
    pat = re.compile(rf"\[(\d+)/(\d+)\] {re.escape(stage)}: ")

    def read():
        for line in p.stderr:
            lines.append(line)
            if pat.search(line):
                seen.set()

    t = threading.Thread(target=read, daemon=True)
    t.start()
    assert seen.wait(timeout), f"stage {stage!r} never finished:\n{''.join(lines)[-3000:]}"
    assert p.poll() is None, f"the run ended before the kill after {stage!r}"
    p.kill()  # SIGKILL: no cleanup runs
    p.wait()
    t.join(10)
    assert p.returncode == -9
    return stage


@pytest.mark.slow
def test_kill_9_at_any_stage_then_rerun_gives_the_same_results(tmp_path, tiny_model):
    from autointerp.llm.faultserver import FaultServer

    with FaultServer() as fs:
        suite = _tiny_suite(tmp_path, tiny_model, fs.url)
        ref = _run_cli(suite, tmp_path / "ref", tmp_path / "c-ref")
        out, err = ref.communicate(timeout=600)
        assert ref.returncode == 0, err[-3000:]
        assert "stage times" in out and "results in" in out
        want = _scores(tmp_path / "ref")
        assert want
        # killed while the stage after each of these runs: fits, metrics, records, the LLM stages
        for after in ("activations", "bases", "density", "records", "explain"):
            res, cache = tmp_path / f"res-{after}", tmp_path / f"c-{after}"
            _kill_after_stage(_run_cli(suite, res, cache), after)
            again = _run_cli(suite, res, cache)
            out, err = again.communicate(timeout=600)
            assert again.returncode == 0, (after, err[-3000:])
            assert _scores(res) == want, after
            assert not list(res.rglob("*.tmp")) and not list(cache.rglob("*.partial.npy"))
