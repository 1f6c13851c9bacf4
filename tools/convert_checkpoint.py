#!/usr/bin/env python
"""Convert an official SeqNet / NAE / NAE+ checkpoint into a personsearch checkpoint.

    python tools/convert_checkpoint.py --from seqnet epoch_19.pth seqnet_cuhk.pth
    python tools/convert_checkpoint.py --from seqnet epoch_17.pth seqnet_prw.pth \\
        --config-file configs/official/prw/SeqNet_R50.yaml --prw-root datasets/PRW
    python tools/convert_checkpoint.py --from nae checkpoint.pth nae_cuhk.pth
    python tools/convert_checkpoint.py --from nae+ checkpoint.pth nae_plus_cuhk.pth

then evaluate with ``tools/train_net.py --config-file <the same config> --eval-only MODEL.WEIGHTS
<OUTPUT>``. The target config defaults to ``configs/official/{SeqNet,NAE,NAE+}_R50.yaml``: the
method's config plus the small compatibility components that reproduce the official inference
(see docs/METHODS.md, "Official checkpoints"). The tool prints which official keys went where,
refuses (naming the keys) on anything unmapped, missing or of the wrong shape, and lists every
official tensor it deliberately leaves out. The output loads into the config's model with no
missing or unexpected key.
"""

import argparse
import os
import sys
from typing import List, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIGS = {
    "seqnet": "configs/official/SeqNet_R50.yaml",
    "nae": "configs/official/NAE_R50.yaml",
    "nae+": "configs/official/NAE+_R50.yaml",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    # which official implementation wrote INPUT
    p.add_argument("--from", dest="source", required=True, choices=sorted(DEFAULT_CONFIGS))
    # the official checkpoint
    p.add_argument("input")
    # the personsearch checkpoint to write (.pth)
    p.add_argument("output")
    # the config the converted weights are for (default: configs/official/<method>_R50.yaml)
    p.add_argument("--config-file", default="")
    # PRW dataset root: remap the official 482-row lookup table onto our 483 training ids
    p.add_argument("--prw-root", default="")
    # trailing KEY VALUE overrides of the target config
    p.add_argument("opts", nargs=argparse.REMAINDER, default=[])
    return p


def convert(argv: Optional[List[str]] = None) -> dict:
    """Run the conversion; returns ``{"output", "report"}`` (report = list of lines)."""
    args = build_parser().parse_args(argv)
    import torch
    from detectron2.modeling import build_model

    from personsearch import get_person_search_cfg
    from personsearch.checkpoint import convert_official_state_dict, load_official_state_dict
    from personsearch.utils.file_io import atomic_write

    config = args.config_file or os.path.join(REPO, DEFAULT_CONFIGS[args.source])
    cfg = get_person_search_cfg(config, ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", ""] + args.opts)
    model = build_model(cfg)
    target = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    raw_ids = None
    if args.prw_root:
        from personsearch.data.datasets.prw import prw_raw_person_ids

        raw_ids = prw_raw_person_ids(args.prw_root, "train")
    state, notes = load_official_state_dict(args.input)
    converted, report = convert_official_state_dict(state, args.source, target, raw_ids)
    report.notes = [f"{args.input}: {n}" for n in notes] + [f"target config: {config}"]
    # check by loading: nothing missing (but the reported defaults), nothing unexpected
    result = model.load_state_dict(converted, strict=False)
    reported = {k for k, _ in report.defaults}
    missing = [k for k in result.missing_keys if k not in reported]
    if missing or result.unexpected_keys:
        raise RuntimeError(
            f"the converted weights do not fit the model: missing {missing[:10]}, unexpected "
            f"{result.unexpected_keys[:10]}"
        )
    os.makedirs(os.path.dirname(os.path.abspath(args.output)) or ".", exist_ok=True)
    ckpt = {
        "model": converted,
        "__author__": f"personsearch convert_checkpoint --from {args.source}",
    }
    with atomic_write(args.output, "wb") as f:  # written then renamed: never half an output
        torch.save(ckpt, f)
    lines = report.lines() + [f"wrote {args.output}"]
    return {"output": args.output, "report": lines}


def main(argv: Optional[List[str]] = None) -> int:
    out = convert(argv)
    print("\n".join(out["report"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
