"""cxrseg: two-stage chest X-ray segmentation, lungs then COVID-19 infection, with severity figures."""

__version__ = "0.1.0"
