"""`sketch-search info`: the model in use, its card and the compute device."""
from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("info", help="show the model (default or --checkpoint), its card and the device")
    p.add_argument("--checkpoint", help="model file (.safetensors with its .json card, or an official .pth)")
    p.add_argument("--heads", type=int, default=12, help="attention heads of an official checkpoint (default 12)")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")
    p.set_defaults(handler=run)


def run(args) -> int:
    from ..runtime import load_embedder, runtime_name

    runtime = runtime_name()  # the engine without PyTorch (ONNX Runtime) answers too
    if runtime == "torch":
        from ..embedder import Embedder

        emb = Embedder.from_checkpoint(args.checkpoint, device=args.device, heads=args.heads)
        config = emb.cfg.to_dict()
    else:
        emb = load_embedder(args.checkpoint, args.device)
        config = emb.card.get("config", {})
    card = {k: v for k, v in emb.card.items() if k != "config"}
    print(json.dumps({"model": emb.name, "runtime": runtime, "device": emb.device_description, "config": config,
                      "card": card}, indent=2))
    return 0
