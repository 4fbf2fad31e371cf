"""What the report tools print and write: statistics, tables, CSV files and plots.

scripts/summarize_sweep.py, compare_methods.py and plot_frontier.py keep their arguments and printing; everything
they compute and write is here. The modules, each importing only those above it:
  stats     numbers with their noise (Estimate: standard error and 95% interval; Wilson for rates, over seeds with
            Student's t), and whether beta moved a metric beyond it (beta_effect, reading)
  tables    estimates and numbers as table cells, console and markdown tables, the one CSV writer (write_csv)
  plots     matplotlib without a display: estimates with their intervals, runs drawn faint, rate axes
  runs      a finished run's JSON files, config and evaluation numbers as estimates
  sweep     a Hydra sweep's summary (summary.csv/.md/.png, the reading line)
  compare   methods side by side (compare.md/.csv/.png)
  frontier  pass rate against KL per method and beta (frontier.png/.csv)

The helpers other modules print with are importable from the package itself.
"""

from prefopt.reports.plots import pyplot, save_figure
from prefopt.reports.runs import lookup, method_label, read_json
from prefopt.reports.stats import finite_number
from prefopt.reports.tables import console_table, format_cell, markdown_table, write_csv

__all__ = [
    "console_table",
    "finite_number",
    "format_cell",
    "lookup",
    "markdown_table",
    "method_label",
    "pyplot",
    "read_json",
    "save_figure",
    "write_csv",
]
