"""The benchmarks are scripts, not a package: load one by file name."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxrseg.data.synthetic import phantom

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
COLUMNS = ("name", "group", "finding", "view", "width", "height", "license", "patientid")
FILMS = [  # (name, group folder, finding, label for the phantom, size)
    ("c1", "covid", "COVID-19", "COVID-19", (150, 130)),
    ("c2", "covid", "COVID-19", "COVID-19", (128, 128)),
    ("n-strep", "negative", "Streptococcus", "Non-COVID", (200, 170)),
    ("n-pcp", "negative", "Pneumocystis", "Non-COVID", (96, 110)),
    ("n-sars", "negative", "SARS", "Non-COVID", (140, 140)),
    ("n-normal", "negative", "No Finding", "Normal", (128, 160)),
]


@pytest.fixture()
def benchmark_module():
    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture()
def fake_external():
    """Make a folder laid out like ../shared/external (manifest.csv, GROUP/NAME.png) with phantom films."""

    def _fake_external(root):
        root.mkdir(parents=True)
        rng = np.random.default_rng(3)
        with open(root / "manifest.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(COLUMNS)
            for name, group, finding, label, (width, height) in FILMS:
                (root / group).mkdir(parents=True, exist_ok=True)
                img = Image.fromarray(phantom(label, 128, rng)[0]).resize((width, height), Image.BILINEAR)
                img.save(root / group / f"{name}.png")
                w.writerow([name, group, finding, "PA", width, height, "CC BY 4.0", 1])
        return root

    _fake_external.films = FILMS
    return _fake_external
