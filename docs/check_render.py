"""Check that the built site renders in a browser: headless Chromium opens pages of the
HTML build, takes a screenshot of each and dumps its DOM after the scripts ran; a page
fails when a heading or an API entry it must show is missing, or its screenshot is empty
or blank.

    python docs/check_render.py docs/_build/html [--shots DIR]

Needs Chromium (Debian's package: ``apt-get install -y chromium``); as root it runs with
``--no-sandbox``.  Exits 1 on any failure, naming the page and what was wrong.  Used by
.ci/docs; the screenshots are kept in DIR (default: a temporary directory) to look at.
"""
import argparse
import html.parser
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

import convx

# Each page and what its DOM must hold: headings (h1-h3, their text without the "#"
# permalink) and the ids of API entries (autodoc's <dt id="...">).
NOTEBOOK_NAMES = list(convx._notebook.__all__)
PAGES = {
    "index.html": {"headings": ["convx"]},
    "quickstart.html": {"headings": ["Quick start", "Install", "In the notebook",
                                     "The public API", "Train a network"]},
    "notebook.html": {"headings": ["Switching the chapter-5 notebook to convx",
                                   "The bug in the last section"]},
    "conventions.html": {"headings": ["Conventions", "Layouts",
                                      "The book's weight layout against PyTorch's", "Padding",
                                      "Dtypes"]},
    "api/public.html": {"headings": ["The public API", "2-D", "1-D"],
                        "ids": [f"convx.{n}" for n in convx._api.__all__]},
    "api/notebook.html": {"headings": ["The notebook's names", "Helpers",
                                       "Channels and a batch"],
                          "ids": [f"convx.{n}" for n in NOTEBOOK_NAMES]},
    "api/layers.html": {"headings": ["Layers"],
                        "ids": ["convx.layers.Conv2D_Op", "convx.layers.Conv2D",
                                "convx.layers.Conv2D.forward", "convx.layers.Conv2D.backward"]},
    "api/dask.html": {"headings": ["dask arrays"], "ids": ["convx.dask.conv2d"]},
    "benchmarks.html": {"headings": ["convx against PyTorch and a NumPy im2col"],
                        "images": ["benchmarks.png"]},
    "changelog.html": {"headings": ["Changelog"]},
}


class _Dom(html.parser.HTMLParser):
    """The text of h1-h3 (without the permalink "#"), the ids, the <img> sources."""

    def __init__(self):
        super().__init__()
        self.headings, self.ids, self.images = [], set(), []
        self._heading = None
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        if tag in ("h1", "h2", "h3"):
            self._heading = []
        elif self._heading is not None and "headerlink" in (attrs.get("class") or ""):
            self._skip += 1

    def handle_endtag(self, tag):
        if tag == "a" and self._skip:
            self._skip -= 1
        elif tag in ("h1", "h2", "h3") and self._heading is not None:
            # Sphinx writes typographic apostrophes: compare with plain ones
            text = "".join(self._heading).replace("\u2019", "'")
            self.headings.append(" ".join(text.split()))
            self._heading = None

    def handle_data(self, data):
        if self._heading is not None and not self._skip:
            self._heading.append(data)


def _png_pixels(path):
    """The screenshot's pixels, an (H, W, 3) uint8 array (Pillow: the docs extra has it)."""
    from PIL import Image
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _blank(pixels):
    """Why the screenshot looks blank, or None: a page that rendered has text, i.e. a
    fair number of pixels away from the background colour."""
    rgb = pixels[..., :3].reshape(-1, 3)
    background = np.median(rgb, axis=0)
    differ = np.abs(rgb.astype(np.int32) - background).max(axis=1) > 40
    share = differ.mean()
    if share < 0.01:
        return f"only {share:.2%} of the pixels differ from the background: blank"
    return None


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("check_render: no Chromium found (Debian: apt-get install -y chromium)")


def _run(browser, profile, args):
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           f"--user-data-dir={profile}", "--window-size=1280,900",
           "--virtual-time-budget=5000"] + args
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)


def check(site, shots):
    browser = _chromium()
    failures = []
    with tempfile.TemporaryDirectory() as profile:
        for page, expected in PAGES.items():
            path = os.path.abspath(os.path.join(site, page))
            if not os.path.isfile(path):
                failures.append(f"{page}: not built")
                continue
            url = "file://" + path
            dom = _run(browser, profile, ["--dump-dom", url])
            parsed = _Dom()
            parsed.feed(dom.stdout)
            for heading in expected.get("headings", ()):
                if heading not in parsed.headings:
                    failures.append(f"{page}: heading {heading!r} missing "
                                    f"(found {parsed.headings[:8]}...)")
            for ident in expected.get("ids", ()):
                if ident not in parsed.ids:
                    failures.append(f"{page}: API entry {ident!r} missing")
            for image in expected.get("images", ()):
                if not any(src.endswith(image) for src in parsed.images):
                    failures.append(f"{page}: image {image!r} missing")
            shot = os.path.join(shots, page.replace("/", "-").replace(".html", ".png"))
            if os.path.exists(shot):
                os.remove(shot)
            _run(browser, profile, [f"--screenshot={shot}", url])
            if not os.path.isfile(shot) or os.path.getsize(shot) == 0:
                failures.append(f"{page}: no screenshot written")
                continue
            try:
                why = _blank(_png_pixels(shot))
            except OSError as e:
                why = f"screenshot unreadable: {e}"
            if why:
                failures.append(f"{page}: {why} ({shot})")
            else:
                print(f"check_render: {page}: {len(parsed.headings)} headings, "
                      f"{len(expected.get('ids', ()))} API entries, screenshot {shot}")
    return failures


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("site", help="the HTML build directory (sphinx -b html's output)")
    ap.add_argument("--shots", help="directory for the screenshots (default: a temporary one)")
    args = ap.parse_args()
    shots = args.shots or tempfile.mkdtemp(prefix="convx-docs-shots-")
    os.makedirs(shots, exist_ok=True)
    failures = check(args.site, shots)
    for failure in failures:
        print(f"check_render: FAIL {failure}", file=sys.stderr)
    if failures:
        sys.exit(1)
    print(f"check_render: {len(PAGES)} pages render; screenshots in {shots}")


if __name__ == "__main__":
    main()
