"""Peak memory of the two holders found in the default run, old and new code side by side in
one process (resident memory sampled from ``/proc/self`` every 5 ms; Linux only).

    python benchmarks/bench_memory.py [--acts PATH] [--rows N]

1. **A pass over the activations file** (32 rows a batch, as the stages read it): the plain
   memory map keeps every page it read resident in the process; ``load_activations``'s map
   (``PagedActs``) drops them whenever it hands out a copy. Printed: the file's resident MiB
   in this process after the pass, and the sums of both passes (the same numbers).
2. **The PCA fit on the fit tokens** (the ``bases`` stage's high-water mark): before, the
   shared float32 fit tokens stayed alive while PCA made its float64 copy; now the float32
   copy is let go and PCA reads its float64 copy straight from the map and centres it in
   place. Printed: the peak anonymous memory above the start of each, and whether the two
   bases are equal (``torch.equal`` on E, D, mu).

``--acts`` reads a cached activations file (e.g. the default run's ``work/acts-<h>.npy``);
without it a file of the default run's shape (3,200 rows x 65 tokens x 576, 457 MiB) is
written to a temporary directory first.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _out import recorded  # noqa: E402

from autointerp.activations import load_activations  # noqa: E402
from autointerp.bases.linear import fit_pca  # noqa: E402
from autointerp.run.memory import mapped_rss_mib, release_free_memory  # noqa: E402
from autointerp.stages.bases import fit_tokens  # noqa: E402


def _status(field: str) -> float:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


class Peak:
    """The highest ``RssAnon`` seen while the block runs, in MiB above its start."""

    def __enter__(self) -> Peak:
        release_free_memory()
        self.start = self.peak = _status("RssAnon")
        self._on = True
        self._t = threading.Thread(target=self._sample, daemon=True)
        self._t.start()
        return self

    def _sample(self) -> None:
        while self._on:
            self.peak = max(self.peak, _status("RssAnon"))
            time.sleep(0.005)

    def __exit__(self, *exc: object) -> None:
        self._on = False
        self._t.join()
        self.peak = max(self.peak, _status("RssAnon"))

    @property
    def rise(self) -> float:
        return self.peak - self.start


def _synthetic(path: Path, rows: int) -> None:
    rng = np.random.default_rng(0)
    out = np.lib.format.open_memmap(path, "w+", np.float32, (rows, 65, 576))
    scale = np.linspace(0.2, 4.0, 576, dtype=np.float32)
    for s in range(0, rows, 64):
        n = min(64, rows - s)
        out[s : s + n] = rng.standard_normal((n, 65, 576), dtype=np.float32) * scale + 0.5
    out.flush()
    del out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--acts", type=Path, default=None, help="a cached activations .npy")
    ap.add_argument("--rows", type=int, default=3200, help="rows of the synthetic file")
    args = ap.parse_args()
    tmp = None
    path = args.acts
    if path is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench-memory-")
        path = Path(tmp.name) / "acts.npy"
        _synthetic(path, args.rows)
    path = path.resolve()
    size = path.stat().st_size / 2**20
    print(f"activations file: {path.name}, {size:,.0f} MiB")

    # 1. a pass over the file
    plain = np.load(path, mmap_mode="r")
    n = plain.shape[0]
    s_plain = sum(float(np.asarray(plain[np.arange(s, min(s + 32, n))]).sum(dtype=np.float64))
                  for s in range(0, n, 32))  # fmt: skip
    res_plain = mapped_rss_mib(path)
    del plain
    gc.collect()
    paged = load_activations(path)
    s_paged = sum(float(paged[np.arange(s, min(s + 32, n))].sum(dtype=np.float64))
                  for s in range(0, n, 32))  # fmt: skip
    res_paged = mapped_rss_mib(path)
    print("\n1. one pass over the file, 32 rows a batch: the file's resident MiB in this process")
    print(f"   plain np.load(mmap_mode='r')   {res_plain:8,.0f} MiB")
    print(f"   load_activations (PagedActs)   {res_paged:8,.0f} MiB")
    print(f"   same sums: {s_plain == s_paged}")

    # 2. the PCA fit
    T = paged.shape[1]
    mask = np.zeros((n, T), dtype=bool)
    mask[:, 0] = True  # BOS, as the suite's split marks it
    fit_rows = np.arange(0, n - n // 5)  # the fit rows: 80%, as the default split
    with Peak() as old:
        x32 = fit_tokens(paged, mask, fit_rows, 10**9, 0)  # shared, kept for the next basis
        a = fit_pca(x32, k=32)
    del x32
    with Peak() as new:
        x64 = fit_tokens(paged, mask, fit_rows, 10**9, 0, torch.float64)
        b = fit_pca(x64, k=32, overwrite=True)
        del x64
    same = torch.equal(a.E, b.E) and torch.equal(a.D, b.D) and torch.equal(a.mu, b.mu)
    tokens = int((~mask[fit_rows]).sum())
    d = paged.shape[2]
    print(f"\n2. PCA on {tokens:,} fit tokens x {d}: peak anonymous MiB above the start")
    print(f"   old: float32 kept + float64 copy   {old.rise:8,.0f} MiB")
    ratio = old.rise / new.rise
    print(f"   new: float64 from the map only     {new.rise:8,.0f} MiB   x{ratio:.2f}")
    print(f"   same basis (E, D, mu equal): {same}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    with recorded("bench_memory"):
        main()
