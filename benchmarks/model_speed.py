"""Model throughput against the machine's measured matrix-multiply peak.

For each configuration: images per second (median of several timed batches), FLOPs per image
(counted by torch's FLOP counter: 2 per multiply-add, convolutions and matmuls), and the fraction
of the measured float32 matmul throughput the model reaches. For the shipped model on a CPU, also
ONNX Runtime's throughput (engine.onnx_embedder) against PyTorch's, alternated in the same rounds.
Run with `make bench`.
"""
from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import torch
from torch.utils.flop_counter import FlopCounterMode

from engine.device import describe_device, pick_device
from engine.embedder import Embedder
from engine.model import CONFIGS, MLAGT
from engine.model.checkpoints import load_checkpoint
from engine.model.retrieval import FUSION_DESCRIPTORS, Fusion
from engine.runtime import default_model_path


def median_seconds(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_runner(device: torch.device, n: int = 2048):
    """A square matmul (fp32 on CPU, fp16 on GPU) and its FLOP count: the practical peak."""
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    return (lambda: a @ b), 2 * n**3


def flops_per_image(embedder: Embedder) -> float:
    """FLOPs of one image through the encoder API (model, plus the stage-1 descriptor if fused)."""
    size = embedder.cfg.img_size
    counter = FlopCounterMode(display=False)
    with counter:
        embedder.embed_tensor(torch.randn(1, 3, size, size))
    return counter.get_total_flops()


def paired_rounds(embedder: Embedder, batch: int, repeats: int):
    """Alternate model batches with matmuls so both see the same machine load (the machines are
    shared); returns median images/s, median matmul FLOP/s and the median per-round ratio."""
    size = embedder.cfg.img_size
    embedder.batch_size = batch
    x = torch.randn(batch, 3, size, size)
    matmul, mm_flops = matmul_runner(embedder.device)
    model_flops = flops_per_image(embedder) * batch
    ips, peaks, ratios = [], [], []
    for _ in range(repeats):
        t_model = median_seconds(lambda: embedder.embed_tensor(x), 1)
        t_mm = median_seconds(matmul, 3)
        ips.append(batch / t_model)
        peaks.append(mm_flops / t_mm)
        ratios.append((model_flops / t_model) / (mm_flops / t_mm))
    return statistics.median(ips), statistics.median(peaks), statistics.median(ratios)


def sketch_query_seconds(embedder: Embedder, repeats: int) -> tuple[float, float]:
    """Median seconds to embed one sketch query: as the card sets it (sketch_views) and as one view."""
    import numpy as np

    sketch = np.full((256, 256, 3), 255, np.uint8)
    sketch[60:200, 120:136] = 0  # a fuselage
    sketch[110:126, 40:216] = 0  # wings
    views = embedder.sketch_views
    as_set = median_seconds(lambda: embedder.embed_sketches([sketch]), repeats)
    embedder.sketch_views = 1
    try:
        single = median_seconds(lambda: embedder.embed_sketches([sketch]), repeats)
    finally:
        embedder.sketch_views = views
    return as_set, single


def onnx_embedder_for(embedder: Embedder):
    """The ONNX Runtime encoder of the shipped model: its installed .onnx file, else a fresh export
    in a temporary folder. None where onnxruntime or onnx is missing."""
    import tempfile
    from pathlib import Path

    try:
        from engine.onnx_embedder import OnnxEmbedder
        from engine.onnx_export import export_onnx
    except ImportError:
        return None
    checkpoint = Path(embedder.card.get("path") or default_model_path())
    onnx_file = checkpoint.with_suffix(".onnx")
    if not onnx_file.is_file():
        onnx_file = export_onnx(checkpoint, Path(tempfile.mkdtemp(prefix="onnx-bench-")) / "default.onnx", verify=False)
    return OnnxEmbedder(onnx_file, embedder.card)


def onnx_against_torch(embedder: Embedder, batch: int, repeats: int) -> tuple[float, float, float] | None:
    """Images/s of ONNX Runtime and of PyTorch on the same batches, timed alternately (shared machines:
    both see the same load); returns (onnx img/s, torch img/s, median per-round ratio)."""
    onnx = onnx_embedder_for(embedder)
    if onnx is None:
        return None
    size = embedder.cfg.img_size
    embedder.batch_size = onnx.batch_size = batch
    x = torch.randn(batch, 3, size, size)
    x_np = x.numpy()
    onnx_ips, torch_ips, ratios = [], [], []
    for _ in range(repeats):
        t_onnx = median_seconds(lambda: onnx.embed_array(x_np), 1)
        t_torch = median_seconds(lambda: embedder.embed_tensor(x), 1)
        onnx_ips.append(batch / t_onnx)
        torch_ips.append(batch / t_torch)
        ratios.append(t_torch / t_onnx)
    return statistics.median(onnx_ips), statistics.median(torch_ips), statistics.median(ratios)


def separate_twin(embedder: Embedder) -> Embedder | None:
    """The same model and card with the fusion descriptor run on the image (two trunk passes), when
    the card's descriptor shares the model's trunk; None otherwise."""
    fusion = embedder.fusion
    shared = FUSION_DESCRIPTORS[fusion.descriptor] if fusion else None
    if shared is None or shared.shared_from is None:
        return None
    twin = next((d.name for d in FUSION_DESCRIPTORS.values() if d.builder == shared.builder and d.shared_from is None),
                None)
    if twin is None:  # no registered descriptor runs the same network on the image alone
        return None
    card = embedder.card | {"stage1_fusion": replace(fusion, descriptor=twin).to_card()}
    return Embedder(embedder.model, card, device=embedder.device)


def single_partner_twin(embedder: Embedder) -> Embedder | None:
    """The same model with only the Lite0 GeM partner on the shared trunk at w 0.5 (as the shipped card
    has it), when the card's descriptor is a pair; else None."""
    if embedder.fusion is None or "+" not in embedder.fusion.descriptor:
        return None
    single = Fusion(embedder.fusion.descriptor.split("+")[0], 0.5)
    return Embedder(embedder.model, embedder.card | {"stage1_fusion": single.to_card()}, device=embedder.device)


def undrawn_twin(embedder: Embedder) -> Embedder | None:
    """The same model and card without the tiles' drawings, when the card draws them; else None."""
    if not embedder.retrieval.draws_tiles:
        return None
    card = embedder.card | {"stage1_fusion": replace(embedder.fusion, drawing_weight=0.0).to_card()}
    return Embedder(embedder.model, card, device=embedder.device)


def paired_speed(embedder: Embedder, twin: Embedder, batch: int, repeats: int):
    """Images/s of two embedders on the same tiles, alternated in the same rounds (shared machines:
    both see the same load); returns both medians and the median per-round ratio (twin's time / ours)."""
    size = embedder.cfg.img_size
    x = torch.randn(batch, 3, size, size)
    embedder.batch_size = twin.batch_size = batch
    shared_ips, separate_ips, ratios = [], [], []
    for _ in range(repeats + 1):
        t_shared = median_seconds(lambda: embedder.embed_tensor(x), 1)
        t_separate = median_seconds(lambda: twin.embed_tensor(x), 1)
        shared_ips.append(batch / t_shared)
        separate_ips.append(batch / t_separate)
        ratios.append(t_separate / t_shared)
    return statistics.median(shared_ips[1:]), statistics.median(separate_ips[1:]), statistics.median(ratios[1:])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--configs", nargs="+", default=["default", "mlagt-lite0", "mlagt-vit-tiny", "mlagt-vitb16"],
                        help="configuration names, or 'default' for the shipped model (when installed)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    torch.manual_seed(0)
    print(f"device: {describe_device(device)}; torch {torch.__version__}; threads {torch.get_num_threads()}")
    print("peak = square 2048 matmul (fp32 on CPU, fp16 on GPU), timed between the model's batches")
    print(f"{'config':<16}{'img px':>7}{'GFLOP/img':>11}{'img/s':>9}{'GFLOP/s':>9}{'peak':>8}{'of peak':>9}")
    for name in args.configs:
        if name == "default":
            if not default_model_path().exists():
                print("default         (not installed: run `make train`)")
                continue
            embedder = Embedder(*load_checkpoint(default_model_path()), device=device)
        else:
            embedder = Embedder(MLAGT(CONFIGS[name]), device=device)
        flops = flops_per_image(embedder)
        batch = 32 if device.type == "cuda" or flops < 5e9 else 8
        ips, peak, ratio = paired_rounds(embedder, batch, args.repeats)
        print(f"{name:<16}{embedder.cfg.img_size:>7}{flops / 1e9:>11.2f}{ips:>9.1f}{ips * flops / 1e9:>9.1f}"
              f"{peak / 1e9:>8.1f}{ratio:>9.0%}")
        if name == "default" and embedder.sketch_views > 1:
            as_set, single = sketch_query_seconds(embedder, args.repeats)
            print(f"  one sketch query: {as_set * 1000:.0f} ms with its {embedder.sketch_views} views, "
                  f"{single * 1000:.0f} ms as drawn ({as_set / single:.1f}x)")
        fusion = embedder.fusion if name == "default" else None
        if fusion is not None:  # the card against the same model with one thing changed, in the same rounds
            for twin, label, against in (
                    (separate_twin(embedder), f"one trunk pass ({fusion.descriptor})", "the descriptor on the image"),
                    (single_partner_twin(embedder), f"two partners ({fusion.descriptor})", "the Lite0 partner alone"),
                    (undrawn_twin(embedder), f"tiles drawn ({fusion.drawing_weight})", "no drawings")):
                if twin is not None:
                    ours, theirs, ratio = paired_speed(embedder, twin, batch, args.repeats)
                    print(f"  {label}: {flops / 1e9:.2f} GFLOP, {ours:.1f} img/s against "
                          f"{flops_per_image(twin) / 1e9:.2f} GFLOP, {theirs:.1f} img/s with {against} "
                          f"({twin.fusion.descriptor}), same rounds: {ratio:.2f}x the tiles per second")
        if name == "default" and device.type == "cpu":
            versus = onnx_against_torch(embedder, batch, args.repeats)
            if versus is None:
                print("  ONNX Runtime: not installed (pip install onnxruntime onnx)")
            else:
                onnx_ips, torch_ips, ratio = versus
                print(f"  ONNX Runtime: {onnx_ips:.1f} img/s against PyTorch's {torch_ips:.1f} img/s in the same "
                      f"rounds (batch {batch}): {ratio:.2f}x PyTorch's speed")


if __name__ == "__main__":
    main()
