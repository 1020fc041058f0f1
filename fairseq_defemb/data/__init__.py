"""On-disk formats that pass between the stages: the binarized definition corpus, the
definition-cloze examples built from it, the predicted-embeddings file, and the model
dictionary."""
