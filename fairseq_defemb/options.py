"""The choices of the commands' options, shared with the library that checks them.

Kept apart from the library modules because those import torch: a command builds its parser,
and answers ``--help``, from this module alone, then imports the library once its options parse.
"""

# defemb-predict --average: how a token's predictions combine (fairseq_defemb.predict)
AVERAGES = ("definitions", "occurrences")
# defemb-fit --positions: which read states W is fitted on (fairseq_defemb.fit)
FIT_POSITIONS = ("every", "headword")
# --projection-input (definition_cloze's models, defemb-fit): what W reads. 'state' is Eq. 4's h_{g(k)};
# 'state+prompt-mean' appends the mean of the last layer over the prompt (BART: of the encoder's output)
PROJECTION_INPUTS = ("state", "state+prompt-mean")
# definition_cloze --prediction-norm / defemb-predict --prediction-norm: the norm of a predicted row
PREDICTION_NORMS = ("rows", "raw")
# definition_cloze --prediction-mean / defemb-predict --prediction-mean: where predicted rows are centred
PREDICTION_MEANS = ("rows", "raw")
# defemb-surgery --method: DefinitionEMB, or a post-processing baseline of the whole matrix
# (fairseq_defemb.surgery.swap.BASELINES, in this order)
SURGERY_METHODS = ("definitionemb", "deldirection", "deldirection-centred", "del-zscore")
# defemb-add-tokens --init: how new rows start (fairseq_defemb.add_tokens.initialise)
INITS = ("defemb", "mean", "description-mean", "subwords")
# --device of the commands that run a model
DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str) -> str:
    """``auto``: cuda when torch sees a GPU, else cpu; any other choice as given."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
