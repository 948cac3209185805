"""SAM2 video predictor as a :class:`~napari_sseg.core.proposals.VolumeProposer`.

The official ``SAM2VideoPredictor`` (``init_state``, ``add_new_points_or_box``,
``propagate_in_video`` forward and reverse) carries one mask per labelled point through the
planes of a stack. The package reads frames from a JPEG folder or an MP4 file only; here the
planes come from memory: :func:`init_state_from_arrays` resizes and normalises them exactly as
``sam2.utils.misc.load_video_frames`` does and hands them to the official ``init_state``.

Long stacks are processed in chunks of planes (``chunk``) with ``offload_video_to_cpu`` and
``offload_state_to_cpu``, so memory does not grow with the number of planes; a chunk without
points gets no masks (the weight-free volume expansion fills it). Masks are returned per plane
as bounding-box crops. This is the only place, with :mod:`.sam2`, where (row, col) becomes
SAM2's (x, y).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator

import numpy as np

from ..core.proposals import MaskCrop

logger = logging.getLogger(__name__)

__all__ = ["SAM2VideoProposer", "build_sam2_video_model", "init_state_from_arrays",
           "video_proposer_like"]

_PATCH_LOCK = threading.Lock()
_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_STD = np.array([0.229, 0.224, 0.225], np.float32)


def build_sam2_video_model(model: str = "tiny", checkpoint=None, *, device: str = "cpu",
                           image_size: int | None = None):
    """The official ``SAM2VideoPredictor`` for SAM2.1 ``model``.

    Without ``checkpoint`` the weights are random (tests and benchmarks: compute does not depend
    on them); with one it is loaded safely by :func:`~napari_sseg.backends.sam2.load_sam2_model`
    (``weights_only=True``, shape checks) and copied in. ``image_size`` overrides the model's
    input size (1024) for small random-weight tests only: trained weights expect 1024.
    """
    from .sam2 import _check_model_name, import_sam2, load_sam2_model

    cfg, _, _ = _check_model_name(model)
    import_sam2(device)
    from sam2.build_sam import build_sam2_video_predictor

    extra = [f"++model.image_size={int(image_size)}"] if image_size else []
    predictor = build_sam2_video_predictor(cfg, ckpt_path=None, device=device,
                                           hydra_overrides_extra=extra)
    if checkpoint is not None:
        sam = load_sam2_model(model, checkpoint, device="cpu")
        predictor.load_state_dict(sam.state_dict(), strict=False)
    predictor.eval()
    return predictor


def _frames_tensor(planes: np.ndarray, image_size: int):
    """(Z, 3, S, S) float32 tensor of the planes resized to ``image_size`` and normalised."""
    import torch

    from ..core.image import to_rgb_uint8

    out = torch.empty((len(planes), 3, image_size, image_size), dtype=torch.float32)
    for i, plane in enumerate(planes):
        rgb = torch.from_numpy(to_rgb_uint8(plane)).permute(2, 0, 1)[None].float() / 255.0
        rgb = torch.nn.functional.interpolate(rgb, size=(image_size, image_size),
                                              mode="bilinear", align_corners=False)[0]
        out[i] = (rgb - torch.from_numpy(_MEAN)[:, None, None]) / torch.from_numpy(_STD)[:, None,
                                                                                         None]
    return out


def init_state_from_arrays(predictor, planes: np.ndarray, *, offload_video_to_cpu: bool = True,
                           offload_state_to_cpu: bool = True):
    """The official ``predictor.init_state`` on planes held in memory (no JPEG folder).

    ``sam2.sam2_video_predictor.load_video_frames`` is swapped, for this call only, for a
    loader that returns the planes resized and normalised as the package's own loader does.
    """
    import sam2.sam2_video_predictor as svp

    frames = _frames_tensor(planes, predictor.image_size)
    height, width = planes.shape[1:3]

    def load(video_path, image_size, offload_video_to_cpu, compute_device=None, **_):
        images = frames if offload_video_to_cpu else frames.to(compute_device)
        return images, height, width

    with _PATCH_LOCK:
        original = svp.load_video_frames
        svp.load_video_frames = load
        try:
            return predictor.init_state(video_path="<arrays>",
                                        offload_video_to_cpu=offload_video_to_cpu,
                                        offload_state_to_cpu=offload_state_to_cpu)
        finally:
            svp.load_video_frames = original


def _scored_crop(logits: np.ndarray) -> tuple[float, MaskCrop | None]:
    """The mask ``logits > 0`` as a crop, and the mean sigmoid of the logits inside it."""
    crop = _crop(logits > 0)
    if crop is None:
        return 0.0, None
    inside = logits[crop.slices][crop.mask]
    return float((1 / (1 + np.exp(-inside))).mean()), crop


def _crop(mask: np.ndarray) -> MaskCrop | None:
    rows = np.flatnonzero(mask.any(axis=1))
    if not rows.size:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    return MaskCrop(int(r0), int(c0), np.ascontiguousarray(mask[r0:r1, c0:c1]))


class SAM2VideoProposer:
    """Multi-class mask propagation with SAM2's video predictor.

    Parameters
    ----------
    predictor : SAM2VideoPredictor
        The official predictor (:func:`build_sam2_video_model`), or any object with its
        ``image_size``, ``init_state``, ``add_new_points_or_box``, ``propagate_in_video`` and
        ``reset_state``.
    chunk : int
        Planes per inference state; memory is bounded by one chunk.
    offload : bool
        ``offload_video_to_cpu`` and ``offload_state_to_cpu``.
    name : str
    init_state : callable, optional
        ``init_state(predictor, planes, offload_video_to_cpu=..., offload_state_to_cpu=...)``;
        default :func:`init_state_from_arrays` (a fake predictor in tests may bring its own).
    """

    def __init__(self, predictor, *, chunk: int = 32, offload: bool = True,
                 name: str = "SAM2.1 video", init_state=None):
        if chunk < 1:
            raise ValueError(f"chunk must be at least 1, got {chunk}")
        self.init_state = init_state or init_state_from_arrays
        self.predictor = predictor
        self.chunk = int(chunk)
        self.offload = offload
        self.name = name

    def _inference(self):
        try:
            import torch
        except ImportError:  # a fake predictor in tests needs no torch
            return contextlib.nullcontext()
        return torch.inference_mode()

    def propagate(self, volume: np.ndarray, coords: np.ndarray, planes: np.ndarray,
                  labels: np.ndarray) -> Iterator[tuple[int, list]]:
        """One object per point, carried forward and backward through each chunk of planes.

        Yields every plane once with its masks ``(class, score, MaskCrop)``; the score is the
        mean sigmoid of the mask's logits inside it.
        """
        vol = np.asarray(volume)
        coords = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
        planes = np.asarray(planes, dtype=np.int64)
        labels = np.asarray(labels, dtype=np.int64)
        n_planes = vol.shape[0]
        for start in range(0, n_planes, self.chunk):
            stop = min(n_planes, start + self.chunk)
            inside = np.flatnonzero((planes >= start) & (planes < stop))
            if not inside.size:
                for z in range(start, stop):
                    yield z, []
                continue
            per_plane = {z: {} for z in range(start, stop)}
            with self._inference():
                state = self.init_state(self.predictor, vol[start:stop],
                                               offload_video_to_cpu=self.offload,
                                               offload_state_to_cpu=self.offload)
                for i in inside:
                    # the only (row, col) -> (x, y) flip of the video path
                    xy = np.array([[coords[i, 1], coords[i, 0]]], dtype=np.float32)
                    self.predictor.add_new_points_or_box(
                        state, frame_idx=int(planes[i] - start), obj_id=int(i), points=xy,
                        labels=np.array([1], np.int32))
                for reverse in (False, True):
                    for frame, obj_ids, logits in self.predictor.propagate_in_video(
                            state, reverse=reverse):
                        lg = np.asarray(logits.detach().cpu() if hasattr(logits, "detach")
                                        else logits, dtype=np.float32)
                        for k, obj in enumerate(obj_ids):
                            # kept as a crop and a score: memory grows with the masks only
                            per_plane[start + int(frame)][int(obj)] = _scored_crop(
                                lg[k].reshape(vol.shape[1:3]))
                self.predictor.reset_state(state)
                del state
            for z in range(start, stop):
                masks = [(int(labels[obj]), score, crop)
                         for obj, (score, crop) in sorted(per_plane.pop(z).items())
                         if crop is not None]
                yield z, masks


def video_proposer_like(image_proposer, *, chunk: int = 32) -> SAM2VideoProposer:
    """A video proposer with the model, weights and device of a SAM2 image proposer.

    Parameters
    ----------
    image_proposer : SAM2Proposer
        The image proposer the backend settings built (its ``sam`` model holds the weights).
    chunk : int
        Planes per inference state.
    """
    predictor = build_sam2_video_model(image_proposer.model_name, device=image_proposer.device)
    predictor.load_state_dict(image_proposer.sam.state_dict(), strict=False)
    predictor.eval()
    return SAM2VideoProposer(predictor, chunk=chunk, name=f"{image_proposer.name}, video")
