"""``--criterion mimic_mse``: the mimicking objective of the paper (Eq. 5).

For each definition m, the mean over its masked subwords of ||e(p_k) - W h_{g(k)}||^2
against the frozen pretrained embedding, summed over the definitions of the batch.
``sample_size`` is the number of definitions, so fairseq's gradient normalisation
turns the sum into the per-definition mean and distributed workers combine exactly.
The loss is computed with gradients (the authors' criterion ran under ``no_grad``).

``--retrieval-weight`` (not in the paper; 0, the default, is Eq. 5 alone) adds, per definition,
that weight times the mean over its masked subwords of an InfoNCE term: the cross entropy of
the true row among all rows of the frozen embedding matrix, scored by cosine to ``W h`` over a
temperature. Eq. 5 alone is minimised by shrinking every prediction toward the targets' common
direction (a squared distance rewards the centroid under doubt); the ranking of the true row
among its neighbours, which is what a predicted row is used for, then suffers.
"""
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from fairseq import metrics
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass


@dataclass
class MimicMSEConfig(FairseqDataclass):
    retrieval_weight: float = field(
        default=0.0, metadata={"help": "weight of an InfoNCE term beside Eq. 5: the true row among all rows of the "
                               "frozen embedding matrix, by cosine to W h (not in the paper; 0: Eq. 5 alone)"})
    retrieval_temperature: float = field(
        default=0.05, metadata={"help": "temperature of the retrieval term's cosine scores"})


def per_definition_mean(values: torch.Tensor, rows: torch.Tensor, num_rows: int) -> torch.Tensor:
    """The mean of ``values`` (one per masked subword) within each definition ``rows`` names."""
    total = torch.zeros(num_rows, device=values.device).index_add(0, rows, values)
    count = torch.zeros(num_rows, device=values.device).index_add(0, rows, torch.ones_like(values))
    return total / count.clamp(min=1)


def mimic_loss_terms(predicted: torch.Tensor, target: torch.Tensor, rows: torch.Tensor, num_rows: int) -> torch.Tensor:
    """Per-definition mean squared L2 distance (Eq. 5 before the sum over definitions)."""
    return per_definition_mean((predicted.float() - target.float()).pow(2).sum(-1), rows, num_rows)


def retrieval_terms(predicted: torch.Tensor, targets: torch.Tensor, unit_rows: torch.Tensor, rows: torch.Tensor,
                    num_rows: int, temperature: float) -> torch.Tensor:
    """Per-definition mean InfoNCE: cross entropy of ``targets`` among every row of ``unit_rows`` (the
    embedding matrix, each row of norm 1), the logits being cosines to ``predicted`` over ``temperature``."""
    logits = F.normalize(predicted.float(), dim=-1) @ unit_rows.T / temperature
    return per_definition_mean(F.cross_entropy(logits, targets, reduction="none"), rows, num_rows)


@register_criterion("mimic_mse", dataclass=MimicMSEConfig)
class MimicMSECriterion(FairseqCriterion):
    def __init__(self, task, retrieval_weight: float = 0.0, retrieval_temperature: float = 0.05):
        super().__init__(task)
        if retrieval_weight < 0 or retrieval_temperature <= 0:
            raise ValueError(f"--retrieval-weight {retrieval_weight} must be >= 0 and --retrieval-temperature "
                             f"{retrieval_temperature} > 0")
        self.retrieval_weight, self.retrieval_temperature = retrieval_weight, retrieval_temperature
        self._unit_rows, self._unit_rows_of = None, None

    def unit_rows(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``embeddings``' rows at norm 1, computed again only when the matrix changes (the frozen
        target matrix never does: normalising MiniLM's 30,522 rows took ~13 ms of a ~360 ms step)."""
        of = (embeddings.data_ptr(), embeddings._version, embeddings.device, embeddings.shape)
        if of != self._unit_rows_of:
            self._unit_rows, self._unit_rows_of = F.normalize(embeddings.float(), dim=-1), of
        return self._unit_rows

    def forward(self, model, sample, reduce=True):
        predicted = model(**sample["net_input"])
        target = model.target_embeddings[sample["target"]]
        mimic = mimic_loss_terms(predicted, target, sample["target_row"], sample["nsentences"])
        per_definition = mimic
        if self.retrieval_weight:
            per_definition = mimic + self.retrieval_weight * retrieval_terms(
                predicted, sample["target"], self.unit_rows(model.target_embeddings), sample["target_row"],
                sample["nsentences"], self.retrieval_temperature)
        loss = per_definition.sum() if reduce else per_definition
        with torch.no_grad():
            cosine = F.cosine_similarity(predicted.float(), target.float(), dim=-1).sum()
        logging_output = {
            "loss": loss.data,
            "mimic": mimic.sum().data,  # Eq. 5 alone, whatever --retrieval-weight adds to the loss
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
        mimic = sum(log.get("mimic", 0) for log in logging_outputs)
        metrics.log_scalar("mimic", mimic / max(sample_size, 1), sample_size, round=4)
        metrics.log_scalar("cosine", cosine / max(nmasked, 1), nmasked, round=4)
        metrics.log_scalar("nmasked", nmasked, round=0, priority=1000)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
