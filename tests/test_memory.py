"""Memory and disk: the activations map does not keep what a pass read
resident in the process, freed heap memory goes back to the OS between stages, and one
dequantised copy of a GGUF is kept per content."""

import sys

import numpy as np
import pytest

from autointerp.activations import PagedActs, load_activations
from autointerp.run.memory import mapped_rss_mib, release_free_memory

linux = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self (Linux)")


def _anon_mib() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no RssAnon")


@linux
def test_a_pass_over_the_activations_keeps_about_one_batch_resident(tmp_path):
    path = tmp_path / "acts.npy"
    rng = np.random.default_rng(0)
    data = rng.normal(size=(256, 64, 512)).astype(np.float32)  # 32 MiB
    np.save(path, data)
    acts = load_activations(path, (256, 64))
    plain = np.load(path, mmap_mode="r")
    assert isinstance(acts, PagedActs)
    got, plain_sum = 0.0, 0.0
    for s in range(0, 256, 16):  # 2 MiB a batch, by row index as the stages read it
        r = np.arange(s, s + 16)
        got += float(acts[r].sum(dtype=np.float64))
        plain_sum += float(np.asarray(plain[r]).sum(dtype=np.float64))
    assert got == plain_sum == float(data.sum(dtype=np.float64))
    paged = mapped_rss_mib(path)
    # the two maps of one file: the plain one holds all 32 MiB, the paged one about a batch
    assert paged > 30, paged  # plain map resident (the measure sees a full pass)
    del plain
    assert mapped_rss_mib(path) <= 4, mapped_rss_mib(path)
    # the same values after the pages were dropped (read again from the page cache)
    assert np.array_equal(acts[np.array([3, 200])], data[[3, 200]])
    assert np.array_equal(np.asarray(acts[5:7]), data[5:7])  # slices stay views


_HEAP = """
import ctypes
from autointerp.run.memory import release_free_memory

def anon():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024

libc = ctypes.CDLL(None)
# blocks up to 32 MiB from the heap, as glibc does by itself once a large block was freed
assert libc.mallopt(-3, 32 << 20) == 1  # M_MMAP_THRESHOLD
big, pins = [], []
for _ in range(4):
    big.append(b"x" * (24 << 20))
    pins.append(b"y" * (1 << 20))  # above each block: free() cannot shrink the heap
del big
before = anon()
assert release_free_memory() is True
print(before, anon())
"""


@linux
def test_freed_heap_goes_back_between_stages():
    """In a fresh interpreter (a known heap): 96 MiB freed between pinned blocks stay resident
    until the trim, which hands them back."""
    import subprocess

    out = subprocess.run([sys.executable, "-c", _HEAP], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    before, after = map(float, out.stdout.split())
    assert before - after > 64, (before, after)


@linux
def test_the_trim_starts_no_child_process():
    """The runner trims after every stage: a helper process forked there would show the run's
    size again as the children's peak (``ctypes.util.find_library`` did: 1.1 GiB)."""
    import subprocess

    code = (
        "from autointerp.run.memory import release_free_memory, peak_rss_mib\n"
        "assert release_free_memory() is True\n"
        "print(peak_rss_mib()['children'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert float(out.stdout.strip()) == 0.0


@linux
def test_a_stage_own_peak_is_its_own(tmp_path):
    """The window's high-water mark is reset at a stage's start: a stage after a big one
    reports its own size, while the running high-water mark keeps the big one."""
    from autointerp.run.memory import peak_rss_mib, start_window, window_peak_mib

    assert start_window() is True
    big = np.ones((64 << 20) // 8)  # 64 MiB touched
    first = window_peak_mib()
    del big
    release_free_memory()
    assert start_window() is True
    second = window_peak_mib()
    assert first - second > 48, (first, second)
    assert peak_rss_mib()["self"] >= first - 1


def test_one_dequantised_copy_per_gguf_content(tmp_path, monkeypatch):
    """Keyed by contents: the same GGUF in two venvs (two paths) shares one cached copy; a
    different file gets its own (21 copies of one model had piled up, keyed by path)."""
    from autointerp.model import _gguf_cache_path

    monkeypatch.setenv("AUTOINTERP_CACHE_DIR", str(tmp_path / "cache"))
    a = tmp_path / "venv-a" / "model.Q4_1.gguf"
    b = tmp_path / "venv-b" / "model.Q4_1.gguf"
    for p in (a, b):
        p.parent.mkdir()
        p.write_bytes(b"GGUF" + bytes(range(256)) * 64)
    c = tmp_path / "other.Q4_1.gguf"
    c.write_bytes(b"GGUF" + bytes(range(255, -1, -1)) * 64)
    assert _gguf_cache_path(a) == _gguf_cache_path(b)
    assert _gguf_cache_path(a).parent == tmp_path / "cache" / "models"
    assert _gguf_cache_path(a).name.startswith("model.Q4_1-")
    assert _gguf_cache_path(c).name.split("-")[-1] != _gguf_cache_path(a).name.split("-")[-1]
