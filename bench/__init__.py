"""The kalam-actors benchmark harness: ``python -m bench [--quick] [--only B1,B2] [--out DIR]``.

Every figure runs in a fresh subprocess (so one measurement cannot warm, pollute or lock the
next, and resident memory is the figure's own), several times; the report keeps the median.
See ``bench/README.md`` for what each figure means and ``bench/RESULTS.md`` for a recorded run.
"""
