"""The run report behind ``stag report``: one self-contained HTML page from what ``stag demo``,
``stag compare``, ``stag train``, ``stag synth`` and ``make bench`` wrote.

- :mod:`stag.report.inputs`: finds and reads those outputs in a run directory;
- :mod:`stag.report.ppa`: the PPA and throughput tables against the stored baselines;
- :mod:`stag.report.plots`: the matplotlib figures, as base64 PNG;
- :mod:`stag.report.page`: the HTML page, section by section.
"""
