"""Set-level metrics against hand-computed counts."""

import math

import numpy as np
import pytest
import torch

from twdeploy.training.metrics import ConfusionMatrix, MultiLabelF1

# One 2x3 image, K = 3, one ignored pixel (where pred is 2: it must not count).
# Valid (target, pred): (0,0) (1,1) (2,1) (2,2) (1,0)
PRED = np.array([[[0, 1, 1], [2, 2, 0]]])
TARGET = np.array([[[0, 1, 2], [2, 255, 1]]])
# IoU: class 0: 1/(1+2-1) = 1/2; class 1: 1/(2+2-1) = 1/3; class 2: 1/(1+2-1) = 1/2
IOU = [1 / 2, 1 / 3, 1 / 2]


def test_iou_miou_and_pixel_accuracy_by_hand():
    cm = ConfusionMatrix(3)
    cm.update(PRED, TARGET)
    np.testing.assert_array_equal(cm.matrix, [[1, 0, 0], [1, 1, 0], [0, 1, 1]])
    np.testing.assert_allclose(cm.iou(), IOU)
    assert cm.miou() == pytest.approx(4 / 9)
    assert cm.pixel_accuracy() == pytest.approx(3 / 5)
    assert cm.summary() == {"miou": cm.miou(), "pixel_accuracy": cm.pixel_accuracy()}


def test_absent_class_is_nan_and_left_out_of_the_mean():
    cm = ConfusionMatrix(4)
    cm.update(PRED, TARGET)
    iou = cm.iou()
    assert math.isnan(iou[3])
    np.testing.assert_allclose(iou[:3], IOU)
    assert cm.miou() == pytest.approx(4 / 9)


def test_counts_are_summed_over_the_set_not_averaged_per_batch():
    # Batch A alone: class 0 IoU 1. Batch B alone: class 0 IoU 0, class 1 IoU 1/2.
    a_pred, a_true = np.zeros((1, 2, 2), np.int64), np.zeros((1, 2, 2), np.int64)
    b_pred, b_true = np.array([[[1, 1]]]), np.array([[[0, 1]]])
    cm = ConfusionMatrix(2)
    cm.update(a_pred, a_true)
    cm.update(b_pred, b_true)
    # Pooled: class 0 inter 4, union 5; class 1 inter 1, union 2.
    np.testing.assert_allclose(cm.iou(), [4 / 5, 1 / 2])
    assert cm.miou() == pytest.approx((4 / 5 + 1 / 2) / 2)
    assert cm.pixel_accuracy() == pytest.approx(5 / 6)


def test_torch_and_numpy_inputs_agree_and_merge_adds():
    np_cm, torch_cm = ConfusionMatrix(3), ConfusionMatrix(3)
    np_cm.update(PRED.astype(np.uint8), TARGET.astype(np.uint8))
    torch_cm.update(torch.from_numpy(PRED), torch.from_numpy(TARGET))
    np.testing.assert_array_equal(np_cm.matrix, torch_cm.matrix)
    np_cm.merge(torch_cm)
    np.testing.assert_array_equal(np_cm.matrix, 2 * torch_cm.matrix)
    np.testing.assert_allclose(np_cm.iou(), IOU)
    np_cm.reset()
    assert np_cm.matrix.sum() == 0
    assert math.isnan(np_cm.miou()) and math.isnan(np_cm.pixel_accuracy())


def test_bad_inputs_are_rejected():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="class ids"):
        cm.update(np.array([[3]]), np.array([[0]]))
    with pytest.raises(ValueError, match="class ids"):
        cm.update(np.array([[255]]), np.array([[0]]))  # the ignore label is skipped only in target
    with pytest.raises(TypeError, match="integer"):
        cm.update(np.array([[0.0]]), np.array([[0]]))
    with pytest.raises(ValueError, match="shape"):
        cm.update(np.zeros((1, 2)), np.zeros((2, 1)))
    with pytest.raises(ValueError, match="merge"):
        cm.merge(ConfusionMatrix(4))
    assert cm.matrix.sum() == 0


# Classes 0 (background) .. 3. Predicted = logit > 0.
LOGITS = np.array([[5.0, 1.0, -1.0, 2.0], [5.0, -1.0, 1.0, -2.0], [-5.0, -3.0, -1.0, 0.0]])
TAGS = np.array([[1, 1, 0, 0], [1, 1, 1, 0], [1, 0, 0, 1]], np.float32)
# Without background: class 1 tp1 fn1; class 2 tp1; class 3 fp1 fn1.


def test_multilabel_f1_by_hand():
    f1 = MultiLabelF1(4)
    f1.update(LOGITS, TAGS)
    assert f1.precision() == pytest.approx(2 / 3)
    assert f1.recall() == pytest.approx(2 / 4)
    assert f1.f1() == pytest.approx(4 / 7)
    assert f1.precision("macro") == pytest.approx((1 + 1 + 0) / 3)
    assert f1.recall("macro") == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert f1.f1("macro") == pytest.approx((2 / 3 + 1 + 0) / 3)
    np.testing.assert_allclose(f1.per_class_f1(), [2 / 3, 1, 0])
    assert f1.summary()["micro_f1"] == pytest.approx(4 / 7)
    with pytest.raises(ValueError, match="average"):
        f1.f1("weighted")


def test_multilabel_f1_with_background_torch_inputs_and_threshold():
    f1 = MultiLabelF1(4, exclude_background=False)
    f1.update(torch.from_numpy(LOGITS).bfloat16(), torch.from_numpy(TAGS))
    # Background adds tp 2, fn 1: micro tp 4, fp 1, fn 3.
    assert f1.f1() == pytest.approx(8 / 12)
    low = MultiLabelF1(4, threshold=-0.5)
    low.update(LOGITS, TAGS)  # now the 0.0 logit of class 3 in image 2 counts: class 3 tp1 fp1
    assert low.f1() == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))


def test_multilabel_f1_undefined_class_is_left_out_and_merge_adds():
    logits = np.concatenate([LOGITS, np.full((3, 1), -1.0)], axis=1)
    tags = np.concatenate([TAGS, np.zeros((3, 1), np.float32)], axis=1)
    a, b = MultiLabelF1(5), MultiLabelF1(5)
    a.update(logits[:2], tags[:2])
    b.update(logits[2:], tags[2:])
    a.merge(b)
    assert math.isnan(a.per_class_f1()[3])
    assert a.f1("macro") == pytest.approx(5 / 9)
    assert a.f1() == pytest.approx(4 / 7)
    a.reset()
    assert math.isnan(a.f1())
    with pytest.raises(ValueError, match=r"\(N, 5\)"):
        a.update(LOGITS, TAGS)
