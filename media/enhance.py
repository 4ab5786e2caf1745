"""Image work for attachments with OpenCV (CPU-bound: call these in an executor, never on the event loop).

`thumbnail`: a JPEG at most 320 px on its longer side. `enhance`: CLAHE on the lightness channel (local
contrast, the dim-room skin photo) then a light non-local-means denoise; the original is kept beside it.
"""

from __future__ import annotations

import cv2
import numpy as np

THUMB_PX = 320


def _decode(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("the image cannot be decoded")
    return image


def thumbnail(data: bytes) -> bytes:
    image = _decode(data)
    h, w = image.shape[:2]
    scale = min(1.0, THUMB_PX / max(h, w))
    if scale < 1.0:
        image = cv2.resize(image, (max(1, int(w * scale)), max(1, int(h * scale))), interpolation=cv2.INTER_AREA)
    ok, out = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
    if not ok:
        raise ValueError("the thumbnail cannot be encoded")
    return bytes(out)


def enhance(data: bytes) -> bytes:
    """CLAHE (clip 2.0, 8×8 tiles) on L of Lab, then fastNlMeansDenoisingColored (h 3): a JPEG."""
    image = _decode(data)
    lab = cv2.cvtColor(image, cv2.COLOR_BGR2LAB)
    lightness, a, b = cv2.split(lab)
    lightness = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(lightness)
    image = cv2.cvtColor(cv2.merge((lightness, a, b)), cv2.COLOR_LAB2BGR)
    image = cv2.fastNlMeansDenoisingColored(image, None, 3, 3, 7, 21)
    ok, out = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise ValueError("the enhanced image cannot be encoded")
    return bytes(out)
