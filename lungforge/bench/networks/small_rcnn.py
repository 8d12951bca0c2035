"""A CPU-sized torchvision Faster R-CNN for nodules of 1–30 px (`bench localize --preset cpu`).

The paper's detector (ResNet-50 FPN, anchors 8–128 px at 256 px, RPN positive IoU 0.7) cannot
learn the demo phantom's nodules: at 128 px their boxes are 1–7 px wide, the finest FPN level has
stride 4, and no anchor reaches IoU 0.7 with a box under ~6 px (docs/localization.md gives the
numbers). This one keeps torchvision's FasterRCNN and changes what the data asks for:

- features at strides 2, 4, 8 and 16: a ResNet-18 cut after layer2 (stem, layer1, layer2) under
  an FPN with a max-pool level, so a 2 px box has anchors every 2 px;
- square anchors (nodules are round), two sizes per level: 2/4, 6/8, 12/16 and 24/32 px;
- RPN positive IoU 0.25 and negative 0.1 (a 2 px box's best anchor reaches 0.25, never 0.7),
  half positives among 128 sampled anchors; RoI positives at IoU 0.4 and a positive fraction of
  one half, so the box head is not trained on background alone;
- fewer proposals (600 → 150 after NMS in training, 300 → 100 at test): a slice holds few nodules.
"""

from __future__ import annotations

import torch

STRIDES_PX = (2, 4, 8, 16)
ANCHOR_SIZES_PX = ((2, 4), (6, 8), (12, 16), (24, 32))
RPN_FG_IOU = 0.25
RPN_BG_IOU = 0.1
SMALL_DETECTOR = dict(
    rpn_fg_iou_thresh=RPN_FG_IOU,
    rpn_bg_iou_thresh=RPN_BG_IOU,
    rpn_batch_size_per_image=128,
    rpn_positive_fraction=0.5,
    rpn_pre_nms_top_n_train=600,
    rpn_post_nms_top_n_train=150,
    rpn_pre_nms_top_n_test=300,
    rpn_post_nms_top_n_test=100,
    box_fg_iou_thresh=0.4,
    box_bg_iou_thresh=0.4,
    box_positive_fraction=0.5,
)
"""FasterRCNN keyword arguments of the small detector (besides sizes, anchors and RoI samples)."""


def small_anchor_generator() -> torch.nn.Module:
    """torchvision AnchorGenerator of :data:`ANCHOR_SIZES_PX`, aspect ratio 1, one entry per level."""
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    return AnchorGenerator(sizes=ANCHOR_SIZES_PX, aspect_ratios=((1.0,),) * len(ANCHOR_SIZES_PX))


def small_faster_rcnn(size: int, fpn_channels: int, head_dim: int, roi_samples: int) -> torch.nn.Module:
    """Faster R-CNN (2 classes) on a ResNet-18 stem + layer1 + layer2 FPN of `fpn_channels`, input
    `size` px square, a `head_dim` two-layer box head over 7×7 RoIAlign on the stride-2…8 levels."""
    from torch import nn
    from torchvision.models import resnet18
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.ops import MultiScaleRoIAlign
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    body = resnet18(weights=None, norm_layer=nn.BatchNorm2d)
    backbone = BackboneWithFPN(
        body,
        return_layers={"relu": "0", "layer1": "1", "layer2": "2"},
        in_channels_list=[64, 64, 128],
        out_channels=fpn_channels,
        extra_blocks=LastLevelMaxPool(),
        norm_layer=None,
    )
    pooler = MultiScaleRoIAlign(featmap_names=["0", "1", "2"], output_size=7, sampling_ratio=2)
    head = TwoMLPHead(fpn_channels * 7 * 7, head_dim)
    return FasterRCNN(
        backbone,
        min_size=size,
        max_size=size,
        rpn_anchor_generator=small_anchor_generator(),
        box_roi_pool=pooler,
        box_head=head,
        box_predictor=FastRCNNPredictor(head_dim, 2),
        box_batch_size_per_image=roi_samples,
        **SMALL_DETECTOR,
    )
