"""Variant rendering speed: a 12 MP JPEG to sized variants on one core.

Prints milliseconds per image (CPU time of this process, which runs on one core) for
image_service.processing.render_variants and for a naive Pillow baseline measured in the same
run (open, thumbnail and save once per size), and the ratio. Target: three JPEG variants
(256, 512, 1024 px) in at most 100 ms.

    .venv/bin/python -m bench.variants [--rounds N]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import time

from PIL import Image, ImageFilter

from image_service.imaging.render import DEFAULT_VARIANTS, VariantSpec, render_variants

THREE_JPEG = (
    VariantSpec("thumb", 256, ("jpeg",)),
    VariantSpec("small", 512, ("jpeg",)),
    VariantSpec("medium", 1024, ("jpeg",)),
)
TARGET_MS = 100.0


def photo_like_jpeg(width: int = 4000, height: int = 3000, quality: int = 88) -> bytes:
    """12 MP with smooth gradients and textured noise at quality 88: about the 3-4 MB of a
    phone camera's 12 MP JPEG (pure noise would be larger and slower than any photo)."""
    gradient = Image.linear_gradient("L").resize((width, height))
    noise = Image.frombytes("L", (width // 6, height // 6), os.urandom(width * height // 36))
    noise = noise.resize((width, height)).filter(ImageFilter.GaussianBlur(1))
    image = Image.merge(
        "RGB", (gradient, noise, gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    )
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def naive(data: bytes, specs: tuple[VariantSpec, ...]) -> list[bytes]:
    outputs = []
    for spec in specs:
        with Image.open(io.BytesIO(data)) as image:
            image.thumbnail((spec.max_side, spec.max_side))
            for _fmt in spec.formats:
                buffer = io.BytesIO()
                image.convert("RGB").save(buffer, "JPEG", quality=82)
                outputs.append(buffer.getvalue())
    return outputs


def cpu_ms(function: object, *args: object, rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        started = time.process_time()
        function(*args)  # type: ignore[operator]
        samples.append((time.process_time() - started) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as the target says

    data = photo_like_jpeg()
    print(
        f"input: 4000x3000 JPEG, {len(data) / 1e6:.1f} MB; median of {args.rounds} rounds, CPU ms"
    )
    ours = cpu_ms(render_variants, data, THREE_JPEG, rounds=args.rounds)
    baseline = cpu_ms(naive, data, THREE_JPEG, rounds=args.rounds)
    verdict = "met" if ours <= TARGET_MS else "MISSED"
    print(
        f"three JPEG variants (256/512/1024)  ours {ours:7.1f} ms   naive Pillow {baseline:7.1f} ms"
        f"   ratio {ours / baseline:.2f}   target <= {TARGET_MS:.0f} ms: {verdict}"
    )
    default = cpu_ms(render_variants, data, DEFAULT_VARIANTS, rounds=args.rounds)
    print(f"default variants (thumb+medium, JPEG+WebP)  ours {default:7.1f} ms")


if __name__ == "__main__":
    main()
