"""Formal checks of the generated hardware: stream rules, AXI-Lite and the dispatcher.

Each check wraps a design in a harness of Amaranth ``Assume`` / ``Assert`` statements
(:mod:`sim.formal.rules`), hands it to Yosys and proves it with ``yosys-smtbmc`` and the Yices
SMT solver (:mod:`sim.formal.runner`): the solver explores *every* input sequence up to the
check's depth, not a sample of them. Every check also has broken variants (*mutants*) that
must fail, so a property that cannot fail is caught. :mod:`sim.formal.checks` lists them;
``python -m sim.formal`` (``make formal``) runs them all, each property stated in its harness.
"""
