#!/usr/bin/env python
"""Train and/or evaluate a person-search model.

    python datasets/prepare_synthetic.py      # once: the synthetic set (configs/synthetic/)
    python tools/train_net.py --config-file configs/synthetic/OIM_R10.yaml
    python tools/train_net.py --config-file configs/OIM_R50.yaml --num-gpus 8
    python tools/train_net.py --config-file configs/OIM_R50.yaml --eval-only MODEL.WEIGHTS model.pth
    python tools/train_net.py --config-file ... --resume         # continue from OUTPUT_DIR

Multi-machine: ``--num-machines N --machine-rank K --dist-url tcp://HOST:PORT`` (see detectron2's
``launch``; gloo is used on CPU, NCCL on GPU). Trailing ``KEY VALUE`` pairs override the config.

Your own data: ``--register-json NAME JSON IMAGE_ROOT`` (repeatable) registers a person-search JSON
split in every process before the config is read, so NAME can be used in ``DATASETS.TRAIN`` /
``DATASETS.TEST`` (docs/DATASET_FORMAT.md). The built-in splits only load their folders: the
synthetic set is made by ``python datasets/prepare_synthetic.py`` (loading it before fails with an
error naming the folder and that command), CUHK-SYSU and PRW are put in place by hand
(datasets/README.md).
"""

from detectron2.engine import default_argument_parser, default_setup, launch
from detectron2.evaluation import verify_results
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from personsearch import get_person_search_cfg  # importing personsearch registers everything
from personsearch.checkpoint import PersonSearchCheckpointer
from personsearch.engine import PersonSearchTrainer
from personsearch.utils.cli import add_register_json_argument, register_json_datasets
from personsearch.utils.comm import leave_process_group
from personsearch.utils.device import check_device


def setup(args):
    """Config from ``--config-file`` and trailing overrides, frozen; logging into OUTPUT_DIR."""
    cfg = get_person_search_cfg(args.config_file, args.opts)
    check_device(cfg.MODEL.DEVICE, args.config_file, RuntimeError)
    cfg.freeze()
    default_setup(cfg, args)
    setup_logger(output=cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="personsearch")
    return cfg


def build_parser():
    """detectron2's standard flags plus ``--register-json``."""
    parser = default_argument_parser()
    add_register_json_argument(parser)
    return parser


def main(args):
    # in every process: launch() runs main() in each worker
    register_json_datasets(args.register_json)
    cfg = setup(args)
    if args.eval_only:
        model = PersonSearchTrainer.build_model(cfg)
        PersonSearchCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        res = PersonSearchTrainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, res)
    else:
        trainer = PersonSearchTrainer(cfg)
        trainer.resume_or_load(resume=args.resume)
        res = trainer.train()
    leave_process_group()
    return res


def invoke_main(argv=None):
    args = build_parser().parse_args(argv)
    print("Command Line Args:", args)
    return launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )


if __name__ == "__main__":
    invoke_main()
