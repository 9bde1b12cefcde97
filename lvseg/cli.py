"""``lvseg``: data commands that need no Ray or MLflow.

    lvseg synth OUT [--videos N] [--seed S] [--frames MIN:MAX]   write a synthetic EchoNet-Dynamic folder
    lvseg cache ROOT [--cache-dir DIR]             build (or find) the frame store of a folder
    lvseg preview ROOT --out PNG                   traced frames with their masks, as a PNG
    lvseg demo [--out DIR]                         synth + cache + summary + preview
    lvseg train CONFIG.yaml [--data ROOT] [--out DIR]   train from a config, evaluate on val/test
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from lvseg.echonet import DataFormatError
from lvseg.framestore import load_store
from lvseg.synth import ECHONET_FRAMES, FRAMES, write_synthetic
from lvseg.video import VideoDecodeError

SYNTHETIC_NOTE = (
    "NOTE: synthetic data written by `lvseg synth` - cartoons in the EchoNet-Dynamic format, "
    "not echocardiograms; nothing measured on them is a result."
)


def _store_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", type=Path, help="EchoNet-Dynamic folder (FileList.csv, ...)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="where frame stores live (default: $LVSEG_CACHE_DIR or ~/.cache/lvseg)")
    parser.add_argument("--allow-missing", action="store_true",
                        help="skip (and report) listed videos that are missing or do not decode")
    parser.add_argument("--workers", type=int, default=None, help="decoding processes (default: all CPUs)")


def frame_range(text: str) -> tuple[int, int]:
    """``MIN:MAX`` (or one number: every video that long) as a pair of ints."""
    low, _, high = text.partition(":")
    try:
        return int(low), int(high or low)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN:MAX frames, e.g. 100:250, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lvseg", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    synth = commands.add_parser("synth", help="write a synthetic EchoNet-Dynamic folder")
    synth.add_argument("out", type=Path)
    synth.add_argument("--videos", type=int, default=50)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--frames", type=frame_range, default=FRAMES, metavar="MIN:MAX",
                       help=f"frames per video, drawn uniformly (default {FRAMES[0]}:{FRAMES[1]}, short for tests; "
                            f"{ECHONET_FRAMES[0]}:{ECHONET_FRAMES[1]} gives EchoNet-Dynamic's mean of ~175)")
    cache = commands.add_parser("cache", help="build or find a folder's frame store")
    _store_args(cache)
    preview = commands.add_parser("preview", help="write a PNG of traced frames and masks")
    _store_args(preview)
    preview.add_argument("--out", type=Path, required=True)
    preview.add_argument("--videos", type=int, default=6)
    demo = commands.add_parser("demo", help="synthetic folder -> frame store -> summary -> PNG")
    demo.add_argument("--out", type=Path, default=Path("demo-output"))
    demo.add_argument("--videos", type=int, default=50)
    train = commands.add_parser("train", help="train from a config file, evaluate on val and test")
    train.add_argument("config", type=Path, help="flat YAML config (the format `lvsearch export` writes)")
    train.add_argument("--data", type=Path, default=None, help="EchoNet folder (default: the config's `data:`)")
    train.add_argument("--out", type=Path, default=None, help="output folder (default: runs/<recipe>-<time>)")
    train.add_argument("--cache-dir", type=Path, default=None)
    train.add_argument("--allow-missing", action="store_true")
    return parser


def cmd_train(args: argparse.Namespace) -> None:
    from lvseg.config import load_config
    from lvseg.retrain import train_from_config

    config = load_config(args.config)
    out = args.out or Path("runs") / f"{config.recipe}-{time.strftime('%Y%m%d-%H%M%S')}"
    metrics = train_from_config(config, args.data, out, args.cache_dir, args.allow_missing)
    print(f"status {metrics['status']}, best epoch {metrics['best_epoch']}")
    for split in ("val", "test"):
        if f"{split}_dice" in metrics:
            print(f"{split}: pooled Dice {metrics[f'{split}_dice']:.4f} "
                  f"(ES {metrics.get(f'{split}_dice_es', float('nan')):.4f}, "
                  f"ED {metrics.get(f'{split}_dice_ed', float('nan')):.4f}), "
                  f"EF MAE {metrics.get(f'{split}_ef_mae', float('nan')):.2f}")
    print(f"reports in {out}: metrics.json, *_per_video_dice.csv, *_dice_histogram.png, overlay.png")
    for note in metrics["caveats"]:
        print(f"NOTE: {note} - these numbers are not a result.")
    for warning in metrics["warnings"]:
        print(f"WARNING: {warning}")


def cmd_synth(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    write_synthetic(args.out, videos=args.videos, seed=args.seed, frames=args.frames)
    print(f"wrote {args.videos} synthetic videos to {args.out} in {time.perf_counter() - started:.1f} s")
    print(SYNTHETIC_NOTE)


def cmd_cache(args: argparse.Namespace) -> None:
    store = load_store(args.root, args.cache_dir, args.allow_missing, args.workers)
    print(store.summary())


def cmd_preview(args: argparse.Namespace) -> None:
    from lvseg.preview import write_preview

    store = load_store(args.root, args.cache_dir, args.allow_missing, args.workers)
    print(f"wrote {write_preview(store, args.out, args.videos)}")


def cmd_demo(args: argparse.Namespace) -> None:
    from lvseg.preview import write_preview

    data = args.out / "synthetic-echonet"
    started = time.perf_counter()
    write_synthetic(data, videos=args.videos, seed=0)
    print(f"1. wrote {args.videos} synthetic videos to {data} ({time.perf_counter() - started:.1f} s)")
    started = time.perf_counter()
    store = load_store(data, cache_dir=args.out / "cache")
    print(f"2. frame store ready ({time.perf_counter() - started:.1f} s)\n{store.summary()}")
    png = write_preview(store, args.out / "preview.png",
                        title="SYNTHETIC data (lvseg synth) - red: traced LV")
    print(f"3. preview of traced frames and masks: {png}")
    print(SYNTHETIC_NOTE)


COMMANDS = {"synth": cmd_synth, "cache": cmd_cache, "preview": cmd_preview, "demo": cmd_demo, "train": cmd_train}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except (FileNotFoundError, DataFormatError, VideoDecodeError, ValueError) as error:
        print(f"lvseg {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
