#!/usr/bin/python3
"""Reference CLIP transform with Pillow + numpy, re-implementing Hugging Face's CLIPImageProcessor.

transformers is not installable here, so its steps are restated (transformers 4.x):

  image_processing_clip.CLIPImageProcessor.preprocess:
    convert_rgb -> resize(size={"shortest_edge": S}, resample=PILImageResampling.BICUBIC)
    -> center_crop(crop_size={"height": S, "width": S}) -> rescale(1/255) -> normalize(mean, std)

  image_transforms.get_resize_output_image_size(image, size=S, default_to_square=False):
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = S, int(S * long / short)
    return (new_long, new_short) if width <= height else (new_short, new_long)   # (height, width)

  image_transforms.resize: to_pil_image(uint8 array) -> pil.resize((w, h), resample=BICUBIC, reducing_gap=None)

  image_transforms.center_crop:
    top = (orig_height - crop_height) // 2 ; left = (orig_width - crop_width) // 2

  image_transforms.rescale: (image.astype(np.float64) * scale).astype(np.float32)
  image_transforms.normalize: (image - np.array(mean, dtype=image.dtype)) / np.array(std, dtype=image.dtype)

Usage: clip_transform_ref.py OUT_PREFIX SIZE FILTER IMAGE...
  Writes OUT_PREFIX.u8 (uint8 crops, B*S*S*3, HWC) and OUT_PREFIX.f32 (float32 NCHW, B*3*S*S).
  FILTER is bicubic or bilinear.
"""
import sys

import numpy as np
from PIL import Image

MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]


def output_size(height, width, size):
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size, int(size * long / short)
    return (new_long, new_short) if width <= height else (new_short, new_long)


def transform(path, size, resample):
    img = Image.open(path).convert("RGB")
    arr = np.array(img)  # uint8 HWC, as transformers' to_numpy_array
    h, w = output_size(arr.shape[0], arr.shape[1], size)
    resized = np.array(Image.fromarray(arr).resize((w, h), resample=resample, reducing_gap=None))
    top = (resized.shape[0] - size) // 2
    left = (resized.shape[1] - size) // 2
    crop = resized[top:top + size, left:left + size]
    x = (crop.astype(np.float64) * (1 / 255)).astype(np.float32)
    x = (x - np.array(MEAN, dtype=x.dtype)) / np.array(STD, dtype=x.dtype)
    return crop, x.transpose(2, 0, 1).astype(np.float32)


def main():
    prefix, size, filt = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    resample = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}[filt]
    crops, tensors = [], []
    for p in sys.argv[4:]:
        c, t = transform(p, size, resample)
        crops.append(c)
        tensors.append(t)
    np.ascontiguousarray(np.stack(crops)).tofile(prefix + ".u8")
    np.ascontiguousarray(np.stack(tensors)).astype("<f4").tofile(prefix + ".f32")


if __name__ == "__main__":
    main()
