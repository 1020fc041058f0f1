"""Embedding surgery (``defemb-surgery``): which rows to replace, the post-processing
baselines, the swap into a copy of a fairseq checkpoint, and its verification."""
