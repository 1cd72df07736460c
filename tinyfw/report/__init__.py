"""The ablation report: read run records (sweep dir, local wandb dir, wandb server), build the
paper-shaped table (``table.py``), the bar chart (``plot.py``) and ``report.md``
(``document.py``). ``records.py`` documents the run-record schema the report expects."""
