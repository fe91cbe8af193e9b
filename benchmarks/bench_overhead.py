"""The harness's own cost per feature: an all-latent run against an LLM that costs nothing.

One whole ``autointerp`` run (tokens -> activations -> bases -> metrics -> density -> records ->
diagnostics -> explain -> score -> report, the real stage runner and journals) per size, with
``records.n_features = "all"`` on a random-initialised top-k SAE of 512 / 4,608 / 16,384 latents
over a tiny random subject model (so the subject model costs next to nothing too), the explainer
and the PMI simulator served by the loopback OpenAI-compatible server
(``autointerp.llm.faultserver``) at a fixed latency per call and concurrency 32, against the
bundled in-process model for a small count.

Each loopback run is made twice, ``--prompt-batch 1 auto``: one completions request per PMI
prompt (the old path) and the prompts of a feature in one request (``llm.*.prompt_batch``; the
server answers a list after one latency, as a batching server would). Per run it prints
features/s, the HTTP requests the server answered (its ``/v1/stats``), the LLM-bound ideal
wall time ``requests x latency / concurrency`` and the share of the wall time outside it,
``1 - ideal / wall`` (at 0 ms every second is the harness's: features/s is its ceiling). For
the in-process model the time outside the LLM is the wall time minus the LLM calls' own
latency (they run one batch at a time).
Target: under 10% outside the LLM at 50 ms per call and concurrency 32, and seconds per feature
flat (linear total) from 512 to 16,384 latents. First, the journals: 100,000 appends one item at
a time and a load, against an fsync per item. Prints figures; asserts nothing.

    python benchmarks/bench_overhead.py [--sizes 512 4608 16384] [--latency-ms 0 50]
        [--inprocess 16] [--conc 32] [--prompt-batch 1 auto]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autointerp.bases.kinds import BasisBuild, BasisKind, register_basis_kind  # noqa: E402
from autointerp.bases.sae import SAE  # noqa: E402
from autointerp.config import suite_from_dict  # noqa: E402
from autointerp.llm.faultserver import server_process  # noqa: E402
from autointerp.pipeline import SuiteRun  # noqa: E402
from tests.conftest import make_tiny_model  # noqa: E402

D_MODEL, K = 32, 32
WORDS = "the cat sat on a mat while seven dogs ran past 12 red doors and one blue car".split()


def build_random_sae(b: BasisBuild) -> SAE:
    """A random top-k SAE whose width is in its name (``rsae-<n>``)."""
    n = int(str(b.cfg.name).rsplit("-", 1)[1])
    g = torch.Generator().manual_seed(n)
    w = torch.randn(b.width, n, generator=g) / b.width**0.5
    sae = SAE(w, torch.zeros(n), w.T.contiguous(), torch.zeros(b.width), architecture="topk",
              k=K, name=b.cfg.label)  # fmt: skip
    sae.info["stage_hash"] = f"rsae-{n}"
    return sae


register_basis_kind(
    BasisKind("bench-random-sae", build_random_sae, order=0, reference=True, uses_l0=False)
)


def corpus(path: Path, n_words: int) -> None:
    rng = np.random.default_rng(0)
    path.write_text(" ".join(rng.choice(WORDS, n_words)) + "\n")


def suite(root: Path, n: int, llm: dict, records_n: int | str = "all"):
    model_dir = root / "tiny"
    if not model_dir.exists():
        m = make_tiny_model(n_layers=2, d_model=D_MODEL)
        m.model.save_pretrained(model_dir)
        m.tokenizer.save_pretrained(model_dir)
    n_tokens = max(16384, 4 * n)  # ~K*4 = 128 firing tokens per latent
    text = root / f"corpus-{n_tokens}.txt"
    if not text.exists():
        corpus(text, n_tokens)  # ~4 characters (tokens) per word: plenty
    return suite_from_dict(
        {
            "name": f"overhead-{n}",
            "model": {"name": str(model_dir), "hookpoint": "blocks.1.hook_resid_post"},
            "corpus": {"source": str(text), "context": 64, "n_tokens": n_tokens},
            "bases": [{"kind": "bench-random-sae", "name": f"rsae-{n}"}],
            "records": {"n_features": records_n},
            "metrics": {"n_tokens": 256, "ablations": ["zero"]},
            "scoring": {"scorers": ["simulation"], "simulation_method": "pmi",
                        "shuffled_null": False},
            "llm": llm,
        }
    )  # fmt: skip


def loopback_llm(url: str, conc: int, batch: str = "auto") -> dict:
    c = {"backend": "openai", "model": "loopback", "base_url": url, "max_concurrency": conc,
         "prompt_batch": batch if batch == "auto" else int(batch)}  # fmt: skip
    return {"explainer": c, "simulator": c, "scorer": c}


def inprocess_llm() -> dict:
    return {
        "explainer": {"backend": "transformers", "model": "smollm2-gguf", "max_concurrency": 320},
        "simulator": {"backend": "transformers", "model": "smollm2-gguf", "max_concurrency": 8},
    }


def one_run(root: Path, tag: str, s) -> dict:
    t0 = time.perf_counter()
    rd = SuiteRun(s, results_root=root / "res", run_name=tag, work_dir=root / "work",
                  llm_cache=root / f"llm-{tag}.sqlite", progress=False).run()  # fmt: skip
    wall = time.perf_counter() - t0
    man = json.loads((rd / "manifest.json").read_text())
    usage = man.get("llm_usage", {}).get("total", {})
    stages = {r["stage"]: r["seconds"] for r in man.get("stages", [])}
    n_feat = sum(1 for _ in (rd / "records").glob("*.jsonl") for _ in _.open())
    return {"wall": wall, "features": n_feat, "usage": usage, "stages": stages, "dir": rd}


def same_scores(dirs: list[Path]) -> bool:
    """Whether the runs wrote the same score values and simulated predictions."""
    import pandas as pd

    def load(d: Path) -> tuple:
        sc = pd.read_parquet(d / "scores.parquet")
        sc = sc.sort_values(["basis", "feature", "scorer", "variant"]).reset_index(drop=True)
        sim = pd.read_parquet(d / "simulations.parquet")
        sim = sim.sort_values(["basis", "feature", "example", "kind"]).reset_index(drop=True)
        return sc["value"].tolist(), [list(p) for p in sim["pred"]]

    got = [load(d) for d in dirs]
    return all(json.dumps(g) == json.dumps(got[0]) for g in got[1:])


def journal_figures(root: Path, n: int = 100_000) -> None:
    """Journal appends one item at a time (group commit) and a load, at ``n`` lines, against
    an fsync per item (the baseline before group commit) on 2,000 lines."""
    from autointerp import journal as jm

    row = {"key": ["sae", 0, "", "llm"], "rows": [{"value": 0.5, "status": "ok"}], "sims": []}
    j = jm.Journal(root / "bench-journal.jsonl")
    j.path.unlink(missing_ok=True)
    t0 = time.perf_counter()
    for i in range(n):
        j.append([{**row, "key": ["sae", i, "", "llm"]}])
    jm.sync_pending()
    t_app = time.perf_counter() - t0
    t0 = time.perf_counter()
    got = {tuple(r["key"]): r for r in j.read()}
    t_read = time.perf_counter() - t0
    assert len(got) == n
    b = jm.Journal(root / "bench-journal-fsync.jsonl")
    b.path.unlink(missing_ok=True)
    saved, jm.SYNC_INTERVAL_S = jm.SYNC_INTERVAL_S, 0.0
    try:
        t0 = time.perf_counter()
        for i in range(2000):
            b.append([{**row, "key": ["sae", i, "", "llm"]}])
        t_fs = time.perf_counter() - t0
    finally:
        jm.SYNC_INTERVAL_S = saved
    print(f"journal: {n} appends in {t_app:.1f} s ({1e6 * t_app / n:.0f} us each, group commit)"
          f" vs {1e6 * t_fs / 2000:.0f} us each with an fsync per item; load of {n} lines "
          f"{t_read:.1f} s", flush=True)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 4608, 16384])
    ap.add_argument("--latency-ms", type=float, nargs="+", default=[0.0, 50.0])
    ap.add_argument("--conc", type=int, default=32)
    ap.add_argument("--inprocess", type=int, default=16, help="features (0: skip)")
    ap.add_argument("--prompt-batch", nargs="+", default=["1", "auto"],
                    help="llm prompt_batch per loopback run: 1 = a request per prompt")  # fmt: skip
    ap.add_argument("--keep", type=Path, default=None, help="keep run dirs here")
    ap.add_argument("--journal-lines", type=int, default=100_000, help="0: skip")
    a = ap.parse_args()
    root = a.keep or Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    root.mkdir(parents=True, exist_ok=True)
    if a.journal_lines:
        journal_figures(root, a.journal_lines)
    rows = []
    for n in a.sizes:
        for ms in a.latency_ms:
            dirs = []
            for pb in a.prompt_batch:
                with server_process(latency_s=ms / 1000, keep_alive=True) as url:
                    s = suite(root, n, loopback_llm(url, a.conc, pb))
                    r = one_run(root, f"n{n}-{ms:g}ms-b{pb}", s)
                    with urllib.request.urlopen(url + "/stats") as f:
                        calls = json.loads(f.read())["requests"]
                tag = "per prompt" if pb == "1" else f"batch {pb}"
                r.update(n=n, llm=f"loopback {ms:g} ms {tag}", calls=calls,
                         ideal=calls * ms / 1000 / a.conc)  # fmt: skip
                rows.append(r)
                dirs.append(r["dir"])
                _print_row(r)
            if len(dirs) > 1:
                same = same_scores(dirs)
                print(f"[{n} latents, {ms:g} ms] scores and predictions identical across "
                      f"--prompt-batch {' '.join(a.prompt_batch)}: {same}")  # fmt: skip
    # the harness's own cost per feature of explain + score: the fastest 0 ms run's
    zero = [_llm_stages(r) / max(r["features"], 1) for r in rows if "loopback 0 ms" in r["llm"]]
    if a.inprocess:
        r = one_run(root, "inprocess", suite(root, 512, inprocess_llm(), a.inprocess))
        r["calls"] = r["usage"].get("calls", 0) - r["usage"].get("cache_hits", 0)
        # the model runs batches: the LLM's time is the LLM stages' time less the harness's
        # own (at most the 0 ms loopback run's per feature, which also pays an HTTP client)
        own = min(zero) * r["features"] if zero else 0.0
        r.update(n=512, llm="in-process smollm2", ideal=max(0.0, _llm_stages(r) - own))
        rows.append(r)
        _print_row(r)
    print(
        "\nexplain + score stages (the per-feature LLM stages); calls = HTTP requests the "
        "server answered; LLM-bound = calls x latency / "
        f"concurrency {a.conc}; outside LLM = 1 - LLM-bound / their wall time"
    )
    print("latents  llm                          features  calls  run wall s  LLM stages s  "
          "feat/s  ms/feat  LLM-bound s  outside LLM  records s")  # fmt: skip
    for r in rows:
        _print_row(r, table=True)


def _llm_stages(r: dict) -> float:
    return r["stages"].get("explain", 0.0) + r["stages"].get("score", 0.0)


def _print_row(r: dict, table: bool = False) -> None:
    f, es = max(r["features"], 1), _llm_stages(r)
    out = 1 - r["ideal"] / es if es else float("nan")
    st = r["stages"]
    if not table:
        stages = json.dumps({k: round(v, 1) for k, v in st.items()})
        print(f"[{r['n']} latents, {r['llm']}] {r['features']} features in {r['wall']:.1f} s; "
              f"stages {stages}", flush=True)  # fmt: skip
        return
    print(f"{r['n']:7d}  {r['llm']:27s}  {r['features']:8d}  {r['calls']:5d}  {r['wall']:10.1f}  "
          f"{es:12.1f}  {f / es:6.1f}  {1000 * es / f:7.1f}  {r['ideal']:11.1f}  "
          f"{100 * out:10.1f}%  {st.get('records', 0):9.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
