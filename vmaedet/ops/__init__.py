"""Numerical building blocks: box conventions and RoIAlign + max."""

from vmaedet.ops.boxes import extend_boxes, make_rois, random_aug, scale_boxes
from vmaedet.ops.roi_align import roi_align_max, roi_align_max_reference, roi_align_max_triton

__all__ = ["extend_boxes", "make_rois", "random_aug", "scale_boxes", "roi_align_max", "roi_align_max_reference", "roi_align_max_triton"]
