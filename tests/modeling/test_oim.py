"""OIM loss: value, gradient, memory updates, unlabeled/background handling, multi-process sync."""

import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from detectron2.structures import Boxes, Instances
from detectron2.utils import comm

from personsearch.modeling.losses.oim import OIMLoss
from personsearch.modeling.roi_heads.person_search_roi_heads import NOT_A_PERSON
from tests.common import cpu_threads, run_distributed, tiny_cfg


def make_oim(num_pids=3, queue_size=2, dim=2, scalar=10.0, momentum=0.5):
    return OIMLoss(
        num_pids=num_pids, queue_size=queue_size, feat_dim=dim, scalar=scalar, momentum=momentum
    )


def unit(*v):
    v = torch.tensor(v, dtype=torch.float32)
    return v / v.norm()


def test_loss_value_matches_hand_computation():
    oim = make_oim()
    oim.lut.copy_(torch.stack([unit(1, 0), unit(0, 1), unit(1, 1)]))
    oim.queue.copy_(torch.stack([unit(-1, 0), unit(0, -1)]))
    x = torch.stack([unit(1, 0.2), unit(0.1, 1)])
    pids = torch.tensor([0, 1])
    # hand computation with numpy: logits = 10 * x . [lut; queue]^T, mean cross-entropy
    mem = np.array([[1, 0], [0, 1], [0.70710678, 0.70710678], [-1, 0], [0, -1]])
    logits = 10 * x.numpy() @ mem.T
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    expected = -(logp[0, 0] + logp[1, 1]) / 2
    loss = oim(x, pids)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_gradient_is_scaled_softmax_residual():
    oim = make_oim(scalar=30.0)
    lut = torch.stack([unit(1, 0), unit(0, 1), unit(1, 1)])
    queue = torch.stack([unit(-1, 1), unit(1, -1)])
    oim.lut.copy_(lut)
    oim.queue.copy_(queue)
    x = torch.stack([unit(1, 0.5), unit(0.3, 1), unit(1, 1)]).requires_grad_()
    pids = torch.tensor([2, -1, 0])  # the unlabeled row gets no gradient
    oim(x, pids).backward()
    mem = torch.cat([lut, queue])
    p = F.softmax(30 * x.detach() @ mem.t(), dim=1)
    expected = torch.zeros_like(x)
    for i, t in [(0, 2), (2, 0)]:
        expected[i] = 30 * (p[i] @ mem - mem[t]) / 2  # mean over the 2 labeled rows
    torch.testing.assert_close(x.grad, expected, rtol=1e-5, atol=1e-6)
    # memories get no gradient and are buffers (saved in checkpoints)
    assert {"lut", "queue", "queue_head"} <= set(oim.state_dict())
    assert not any(p.requires_grad for p in oim.buffers())


def test_lut_update_folds_repeated_ids_sequentially_and_renormalises():
    oim = make_oim(momentum=0.5)
    oim.lut[1] = unit(0, 1)
    a, b, c = unit(1, 0), unit(1, 1), unit(-1, 2)
    oim(torch.stack([a, b, c]), torch.tensor([1, 2, 1]))
    # sequential reference: the two RoIs of id 1 in batch order
    v = F.normalize(0.5 * unit(0, 1) + 0.5 * a, dim=0)
    v = F.normalize(0.5 * v + 0.5 * c, dim=0)
    torch.testing.assert_close(oim.lut[1], v)
    torch.testing.assert_close(oim.lut[2], F.normalize(0.5 * b, dim=0))  # from a zero row
    torch.testing.assert_close(oim.lut[0], torch.zeros(2))
    assert oim.queue.abs().sum() == 0 and int(oim.queue_head) == 0


def test_unlabeled_go_to_queue_circularly_and_add_no_loss_term():
    oim = make_oim(queue_size=3)
    u1, u2, u3, u4 = unit(1, 0), unit(0, 1), unit(1, 1), unit(-1, 1)
    labeled = unit(1, -1)
    loss_with = oim(torch.stack([u1, labeled, u2]), torch.tensor([-1, 0, -1]))
    assert int(oim.queue_head) == 2
    torch.testing.assert_close(oim.queue[:2], torch.stack([u1, u2]))
    oim(torch.stack([u3, u4]), torch.tensor([-1, -1]))  # wraps: u4 overwrites the oldest (u1)
    torch.testing.assert_close(oim.queue, torch.stack([u4, u2, u3]))
    assert int(oim.queue_head) == 1
    # the loss only averages labeled RoIs: same value as with the labeled RoI alone
    fresh = make_oim(queue_size=3)
    assert loss_with.item() == pytest.approx(fresh(labeled[None], torch.tensor([0])).item())


def test_more_unlabeled_than_queue_keeps_the_newest():
    oim = make_oim(queue_size=2)
    feats = torch.stack([unit(1, 0), unit(0, 1), unit(1, 1)])
    oim(feats, torch.tensor([-1, -1, -1]))
    # sequential writes at 0,1,0: slot 0 holds the third, slot 1 the second
    torch.testing.assert_close(oim.queue, torch.stack([feats[2], feats[1]]))
    assert int(oim.queue_head) == 1


def test_no_labeled_roi_gives_zero_loss_with_graph_not_nan():
    oim = make_oim()
    x = torch.stack([unit(1, 0), unit(0, 1)]).requires_grad_()
    loss = oim(x, torch.tensor([-1, -1]))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(x.grad, torch.zeros_like(x))
    assert int(oim.queue_head) == 0 and oim.queue.abs().sum() > 0  # still pushed (wrapped to 0)


def test_empty_batch_and_eval_mode():
    oim = make_oim()
    assert oim(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long)).item() == 0.0
    oim.eval()
    oim(unit(1, 0)[None], torch.tensor([0]))
    assert oim.lut.abs().sum() == 0  # no update outside training


def test_pid_beyond_lookup_table_is_a_clear_error():
    oim = make_oim(num_pids=3)
    with pytest.raises(ValueError, match="NUM_PIDS=3"):
        oim(unit(1, 0)[None], torch.tensor([3]))


def test_roi_head_targets_exclude_background_and_keep_unlabeled():
    from detectron2.modeling import build_model

    model = build_model(tiny_cfg())
    p = Instances((10, 10))
    p.gt_classes = torch.tensor([0, 1, 0, 0, 1])  # 1 = background (NUM_CLASSES 1)
    p.gt_pids = torch.tensor([4, 4, -1, 2, -1])  # background rows inherit a GT's pid
    p.proposal_boxes = Boxes(torch.zeros(5, 4))
    empty = Instances((10, 10))  # image without people: no gt_pids at all
    empty.gt_classes = torch.tensor([1, 1])
    empty.proposal_boxes = Boxes(torch.zeros(2, 4))
    targets = model.roi_heads.reid_targets([p, empty])
    B = NOT_A_PERSON
    assert targets.tolist() == [4, B, -1, 2, B, B, B]


def _oim_worker(out_dir, feats, pids):
    cpu_threads(1)
    rank = comm.get_rank()
    oim = make_oim(num_pids=4, queue_size=5, dim=2)
    for step in range(2):
        x, y = feats[step][rank], pids[step][rank]
        oim(x, y)
    torch.save(oim.state_dict(), os.path.join(out_dir, f"rank{rank}.pth"))


def test_two_process_all_gather_gives_identical_memories(tmp_path):
    g = torch.Generator().manual_seed(0)

    def batch(n):
        return F.normalize(torch.randn(n, 2, generator=g), dim=1)

    # per step, per rank: different numbers of RoIs, repeated ids across ranks, unlabeled rows
    feats = [[batch(3), batch(2)], [batch(1), batch(4)]]
    pids = [
        [torch.tensor([0, -1, 2]), torch.tensor([2, -1])],
        [torch.tensor([-1]), torch.tensor([1, 0, -1, 3])],
    ]
    run_distributed(_oim_worker, 2, str(tmp_path), feats, pids)
    s0 = torch.load(tmp_path / "rank0.pth")
    s1 = torch.load(tmp_path / "rank1.pth")
    # a single process seeing both ranks' RoIs in rank order must end in the same state
    single = make_oim(num_pids=4, queue_size=5, dim=2)
    for step in range(2):
        single(torch.cat(feats[step]), torch.cat(pids[step]))
    for key in ("lut", "queue", "queue_head"):
        torch.testing.assert_close(s0[key], s1[key])
        torch.testing.assert_close(s0[key], single.state_dict()[key])
    assert int(s0["queue_head"]) == 4  # 4 unlabeled RoIs over both steps and ranks
