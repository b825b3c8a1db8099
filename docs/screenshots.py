"""Make the README's two screenshots from real output: the demo stickers and the rating screen.

Sets up a scratch site exactly as ``make run`` does (migrate, install the default models, the
demo), composes the demo batch's stickers into a grid over a checkerboard, then serves the site
and photographs the rating screen as the demo rater sees it, in Debian's Chromium.

    python docs/screenshots.py            # writes docs/images/demo-stickers.png, rating-screen.png
"""

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "docs" / "images"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


def manage(env: dict, *args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sticker_grid(env: dict, out: Path) -> int:
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stickerloop.settings")
    django.setup()
    from django.core.files.storage import default_storage
    from PIL import Image, ImageDraw

    from generation.models import Candidate

    candidates = list(Candidate.objects.order_by("prompt__position", "seed"))
    columns, cell = 8, 128
    rows = -(-len(candidates) // columns)
    sheet = Image.new("RGBA", (columns * cell, rows * cell), (255, 255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    # A checkerboard shows where the stickers are transparent, as the rating screen does.
    for y in range(0, rows * cell, 16):
        for x in range((y // 16) % 2 * 16, columns * cell, 32):
            draw.rectangle((x, y, x + 15, y + 15), fill=(225, 225, 225, 255))
    for index, candidate in enumerate(candidates):
        with default_storage.open(candidate.file) as fh:
            image = Image.open(fh).convert("RGBA").resize((cell, cell), Image.Resampling.NEAREST)
        sheet.alpha_composite(image, ((index % columns) * cell, (index // columns) * cell))
    sheet.convert("RGB").save(out, optimize=True)
    return len(candidates)


def rating_screen(env: dict, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/login/", timeout=1)
                break
            except Exception:
                time.sleep(0.2)
        from annotation.models import Campaign

        campaign = Campaign.objects.get(name="Demo: alignment and style")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.goto(f"http://127.0.0.1:{port}/login/?next=/rate/{campaign.pk}/")
            page.fill("#id_username", "rater")
            page.fill("#id_password", "stickerloop-demo")
            page.keyboard.press("Enter")
            page.wait_for_url(f"**/rate/{campaign.pk}/")
            page.wait_for_selector("img", state="visible")
            page.wait_for_timeout(800)
            page.screenshot(path=str(out))
            browser.close()
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="stickerloop-shots-") as scratch:
        env = {
            **os.environ,
            "STICKERLOOP_VAR_DIR": scratch,
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        }
        env.pop("DATABASE_URL", None)
        env.pop("CELERY_BROKER_URL", None)
        manage(env, "migrate", "--noinput", "-v", "0")
        manage(env, "build_default_models")
        manage(env, "demo_setup")
        count = sticker_grid(env, IMAGES / "demo-stickers.png")
        rating_screen(env, IMAGES / "rating-screen.png")
    print(f"wrote {IMAGES / 'demo-stickers.png'} ({count} stickers) and rating-screen.png")


if __name__ == "__main__":
    main()
