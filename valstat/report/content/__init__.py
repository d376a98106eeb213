"""Sentences, tables and the methods paragraph of the report, from an Analysis and Strings,
one module per part: setup (coverage, setup, arm differences), findings (findings, advice),
tables, methods; common holds what they share."""

from valstat.report.content.common import CALIBRATION, Table
from valstat.report.content.findings import advice, drop_texts, findings, moves_detect_text
from valstat.report.content.methods import methods
from valstat.report.content.setup import arm_differences, coverage, setup
from valstat.report.content.tables import tables

__all__ = ["CALIBRATION", "Table", "advice", "arm_differences", "coverage", "drop_texts", "findings",
           "methods", "moves_detect_text", "setup", "tables"]
