#!/usr/bin/env python
"""Formulations of ATLOP's group bilinear, timed forward and forward + backward on the same inputs.

    python benchmarks/bench_group_bilinear.py [--pairs 2000] [--device cpu] [--dtype float32]

logits[n, r] = sum_g head[n, g, :] @ W[r, g] @ tail[n, g, :] + bias[r]  (ATLOP: emb 768, block 64, 97 relations)

- `outer-per-group` (hf_docre until 2026-12): per chunk of pairs and per group, the [n, bs*bs] outer product times
  W_g^T (K = 4096, N = R): 12 narrow GEMMs per chunk; the backward rebuilds the outer products.
- `outer-all-groups`: one [n, k*bs*bs] outer product per chunk, one GEMM (K = 49,152).
- `head-first`: U = head_g @ W_g (batched over groups: [k, n, bs] x [k, bs, bs*R]), then each pair's tail
  contracted with U; no outer product.
- `einsum`: `torch.einsum("ngi,rgij,ngj->nr")`, whatever path torch picks.

Each is checked against the first (forward and gradients) before it is timed. Medians of `--repeats` alternating
runs. The GFLOP/s columns (forward: 2·N·k·bs²·R; forward + backward: 3x that) compare each with a square matmul on the
same machine: a formulation at that rate is at GEMM speed, and only fewer multiply-adds (another function) or cheaper
arithmetic (bf16) can go faster.
"""

import argparse
import statistics
import time

import torch


def outer_all_groups(head, tail, weight, bias, block_size):
    n, emb = head.shape
    k = emb // block_size
    outer = (head.view(n, k, block_size, 1) * tail.view(n, k, 1, block_size)).reshape(n, -1)
    return torch.addmm(bias, outer, weight.t())


def head_first(head, tail, weight, bias, block_size):
    n, emb = head.shape
    k = emb // block_size
    r = weight.shape[0]
    w = weight.view(r, k, block_size, block_size).permute(1, 2, 3, 0).reshape(k, block_size, block_size * r)  # [k, i, (j r)]
    u = torch.bmm(head.view(n, k, block_size).transpose(0, 1), w).view(k, n, block_size, r)  # [k, n, j, r]
    return torch.einsum("knjr,nkj->nr", u, tail.view(n, k, block_size)) + bias


def einsum(head, tail, weight, bias, block_size):
    n, emb = head.shape
    k = emb // block_size
    r = weight.shape[0]
    return torch.einsum("ngi,rgij,ngj->nr", head.view(n, k, block_size), weight.view(r, k, block_size, block_size),
                        tail.view(n, k, block_size)) + bias


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--emb", type=int, default=768)
    parser.add_argument("--block", type=int, default=64)
    parser.add_argument("--relations", type=int, default=97)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    from hf_docre.layers_docre import GroupBilinear

    torch.manual_seed(0)
    dtype = getattr(torch, args.dtype)
    layer = GroupBilinear(args.emb, args.block, args.relations).to(args.device, dtype)
    head = torch.randn(args.pairs, args.emb, device=args.device, dtype=dtype, requires_grad=True)
    tail = torch.randn(args.pairs, args.emb, device=args.device, dtype=dtype, requires_grad=True)
    candidates = {
        "outer-per-group (chunked, custom backward)": lambda: layer(head, tail),
        "outer-all-groups": lambda: outer_all_groups(head, tail, layer.weight, layer.bias, args.block),
        "head-first": lambda: head_first(head, tail, layer.weight, layer.bias, args.block),
        "einsum": lambda: einsum(head, tail, layer.weight, layer.bias, args.block),
    }
    grad = torch.randn(args.pairs, args.relations, device=args.device, dtype=dtype)
    reference = None
    for run in candidates.values():
        out = run()
        grads = torch.autograd.grad(out, (head, tail, layer.weight, layer.bias), grad)
        if reference is None:
            reference = (out.detach(), [g.detach() for g in grads])
        else:
            tolerance = dict(rtol=1e-3, atol=1e-3) if dtype == torch.float32 else dict(rtol=5e-2, atol=5e-1)
            torch.testing.assert_close(out, reference[0], **tolerance)
            for got, want in zip(grads, reference[1]):
                torch.testing.assert_close(got, want, **tolerance)

    def timed(fn):
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start

    forward = {name: [] for name in candidates}
    both = {name: [] for name in candidates}
    for _ in range(args.repeats):
        for name, run in candidates.items():
            with torch.no_grad():
                forward[name].append(timed(run))
            both[name].append(timed(lambda run=run: torch.autograd.grad(run(), (head, tail, layer.weight, layer.bias), grad)))
    # What this machine's GEMM does at its best (a square fp32/bf16 matmul), to compare each formulation's rate with.
    size = 2048
    a = torch.randn(size, size, device=args.device, dtype=dtype)
    gemm = statistics.median(timed(lambda: a @ a) for _ in range(args.repeats + 1))
    gemm_rate = 2 * size**3 / gemm / 1e9
    flops_forward = 2 * args.pairs * args.emb * args.block * args.relations  # N * k * bs^2 * R multiply-adds
    base_f, base_b = statistics.median(forward[next(iter(candidates))]), statistics.median(both[next(iter(candidates))])
    print(f"\n{args.pairs} pairs, emb {args.emb}, block {args.block}, {args.relations} relations, {args.device} {args.dtype}, "
          f"{torch.get_num_threads()} threads; a {size}x{size} matmul runs at {gemm_rate:.0f} GFLOP/s\n\n"
          "| formulation | forward ms | ratio | GFLOP/s | forward + backward ms | ratio | GFLOP/s |\n| --- | --- | --- | --- | --- | --- | --- |")
    for name in candidates:
        f, b = statistics.median(forward[name]), statistics.median(both[name])
        print(f"| {name} | {1000 * f:.1f} | {f / base_f:.2f} | {flops_forward / f / 1e9:.0f} | {1000 * b:.1f} | {b / base_b:.2f} | "
              f"{3 * flops_forward / b / 1e9:.0f} |")


if __name__ == "__main__":
    main()
