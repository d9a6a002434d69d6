"""The results page written by bench/report.py, one module per idea.

results (reading bench/results/*.json and the run folders they name), fmt (numbers and markdown),
page (the page being written), one module per group of sections (transfer, reading, quality, cold,
sasrec_ml1m, sasrec_recbole, speed, serving, compute), document (the whole page) and readme (the
README's results block).
"""
