"""fairseq-defemb's library: everything DefinitionEMB needs outside fairseq's training loop.

The fairseq plugin (``--user-dir fairseq_defemb``: task, criterion, models) is the separate
package :mod:`fairseq_defemb`; importing this package does not import fairseq, so the
commands that do not need it (surgery, analysis, the corpus builder) start fast.
"""
