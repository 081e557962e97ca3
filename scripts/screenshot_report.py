"""Screenshots of a study's report for the README, taken by Debian's Chromium through Playwright.

    .venv/bin/xdistill run                                     # the default study -> runs/gunpoint-tsd
    .venv/bin/python scripts/screenshot_report.py runs/gunpoint-tsd

writes docs/report.png (a 1400x900 window: the top of the page, down to the figures) and docs/report-390.png (a
390x844 phone: the first screens). Rerun both commands whenever the report changes. The command fails when the
page is wider than the window or raises a console error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
#: (file, window width, window height, how much of the page to keep, in CSS pixels)
SHOTS = [("report.png", 1400, 900, 1500), ("report-390.png", 390, 844, 2400)]


def shoot(report: Path, out: Path) -> list[str]:
    """Take every shot of ``report`` into ``out``; return the problems found (empty: none)."""
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for name, width, height, keep in SHOTS:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(report.resolve().as_uri())
            page.wait_for_selector("#explorer-view .strip, #decision")
            wide = page.evaluate("document.documentElement.scrollWidth")
            if wide > width:
                problems.append(f"{name}: the page is {wide} px wide in a {width} px window")
            tall = page.evaluate("document.documentElement.scrollHeight")
            clip = {"x": 0, "y": 0, "width": width, "height": min(keep, tall)}
            page.screenshot(path=str(out / name), clip=clip, full_page=True)
            print(f"{out / name}: {width}x{clip['height']} of a page {wide}x{tall}")
            page.close()
        browser.close()
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, nargs="?", default=Path("runs/gunpoint-tsd"), help="a study's run directory")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs")
    args = parser.parse_args(argv)
    report = args.run / "report" / "report.html"
    if not report.exists():
        print(f"screenshot_report: no report at {report}: run `.venv/bin/xdistill run` first", file=sys.stderr)
        return 2
    problems = shoot(report, args.out)
    for problem in problems:
        print(f"screenshot_report: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
