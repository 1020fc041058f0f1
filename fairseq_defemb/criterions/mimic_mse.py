"""``--criterion mimic_mse``: the mimicking objective of the paper (Eq. 5).

For each definition m, the mean over its masked subwords of ||e(p_k) - W h_{g(k)}||^2
against the frozen pretrained embedding, summed over the definitions of the batch.
``sample_size`` is the number of definitions, so fairseq's gradient normalisation
turns the sum into the per-definition mean and distributed workers combine exactly.
The loss is computed with gradients (the authors' criterion ran under ``no_grad``).
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from fairseq import metrics
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass


@dataclass
class MimicMSEConfig(FairseqDataclass):
    pass


def mimic_loss_terms(predicted: torch.Tensor, target: torch.Tensor, rows: torch.Tensor, num_rows: int) -> torch.Tensor:
    """Per-definition mean squared L2 distance (Eq. 5 before the sum over definitions)."""
    squared = (predicted.float() - target.float()).pow(2).sum(-1)
    total = torch.zeros(num_rows, device=squared.device).index_add(0, rows, squared)
    count = torch.zeros(num_rows, device=squared.device).index_add(0, rows, torch.ones_like(squared))
    return total / count.clamp(min=1)


@register_criterion("mimic_mse", dataclass=MimicMSEConfig)
class MimicMSECriterion(FairseqCriterion):
    def forward(self, model, sample, reduce=True):
        predicted = model(**sample["net_input"])
        target = model.target_embeddings[sample["target"]]
        per_definition = mimic_loss_terms(predicted, target, sample["target_row"], sample["nsentences"])
        loss = per_definition.sum() if reduce else per_definition
        with torch.no_grad():
            cosine = F.cosine_similarity(predicted.float(), target.float(), dim=-1).sum()
        logging_output = {
            "loss": loss.data,
            "cosine": cosine,
            "nmasked": sample["target"].numel(),
            "ntokens": sample["ntokens"],
            "nsentences": sample["nsentences"],
            "sample_size": sample["nsentences"],
        }
        return loss, sample["nsentences"], logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        loss = sum(log.get("loss", 0) for log in logging_outputs)
        sample_size = sum(log.get("sample_size", 0) for log in logging_outputs)
        cosine = sum(log.get("cosine", 0) for log in logging_outputs)
        nmasked = sum(log.get("nmasked", 0) for log in logging_outputs)
        metrics.log_scalar("loss", loss / max(sample_size, 1), sample_size, round=4)
        metrics.log_scalar("cosine", cosine / max(nmasked, 1), nmasked, round=4)
        metrics.log_scalar("nmasked", nmasked, round=0, priority=1000)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
