"""Data: find COVID-QU-Ex, read any X-ray, and feed training."""

from cxrseg.data.covidqu import CLASSES, SPLITS, DatasetIndex, Sample, find_dataset, summary_markdown
from cxrseg.data.dataset import ArrayBundle, SegmentationDataset, load_arrays
from cxrseg.data.io import XRay, decode_xray, read_mask, read_xray
from cxrseg.data.synthetic import make_synthetic_covidqu

__all__ = [
    "CLASSES",
    "SPLITS",
    "ArrayBundle",
    "DatasetIndex",
    "Sample",
    "SegmentationDataset",
    "XRay",
    "decode_xray",
    "find_dataset",
    "load_arrays",
    "make_synthetic_covidqu",
    "read_mask",
    "read_xray",
    "summary_markdown",
]
