"""Definition corpus builder (``defemb-corpus``): dictionary sources -> prompts -> a
binarized corpus for ``--task definition_cloze``, with a coverage report."""
