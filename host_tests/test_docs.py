# The docs as a reader meets them: every link to a file of this repository leads somewhere, and
# the wiring picture is a picture (an SVG a browser can show) with what the README says it shows.
import glob
import os
import re
import xml.etree.ElementTree as ET

import pytest

from harness import ROOT

DOCS = ["README.md"] + sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))


def read(rel):
    with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
        return f.read()


def slug(heading):
    """The anchor GitHub gives a heading."""
    s = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return s.replace(" ", "-")


def anchors(rel):
    return {slug(h) for h in re.findall(r"^#+ (.*)$", read(rel), re.M)}


@pytest.mark.parametrize("doc", DOCS)
def test_every_link_to_a_file_here_leads_somewhere(doc):
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", read(doc)):
        if re.match(r"\w+:", target):          # https:, mailto: ...
            continue
        path, _, anchor = target.partition("#")
        rel = os.path.normpath(os.path.join(os.path.dirname(doc), path)) if path else doc
        if not os.path.exists(os.path.join(ROOT, rel)):
            broken.append(target)
        elif anchor and rel.endswith(".md") and anchor not in anchors(rel):
            broken.append(target)
    assert not broken, "%s links to what is not there: %s" % (doc, broken)


def test_the_readme_shows_the_wiring_picture_in_flash_a_board():
    text = read("README.md")
    section = text[text.index("\n## Flash a board\n"):]
    section = section[:section.index("\n## ", 1)]
    assert re.search(r"!\[[^\]]+\]\(docs/wiring\.svg\)", section)


def test_the_wiring_picture_is_an_svg_with_what_the_readme_says():
    root = ET.parse(os.path.join(ROOT, "docs", "wiring.svg")).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg" and root.get("viewBox")
    words = " ".join(t.strip() for t in root.itertext())
    for shown in ("BOOT = GPIO0", "LED = GPIO2", "GPIO4", "1 kΩ", "2N2222 (NPN)", "flyback diode",
                  "1N4007", "common ground", "relay module", "Never switch mains"):
        assert shown in words, shown
