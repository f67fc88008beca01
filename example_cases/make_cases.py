"""Draw the example case that the quick start runs: a scene, a mask and a prompt, made in code.

    python example_cases/make_cases.py [FOLDER]   (default: this script's folder)

Writes FOLDER/park_bench/{scene.png, mask.png, prompt.txt}, the layout `dreammix-batch` reads.
No photo of anyone's is needed: the scene is a park drawn with PIL.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

WIDTH, HEIGHT = 768, 512
PROMPT = "a photo of a red backpack on a wooden park bench, sunny afternoon"


def scene() -> Image.Image:
    image = Image.new("RGB", (WIDTH, HEIGHT))
    draw = ImageDraw.Draw(image)
    horizon = int(HEIGHT * 0.55)
    for y in range(horizon):  # sky, lighter towards the horizon
        t = y / horizon
        draw.line([(0, y), (WIDTH, y)], fill=(int(90 + 110 * t), int(150 + 80 * t), int(230 - 10 * t)))
    for y in range(horizon, HEIGHT):  # lawn, darker towards the viewer
        t = (y - horizon) / (HEIGHT - horizon)
        draw.line([(0, y), (WIDTH, y)], fill=(int(110 - 40 * t), int(170 - 50 * t), int(70 - 20 * t)))
    for x, r in ((90, 70), (230, 55), (640, 80)):  # trees behind the bench
        draw.rectangle([x - 8, horizon - 40, x + 8, horizon + 10], fill=(90, 60, 35))
        draw.ellipse([x - r, horizon - 40 - 2 * r, x + r, horizon - 30], fill=(50, 120, 50))
    seat_top, seat_bottom = 330, 350
    draw.rectangle([250, 250, 560, 268], fill=(140, 95, 55))  # backrest
    draw.rectangle([250, 276, 560, 294], fill=(140, 95, 55))
    draw.rectangle([240, seat_top, 570, seat_bottom], fill=(160, 110, 65))  # seat
    for x in (262, 540):  # legs
        draw.rectangle([x, seat_bottom, x + 14, 420], fill=(60, 60, 65))
    draw.ellipse([200, 410, 610, 440], fill=(70, 105, 50))  # the bench's shadow
    return image.filter(ImageFilter.GaussianBlur(0.8))


def mask() -> Image.Image:
    """White where the subject goes: on the seat, left of centre."""
    image = Image.new("L", (WIDTH, HEIGHT), 0)
    ImageDraw.Draw(image).rounded_rectangle([300, 205, 430, 345], radius=28, fill=255)
    return image


def write_case(folder: Path) -> Path:
    case = folder / "park_bench"
    case.mkdir(parents=True, exist_ok=True)
    scene().save(case / "scene.png")
    mask().save(case / "mask.png")
    (case / "prompt.txt").write_text(PROMPT + "\n")
    return case


if __name__ == "__main__":
    print(write_case(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent))
