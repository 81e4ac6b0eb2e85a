"""The folder report: ``cxrseg report OUT_DIR`` turns a predict output folder into one self-contained page."""

from cxrseg.report.build import REPORT, THUMBS, ReportResult, build_report, read_folder
from cxrseg.report.runinfo import RUN_JSON, read_run_info, write_run_info

__all__ = ["REPORT", "RUN_JSON", "THUMBS", "ReportResult", "build_report", "read_folder", "read_run_info",
           "write_run_info"]
