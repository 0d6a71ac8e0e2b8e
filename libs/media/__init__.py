"""Media for kmono: the mask-sequence type and its codecs, video decode/encode, mask overlays.

    from libs.media import MaskSequence, MaskSequenceBuilder, MaskObject, load, save, read_video, write_video

    seq = MaskSequence.from_id_maps(id_maps, [MaskObject(1, "dog")], fps=8)   # (T, H, W) ints, 0 = background
    save(seq, "dog.json"); assert load("dog.json") == seq                     # .json .npz .pb .zip or a directory
    frames, fps = read_video("dog.mp4")
    write_video("check.mp4", render_overlay(frames, seq, side_by_side=True), fps)

masks.py documents the type (one owner per pixel, RLE storage), codecs.py the file layouts, video.py the
codec choices, overlay.py the rendering; limits.py the decoding guard (`DecodeLimits`, checked before anything
from outside is allocated) and policy.py which references a server follows (`MediaPolicy`).
"""

from libs.media.codecs import (
    dumps,
    from_coco_dict,
    from_proto,
    load,
    load_coco_video,
    load_npz,
    load_png_frames,
    loads,
    save,
    save_npz,
    save_png_frames,
    to_coco_dict,
    to_proto,
)
from libs.media.limits import DecodeLimits
from libs.media.masks import BoundingBox, MaskObject, MaskSequence, MaskSequenceBuilder, Visibility
from libs.media.overlay import iter_masks, iter_overlay, render_masks, render_overlay
from libs.media.palette import object_color
from libs.media.policy import MediaPolicy
from libs.media.video import (
    Video,
    VideoDecodeError,
    VideoInfo,
    encode_video,
    iter_video_frames,
    probe_video,
    read_video,
    write_video,
)

__all__ = [
    "BoundingBox",
    "DecodeLimits",
    "MaskObject",
    "MaskSequence",
    "MaskSequenceBuilder",
    "MediaPolicy",
    "Video",
    "VideoDecodeError",
    "VideoInfo",
    "Visibility",
    "dumps",
    "encode_video",
    "from_coco_dict",
    "from_proto",
    "iter_masks",
    "iter_overlay",
    "iter_video_frames",
    "load",
    "load_coco_video",
    "load_npz",
    "load_png_frames",
    "loads",
    "object_color",
    "probe_video",
    "read_video",
    "render_masks",
    "render_overlay",
    "save",
    "save_npz",
    "save_png_frames",
    "to_coco_dict",
    "to_proto",
    "write_video",
]
