"""A small SAE trainer on cached activations (CPU-friendly), and the ``train-sae`` command.

Recipe (standard choices of the field):

* Activations are scaled by ``s = sqrt(d) / E||x||`` during training (SAELens
  ``expected_average_only_in``, so ``l1_coeff`` and ``lr`` transfer across models); the factor is
  folded into the biases at the end (``b_enc /= s``, ``b_dec /= s``, codes in raw units), which
  is exact because relu and topk are positively homogeneous. The saved SAE reads raw activations.
* ``b_dec`` starts at the geometric median of a sample (Weiszfeld iterations), ``W_dec`` rows are
  random unit vectors (relu: norm 0.1, as SAELens), ``W_enc = W_dec^T``, ``b_enc = 0``.
* relu (SAELens "standard"):
  ``loss = mean_t ||x - x_hat||^2 + l1_coeff * mean_t sum_i f_i ||W_dec[i]||``.
* topk (Gao et al. 2024): ``loss = mean_t ||x - x_hat||^2 + auxk_alpha * AuxK``; decoder rows kept
  unit-norm (gradient parallel to each row removed, rows renormalised after each step).
  AuxK: latents that have not fired for ``dead_tokens`` tokens reconstruct the residual
  ``e = x - x_hat`` with their top ``k_aux = min(d/2, n_dead)`` pre-activations;
  ``AuxK = mean_t ||e - e_hat||^2 / mean_t ||e - mean(e)||^2``.
* Adam (0.9, 0.999), grad-norm clipping at 1, lr linearly decayed to 0 over the last 20% of steps
  when the number of steps is known. Deterministic for a given seed and thread count.

Only the k selected latents enter the gradient of a topk step (gathered rows), so a step costs
about one dense ``[B, d] x [d, d_sae]`` product.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from autointerp.bases.sae import SAE
from autointerp.config import SAETrainConfig
from autointerp.errors import AutointerpError, ConfigError
from autointerp.results import stable_hash

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- helpers


@torch.no_grad()
def geometric_median(points: torch.Tensor, iters: int = 30, tol: float = 1e-6) -> torch.Tensor:
    """Weiszfeld iterations from the mean: ``argmin_m sum_i ||p_i - m||``."""
    m = points.mean(0)
    for _ in range(iters):
        w = 1.0 / (points - m).norm(dim=1).clamp_min(1e-8)
        new = (w[:, None] * points).sum(0) / w.sum()
        if (new - m).norm() < tol * (1 + m.norm()):
            m = new
            break
        m = new
    return m


def _as_tensor(acts: Any) -> torch.Tensor | None:
    if isinstance(acts, torch.Tensor):
        return acts
    try:
        import numpy as np

        if isinstance(acts, np.ndarray):
            return torch.from_numpy(np.ascontiguousarray(acts))
    except ImportError:  # pragma: no cover
        pass
    return None


def _batches(
    acts: torch.Tensor | Iterable[torch.Tensor], batch_size: int, gen: torch.Generator
) -> Iterator[torch.Tensor]:
    if isinstance(acts, torch.Tensor):
        perm = torch.randperm(acts.shape[0], generator=gen)
        for i in range(0, acts.shape[0], batch_size):
            yield acts[perm[i : i + batch_size]]
    else:
        yield from acts


def _first_rows(acts: torch.Tensor | Iterable[torch.Tensor], n: int, gen: torch.Generator):
    if isinstance(acts, torch.Tensor):
        idx = torch.randperm(acts.shape[0], generator=gen)[:n]
        return acts[idx].float()
    rows, got = [], 0
    for b in acts:
        rows.append(torch.as_tensor(b).float())
        got += rows[-1].shape[0]
        if got >= n:
            break
    if not rows:
        raise AutointerpError("train_sae: the activation iterable yielded no batches")
    return torch.cat(rows)[:n]


def _sparse_t_matmul(idx: torch.Tensor, vals: torch.Tensor, n: int, y: torch.Tensor):
    """``S^T y`` for ``S [B, n]`` with ``S[t, idx[t, j]] = vals[t, j]`` (distinct idx per row)."""
    rows = torch.arange(idx.shape[0], device=idx.device).repeat_interleave(idx.shape[1])
    S = torch.sparse_coo_tensor(
        torch.stack([idx.reshape(-1), rows]),
        vals.reshape(-1),
        (n, idx.shape[0]),
        check_invariants=False,
    )
    return torch.sparse.mm(S, y)


class _TopKEncode(torch.autograd.Function):
    """``vals, idx = topk(u E^T + b_enc, k)`` with a backward that is one dense matmul for
    ``E`` (the [B, d_sae] gradient has k non-zeros per row) and a gather for ``u``."""

    @staticmethod
    def forward(ctx, u, E, b_enc, k):  # type: ignore[override]
        pre = torch.addmm(b_enc, u, E.T)
        vals, idx = pre.topk(k, dim=-1, sorted=False)
        ctx.save_for_backward(u, E, idx)
        ctx.mark_non_differentiable(idx)
        return vals, idx

    @staticmethod
    def backward(ctx, g_vals, _g_idx):  # type: ignore[override]
        u, E, idx = ctx.saved_tensors
        grad_E = _sparse_t_matmul(idx, g_vals, E.shape[0], u)
        grad_b = torch.zeros(E.shape[0], dtype=u.dtype, device=u.device)
        grad_b.index_add_(0, idx.reshape(-1), g_vals.reshape(-1))
        grad_u = F.embedding_bag(idx, E, per_sample_weights=g_vals, mode="sum")
        return grad_u, grad_E, grad_b, None


class _SparseDecode(torch.autograd.Function):
    """``x_hat[t] = sum_j f[t, j] W_dec[idx[t, j]]`` with a dense-matmul backward for ``W_dec``
    (torch's embedding_bag backward sorts the indices, which is slow on CPU)."""

    @staticmethod
    def forward(ctx, f, idx, W):  # type: ignore[override]
        ctx.save_for_backward(f, idx, W)
        return F.embedding_bag(idx, W, per_sample_weights=f, mode="sum")

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        f, idx, W = ctx.saved_tensors
        grad_W = _sparse_t_matmul(idx, f, W.shape[0], g)
        return _sampled_rows_dot(g, W, idx), None, grad_W


def _sampled_rows_dot(g: torch.Tensor, W: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``out[t, j] = g[t] . W[idx[t, j]]``, i.e. ``(g W^T)`` read only at ``idx``. On the CPU
    one sampled sparse product (SDDMM; 14 vs 122 ms for a topk step of 4096 x 32 on 2 cores);
    elsewhere the rows ``W[idx]`` gathered in parts of 256 tokens and a batched product."""
    B, k = idx.shape
    if g.device.type == "cpu":
        crow = torch.arange(0, B * k + 1, k, device=g.device)
        with warnings.catch_warnings():  # "sparse CSR support is in beta state"
            warnings.simplefilter("ignore", UserWarning)
            pattern = torch.sparse_csr_tensor(
                crow, idx.reshape(-1), torch.zeros(B * k, dtype=g.dtype), (B, W.shape[0]),
                check_invariants=False,
            )  # fmt: skip
        return torch.sparse.sampled_addmm(pattern, g, W.T, beta=0.0).values().reshape(B, k)
    out = torch.empty(B, k, dtype=g.dtype, device=g.device)
    for s in range(0, B, 256):  # W[idx] of a whole batch is [B, k, d]: gather by parts
        part = slice(s, s + 256)
        out[part] = torch.bmm(W[idx[part]], g[part].unsqueeze(-1)).squeeze(-1)
    return out


def _check_acts(x: torch.Tensor) -> None:
    if x.dim() != 2 or x.shape[0] == 0:
        raise AutointerpError(
            f"train_sae expects activations [N, d] with N > 0, got {list(x.shape)}"
        )
    if not torch.isfinite(x).all():
        raise AutointerpError("train_sae: activations contain NaN/Inf; check the hookpoint cache")


# --------------------------------------------------------------------------- training


def train_sae(
    acts: torch.Tensor | Iterable[torch.Tensor],
    cfg: SAETrainConfig,
    *,
    device: str | torch.device | None = None,
    progress: bool = True,
    auxk_alpha: float = 1 / 32,
    dead_tokens: int | None = None,
    name: str = "sae",
    info: dict[str, Any] | None = None,
) -> SAE:
    """Train an SAE (``cfg.architecture`` relu or topk) on activations ``[N, d]``.

    ``acts`` is a tensor (shuffled each epoch with the seed) or an iterable of ``[B, d]``
    batches, iterated once per epoch. ``info["training"]`` of the result holds the final
    statistics (mse, fvu, l0, dead_frac, ...) measured on up to 16,384 training tokens.
    """
    t0 = time.perf_counter()
    if cfg.architecture not in ("relu", "topk"):
        raise ConfigError(f"train.architecture must be relu or topk, got {cfg.architecture!r}")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    gen = torch.Generator().manual_seed(int(cfg.seed))
    tensor = _as_tensor(acts)
    if tensor is not None:
        if tensor.dim() > 2:
            tensor = tensor.reshape(-1, tensor.shape[-1])
        _check_acts(tensor)
        acts = tensor
    sample = _first_rows(acts, 16384, gen)
    _check_acts(sample)
    d = int(sample.shape[1])
    d_sae = int(cfg.expansion) * d
    k = int(cfg.k)
    topk = cfg.architecture == "topk"
    if topk and not 0 < k <= d_sae:
        raise ConfigError(f"train.k must be in 1..{d_sae} (d_sae), got {k}")
    scale = math.sqrt(d) / float(sample.norm(dim=1).mean().clamp_min(1e-12))
    b_dec0 = geometric_median(sample * scale)

    W_dec0 = torch.randn(d_sae, d, generator=gen)
    W_dec0 = W_dec0 / W_dec0.norm(dim=1, keepdim=True) * (1.0 if topk else 0.1)
    E = W_dec0.clone().to(dev).requires_grad_(True)  # encoder weight [d_sae, d]
    b_enc = torch.zeros(d_sae, device=dev, requires_grad=True)
    W_dec = W_dec0.to(dev).requires_grad_(True)
    b_dec = b_dec0.to(dev).requires_grad_(True)
    params = [E, b_enc, W_dec, b_dec]
    opt = torch.optim.Adam(params, lr=cfg.lr, betas=(0.9, 0.999), fused=True)

    n_rows = tensor.shape[0] if tensor is not None else None
    steps_per_epoch = math.ceil(n_rows / cfg.batch_size) if n_rows is not None else None
    total_steps = steps_per_epoch * cfg.epochs if steps_per_epoch is not None else None
    decay_start = int(0.8 * total_steps) if total_steps else None
    if dead_tokens is None:
        dead_tokens = max(cfg.batch_size * 10, (n_rows or 200_000) // 2)
    since_fired = torch.zeros(d_sae, dtype=torch.long, device=dev)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total_steps, desc=f"train {cfg.architecture} SAE", unit="step")
    step = 0
    last: dict[str, float] = {}
    history: list[dict[str, float]] = []
    for _epoch in range(cfg.epochs):
        ep_loss = ep_mse = 0.0
        ep_n = 0
        for batch in _batches(acts, cfg.batch_size, gen):
            x = torch.as_tensor(batch).to(dev, torch.float32) * scale
            if total_steps and step >= decay_start:
                frac = (total_steps - step) / max(1, total_steps - decay_start)
                for g in opt.param_groups:
                    g["lr"] = cfg.lr * frac
            u = x - b_dec
            if topk:
                pre, idx = _TopKEncode.apply(u, E, b_enc, k)
                f = torch.relu(pre)
                x_hat = _SparseDecode.apply(f, idx, W_dec) + b_dec
                err = x_hat - x
                mse = err.pow(2).sum(-1).mean()
                loss = mse
                fired = idx[f.detach() > 0]
                since_fired += x.shape[0]
                since_fired[fired] = 0
                dead = since_fired >= dead_tokens
                n_dead = int(dead.sum())
                aux_val = 0.0
                if auxk_alpha > 0 and n_dead > 0:
                    dead_idx = dead.nonzero().squeeze(-1)
                    pre_d = u @ E[dead_idx].T + b_enc[dead_idx]
                    k_aux = min(d // 2, n_dead)
                    with torch.no_grad():
                        aidx = pre_d.topk(k_aux, dim=-1, sorted=False).indices
                    a = torch.relu(pre_d.gather(-1, aidx))
                    e_hat = _SparseDecode.apply(a, dead_idx[aidx], W_dec)
                    e = (x - x_hat).detach()
                    denom = (e - e.mean(0)).pow(2).sum(-1).mean().clamp_min(1e-12)
                    aux = (e_hat - e).pow(2).sum(-1).mean() / denom
                    loss = loss + auxk_alpha * aux
                    aux_val = float(aux.detach())
                last = {"mse": float(mse.detach()), "auxk": aux_val, "n_dead": n_dead}
            else:
                pre = u @ E.T + b_enc
                f = torch.relu(pre)
                x_hat = f @ W_dec + b_dec
                mse = (x_hat - x).pow(2).sum(-1).mean()
                l1 = (f * W_dec.norm(dim=1)).sum(-1).mean()
                loss = mse + cfg.l1_coeff * l1
                last = {"mse": float(mse.detach()), "l1": float(l1.detach())}
            ep_loss += float(loss.detach()) * x.shape[0]
            ep_mse += last["mse"] * x.shape[0]
            ep_n += x.shape[0]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if topk:
                with torch.no_grad():
                    g = W_dec.grad
                    g -= (g * W_dec).sum(-1, keepdim=True) * W_dec
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            if topk:
                with torch.no_grad():
                    W_dec /= W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)
            step += 1
            if bar is not None:
                bar.update(1)
                if step % 20 == 0:
                    bar.set_postfix({kk: round(v, 4) for kk, v in last.items()})
            if not math.isfinite(last["mse"]):
                raise AutointerpError(
                    f"SAE training diverged at step {step} (mse {last['mse']}); lower train.lr"
                )
        if ep_n:
            history.append({"loss": ep_loss / ep_n, "mse": ep_mse / ep_n})
    if bar is not None:
        bar.close()

    with torch.no_grad():
        sae = SAE(
            E.detach().T.contiguous().cpu(),
            (b_enc.detach() / scale).cpu(),
            W_dec.detach().cpu(),
            (b_dec.detach() / scale).cpu(),
            architecture=cfg.architecture,
            k=k if topk else None,
            apply_b_dec_to_input=True,
            name=name,
            info=info,
        ).to(dev)
    sae.requires_grad_(False)
    stats = evaluate_sae(sae, acts if tensor is not None else sample, max_tokens=16384)
    stats.update(
        {
            "steps": step,
            "epochs": cfg.epochs,
            "n_tokens": int(n_rows) if n_rows is not None else None,
            "scaling_factor": scale,
            "seconds": round(time.perf_counter() - t0, 2),
            "final_batch": last,
            "epoch_history": history,
        }
    )
    sae.info.update(
        {"format": "native", "architecture": cfg.architecture, "k": sae.k, "training": stats}
    )
    return sae


@torch.no_grad()
def evaluate_sae(
    sae: SAE, acts: torch.Tensor, max_tokens: int = 65536, batch_size: int = 4096
) -> dict[str, float]:
    """mse (mean_t ||x - x_hat||^2 / d), fvu (sum ||x - x_hat||^2 / sum ||x - mean||^2),
    l0 (mean non-zero codes per token), dead_frac (latents never non-zero on these tokens)."""
    x_all = acts[:max_tokens] if acts.shape[0] > max_tokens else acts
    mu = x_all.float().mean(0).to(sae.device)
    sse = tot = l0 = 0.0
    fired = torch.zeros(sae.n_features, dtype=torch.bool, device=sae.device)
    n = x_all.shape[0]
    for i in range(0, n, batch_size):
        x = x_all[i : i + batch_size].to(sae.device, torch.float32)
        c = sae.encode(x)
        xh = sae.decode(c)
        sse += float((x - xh).pow(2).sum())
        tot += float((x - mu).pow(2).sum())
        nz = c > 0
        l0 += float(nz.sum())
        fired |= nz.any(0)
    return {
        "mse": sse / (n * sae.d_in),
        "fvu": sse / max(tot, 1e-30),
        "l0": l0 / n,
        "dead_frac": float((~fired).float().mean()),
        "n_eval_tokens": int(n),
    }


# --------------------------------------------------------------------------- train once, reuse


def _fingerprint(acts: torch.Tensor) -> dict[str, Any]:
    step = max(1, acts.shape[0] // 4096)
    sub = acts[::step].double()
    return {
        "shape": list(acts.shape),
        "dtype": str(acts.dtype),
        "sum": round(float(sub.sum()), 6),
        "sq": round(float(sub.pow(2).sum()), 4),
    }


def train_config_hash(acts: Any, cfg: SAETrainConfig, meta: dict[str, Any]) -> str:
    t = _as_tensor(acts)
    data = _fingerprint(t.reshape(-1, t.shape[-1])) if t is not None else None
    return stable_hash({"train": cfg.model_dump(), "meta": meta, "data": data, "v": 1})


def train_or_load(
    acts: Any,
    cfg: SAETrainConfig,
    out_dir: str | Path,
    meta: dict[str, Any] | None = None,
    *,
    device: str | torch.device | None = None,
    progress: bool = True,
    name: str = "sae",
) -> SAE:
    """Reuse the native checkpoint in ``out_dir`` when its recorded ``config_hash`` (train
    config + ``meta`` + a fingerprint of the activations) matches; otherwise train and save it.
    ``meta`` should name the model, hookpoint and corpus (stored in ``autointerp.json``)."""
    from autointerp.bases.checkpoints import NATIVE_CFG, load_checkpoint, save_native

    meta = dict(meta or {})
    out = Path(out_dir)
    h = train_config_hash(acts, cfg, meta)
    cfg_file = out / NATIVE_CFG
    if cfg_file.exists():
        import json

        try:
            recorded = json.loads(cfg_file.read_text()).get("config_hash")
        except (OSError, ValueError):
            recorded = None
        if recorded == h:
            log.info("reusing trained SAE in %s (config hash %s)", out, h)
            sae = load_checkpoint(out, "native", device=device, name=name)
            sae.info["reused"] = True
            return sae  # type: ignore[return-value]
        log.info(
            "SAE in %s was trained with another config (%s != %s): retraining", out, recorded, h
        )
    sae = train_sae(acts, cfg, device=device, progress=progress, name=name, info=dict(meta))
    save_native(
        sae,
        out,
        config_hash=h,
        training=sae.info["training"],
        train_config=cfg.model_dump(),
        **meta,
    )
    sae.info.update({"config_hash": h, "path": str(out), "reused": False})
    return sae


# --------------------------------------------------------------------------- CLI


def load_acts_file(path: str | Path, key: str | None = None) -> torch.Tensor:
    """``.npy`` (memory-mapped) or ``.safetensors`` (one tensor, or ``key``) -> ``[N, d]``."""
    p = Path(path)
    if not p.exists():
        raise AutointerpError(f"activations file {p} does not exist")
    if p.suffix == ".npy":
        import numpy as np

        arr = np.load(p, mmap_mode="r", allow_pickle=False)
        t = torch.from_numpy(np.array(arr, dtype=np.float32, copy=True))
    elif p.suffix == ".safetensors":
        from safetensors.torch import load_file

        d = load_file(str(p))
        if key is None:
            if len(d) != 1:
                raise AutointerpError(f"{p} holds tensors {sorted(d)}; choose one with --key")
            key = next(iter(d))
        if key not in d:
            raise AutointerpError(f"{p} has no tensor {key!r}; it holds {sorted(d)}")
        t = d[key].float()
    else:
        raise AutointerpError(f"{p}: activations must be .npy or .safetensors")
    if t.dim() < 2:
        raise AutointerpError(f"{p}: activations must be [N, d] (or [..., d]), got {list(t.shape)}")
    return t.reshape(-1, t.shape[-1])


def _cmd(args: argparse.Namespace) -> int:
    from autointerp.bases.checkpoints import save_native

    acts = load_acts_file(args.acts, args.key)
    cfg = SAETrainConfig(
        architecture=args.architecture,
        expansion=args.expansion,
        k=args.k,
        l1_coeff=args.l1_coeff,
        lr=args.lr,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    sae = train_sae(acts, cfg, device=args.device, progress=not args.quiet, auxk_alpha=args.auxk)
    meta = {k: v for k, v in (("hookpoint", args.hookpoint), ("model", args.model)) if v}
    save_native(
        sae,
        args.out,
        training=sae.info["training"],
        train_config=cfg.model_dump(),
        acts_file=str(args.acts),
        **meta,
    )
    st = sae.info["training"]
    print(
        f"saved {args.out}: {cfg.architecture} d_in={sae.d_in} d_sae={sae.d_sae} "
        f"mse={st['mse']:.5g} fvu={st['fvu']:.4f} l0={st['l0']:.1f} "
        f"dead_frac={st['dead_frac']:.3f} ({st['seconds']} s)"
    )
    return 0


def register(subparsers: Any) -> None:
    d = SAETrainConfig()
    p = subparsers.add_parser("train-sae", help="train an SAE on cached activations")
    p.add_argument("--acts", required=True, help="activations [N, d] as .npy or .safetensors")
    p.add_argument("--key", default=None, help="tensor name inside a .safetensors file")
    p.add_argument("--out", required=True, help="output folder (native format)")
    p.add_argument("--architecture", choices=["topk", "relu"], default=d.architecture)
    p.add_argument("--expansion", type=int, default=d.expansion)
    p.add_argument("--k", type=int, default=d.k)
    p.add_argument("--l1-coeff", type=float, default=d.l1_coeff)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--auxk", type=float, default=1 / 32, help="AuxK weight (topk; 0 = off)")
    p.add_argument("--hookpoint", default=None, help="recorded in autointerp.json")
    p.add_argument("--model", default=None, help="recorded in autointerp.json")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = leave as is)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd)
