"""DefinitionEMB models: a pretrained RoBERTa/BART plus the bias-free projection W.

Each model *is* the stock fairseq model (subclass), so a pretrained state dict loads
key for key, plus two things: ``projection`` (W, h_s -> h_e, Eq. 4; or [h_s; prompt mean] -> h_e,
``--projection-input``) and the buffer ``target_embeddings``, a frozen copy of the pretrained embedding matrix: the
regression target of Eq. 5 stays fixed even with ``--update-embeddings``.
"""
import logging
from pathlib import Path

import torch
from fairseq.models import register_model, register_model_architecture
from fairseq.models.bart import BARTModel
from fairseq.models.bart.model import bart_base_architecture, bart_large_architecture
from fairseq.models.roberta import RobertaModel
from fairseq.models.roberta.model import base_architecture as roberta_architecture
from fairseq.models.roberta.model import roberta_large_architecture
from fairseq.modules.transformer_layer import TransformerEncoderLayerBase
from omegaconf import OmegaConf
from torch import nn

from fairseq_defemb.data.corpus_format import DICT_FILE
from fairseq_defemb.models.pretrained import adopt_architecture, architecture_keys, load_pretrained
from fairseq_defemb.data.vocabulary import dictionary_sha256
from fairseq_defemb.options import PROJECTION_INPUTS

logger = logging.getLogger(__name__)

ENCODER_FIELDS = ("encoder_layers", "encoder_embed_dim", "encoder_ffn_embed_dim", "encoder_attention_heads")
DECODER_FIELDS = ("decoder_layers", "decoder_embed_dim", "decoder_ffn_embed_dim", "decoder_attention_heads")


def add_defemb_args(parser) -> None:
    parser.add_argument("--pretrained-checkpoint", type=str, metavar="PATH",
                        help="stock fairseq checkpoint (e.g. bart.large/model.pt) to start from; "
                        "its dict.txt must be the corpus's. Required unless --from-scratch")
    parser.add_argument("--from-scratch", action="store_true",
                        help="start from a random network whose random embeddings are the regression target: "
                        "only for tests and benchmarks, never a DefinitionEMB of a real model")
    parser.add_argument("--update-embeddings", action="store_true",
                        help="train the token embeddings too (the paper does for RoBERTa); "
                        "the regression target stays the frozen pretrained copy")
    parser.add_argument("--projection-input", choices=PROJECTION_INPUTS, default="state",
                        help="what W reads: 'state' (default, Eq. 4) the hidden state h_{g(k)} at the read position; "
                        "'state+prompt-mean' that state and the mean of the last layer over the prompt (BART: of the "
                        "encoder's output), concatenated: what defemb-fit fits by default (its W alone ranks held-out "
                        "tokens best; trained from it, no better than 'state': docs/definition-model.md)")
    parser.add_argument("--train-layers", type=int, metavar="N", default=None,
                        help="train W and only the top N layers of the stack W reads (RoBERTa: the encoder's; BART: "
                        "the decoder's, its encoder frozen); everything under them keeps its pretrained weights and "
                        "the backward pass stops there. 0: W alone; N at or past the stack's depth: all of its "
                        "layers (the embeddings still frozen). Default: every layer, as the paper trains")
    parser.add_argument("--bf16-autocast", action="store_true",
                        help="run the stack W reads under torch.autocast in bfloat16 (mixed precision, the CPU's "
                        "counterpart of the paper's --fp16): its matrix products in bfloat16; W, the loss, the "
                        "weights and the optimiser's state in float32. Stored in the checkpoint, so its fit and its "
                        "predictions read the states the same way. Pays on CPUs with AVX512-BF16 or AMX "
                        "(docs/definition-model.md); elsewhere torch emulates it, slower than float32")


class DefinitionEmbeddingMixin:
    """What both models add to their fairseq parent."""

    generic_arch: str
    checked_fields: tuple[str, ...]

    def _init_defemb(self, args, embed_tokens: nn.Embedding, hidden_dim: int, prompt_dim: int) -> None:
        # checkpoints from before the option read the state alone
        self.projection_input = getattr(args, "projection_input", None) or "state"
        if self.projection_input not in PROJECTION_INPUTS:
            raise ValueError(f"--projection-input {self.projection_input}: one of {', '.join(PROJECTION_INPUTS)}")
        reads = hidden_dim + (prompt_dim if self.projection_input == "state+prompt-mean" else 0)
        self.projection = nn.Linear(reads, embed_tokens.embedding_dim, bias=False)
        self.register_buffer("target_embeddings", embed_tokens.weight.detach().clone())
        self.update_embeddings = bool(getattr(args, "update_embeddings", False))
        self.train_layers = getattr(args, "train_layers", None)
        self.bf16_autocast = bool(getattr(args, "bf16_autocast", False))
        if self.bf16_autocast and (getattr(args, "fp16", False) or getattr(args, "bf16", False)):
            raise ValueError("--bf16-autocast runs a float32 model's products in bfloat16; with --fp16 or --bf16 "
                             "the model is in half precision already: drop --fp16/--bf16 or --bf16-autocast")

    def read_stack(self) -> tuple[nn.ModuleList, nn.Module | None]:
        """The layers whose last output W reads, and the norm applied after them (None: none)."""
        raise NotImplementedError

    def _freeze(self) -> None:
        self.embed_tokens.weight.requires_grad = self.update_embeddings
        for name, param in self.named_parameters():
            # Heads the definition cloze never reads (RoBERTa's LM head) stay as loaded.
            if ".lm_head." in f".{name}" and param is not self.embed_tokens.weight:
                param.requires_grad = False
        if self.train_layers is None:
            return
        layers, norm = self.read_stack()
        if self.train_layers < 0:
            raise ValueError(f"--train-layers {self.train_layers}: give 0 (W alone) or more layers")
        if self.update_embeddings:
            raise ValueError("--train-layers keeps the embeddings frozen: drop --update-embeddings")
        # A recipe's N is a count from the top: a model no deeper than N trains all of its layers (the
        # recommended recipe's 4 on a 2-layer model), with the embeddings still frozen.
        if self.train_layers > len(layers):
            logger.info(f"--train-layers {self.train_layers}: the model has {len(layers)} layers, every one trains")
        top = list(layers)[max(0, len(layers) - self.train_layers):]
        trained = [self.projection, *top, *([norm] if top and norm is not None else [])]
        keep = {id(p) for module in trained for p in module.parameters()}
        for param in self.parameters():
            param.requires_grad = param.requires_grad and id(param) in keep

    @classmethod
    def build_model(cls, args, task):
        if OmegaConf.is_config(args):
            OmegaConf.set_struct(args, False)
        state = None
        if getattr(args, "pretrained_checkpoint", None):
            corpus_dict = Path(task.cfg.data) / DICT_FILE
            state = load_pretrained(args.pretrained_checkpoint, corpus_dict, len(task.source_dictionary))
            fields = () if args.arch == cls.generic_arch else cls.checked_fields
            keys = architecture_keys(cls.__bases__[-1], cls.base_architecture)
            adopt_architecture(args, state["cfg"]["model"], keys, fields, args.arch)
        # Recorded in the saved cfg so defemb-predict can refuse a corpus of another vocabulary.
        args.dictionary_sha256 = dictionary_sha256(Path(task.cfg.data) / DICT_FILE)
        model = super().build_model(args, task)
        if state is not None:
            model.load_pretrained_state(state["model"], args.pretrained_checkpoint)
        model._freeze()
        if OmegaConf.is_config(args):
            OmegaConf.set_struct(args, True)
        return model

    def load_pretrained_state(self, pretrained: dict, source: str) -> None:
        self.upgrade_state_dict_named(pretrained, "")
        missing, unexpected = self.load_state_dict(pretrained, strict=False)
        ours = {"projection.weight", "target_embeddings"}
        if set(missing) - ours or unexpected:
            raise ValueError(
                f"{source}: does not fit {type(self).__name__} (missing {sorted(set(missing) - ours)[:5]}, "
                f"unexpected {sorted(unexpected)[:5]}); is it a {self.generic_arch.split('_')[1]} checkpoint?"
            )
        self.target_embeddings.copy_(self.embed_tokens.weight.detach())
        logger.info(f"initialised from {source}")

    def read_states(self, **net_input) -> torch.Tensor:
        """What W reads at every position of ``predict_mask``, in row-major order: h_{g(k)} of Eq. 4
        (with ``--projection-input state+prompt-mean``, beside its prompt's mean), in float32; the one
        place it is computed, so a closed-form fit of W (fairseq_defemb.fit) sees exactly what training does."""
        device = self.projection.weight.device.type
        with torch.autocast(device, dtype=torch.bfloat16, enabled=self.bf16_autocast):
            states = self.stack_states(**net_input)
        return states.float()

    def stack_states(self, **net_input) -> torch.Tensor:
        """``read_states`` as the model's own stack computes them (under autocast with --bf16-autocast)."""
        raise NotImplementedError

    def forward(self, **net_input) -> torch.Tensor:
        """W h_{g(k)} for every position of ``predict_mask``, in row-major order."""
        return self.projection(self.read_states(**net_input))

    def with_prompt_mean(self, states: torch.Tensor, prompt: torch.Tensor, padding: torch.Tensor | None,
                         predict_mask: torch.Tensor) -> torch.Tensor:
        """``states`` (one row per position of ``predict_mask``, row-major) as W reads them: alone
        (``--projection-input state``), or each beside the mean over its prompt's non-padding
        positions of ``prompt`` (B x T x C)."""
        if self.projection_input == "state":
            return states
        prompt = prompt.float()  # a bfloat16 sum over a prompt would keep three digits
        keep = torch.ones(prompt.shape[:2], dtype=prompt.dtype, device=prompt.device) if padding is None \
            else (~padding).to(prompt.dtype)
        means = (prompt * keep.unsqueeze(-1)).sum(1) / keep.sum(1, keepdim=True)
        return torch.cat([states.float(), means[predict_mask.nonzero()[:, 0]]], dim=-1)


def encoder_layer_at(layer: TransformerEncoderLayerBase, query: torch.Tensor, x: torch.Tensor,
                     key_padding_mask: torch.Tensor | None) -> torch.Tensor:
    """``layer(x, key_padding_mask)`` at the rows ``query`` (Q x B x C) holds, attending over all of
    ``x`` (T x B x C): the layer's own modules in the order of its ``forward``."""
    residual = query
    if layer.normalize_before:
        query, x = layer.self_attn_layer_norm(query), layer.self_attn_layer_norm(x)
    out, _ = layer.self_attn(query=query, key=x, value=x, key_padding_mask=key_padding_mask, need_weights=False)
    out = layer.residual_connection(layer.dropout_module(out), residual)
    if not layer.normalize_before:
        out = layer.self_attn_layer_norm(out)
    residual = out
    if layer.normalize_before:
        out = layer.final_layer_norm(out)
    out = layer.fc2(layer.activation_dropout_module(layer.activation_fn(layer.fc1(out))))
    out = layer.residual_connection(layer.dropout_module(out), residual)
    if not layer.normalize_before:
        out = layer.final_layer_norm(out)
    return out


@register_model("defemb_roberta")
class DefinitionEmbRobertaModel(DefinitionEmbeddingMixin, RobertaModel):
    """Encoder-only DefinitionEMB: g(k) = k, the masked subword's own position."""

    generic_arch = "defemb_roberta"
    checked_fields = ENCODER_FIELDS
    base_architecture = staticmethod(roberta_architecture)

    def __init__(self, args, encoder):
        super().__init__(args, encoder)
        self._init_defemb(args, encoder.sentence_encoder.embed_tokens, args.encoder_embed_dim, args.encoder_embed_dim)

    @staticmethod
    def add_args(parser):
        RobertaModel.add_args(parser)
        add_defemb_args(parser)

    @property
    def embed_tokens(self) -> nn.Embedding:
        return self.encoder.sentence_encoder.embed_tokens

    @property
    def is_encoder_decoder(self) -> bool:
        return False

    def read_stack(self) -> tuple[nn.ModuleList, nn.Module | None]:
        return self.encoder.sentence_encoder.layers, self.encoder.sentence_encoder.layer_norm

    def stack_states(self, src_tokens, predict_mask, src_lengths=None, **kwargs):
        # the prompt's mean needs the last layer everywhere: features_at's saving does not apply
        if self.projection_input != "state":
            hidden, _ = self.encoder.extract_features(src_tokens)
            padding = src_tokens.eq(self.encoder.sentence_encoder.padding_idx)
            return self.with_prompt_mean(hidden[predict_mask], hidden, padding, predict_mask)
        return self.features_at(src_tokens, predict_mask)

    def features_at(self, src_tokens: torch.Tensor, predict_mask: torch.Tensor) -> torch.Tensor:
        """``extract_features(src_tokens)[0][predict_mask]``, computed without the rows nobody reads.

        Prediction reads one position of a whole prompt, so the last layer needs keys and
        values everywhere but queries, attention output and feed-forward only where
        ``predict_mask`` is set: that removes most of the last layer's cost, in training too (the
        unread rows never reach the loss, so gradients are the full forward's; dropout draws its
        masks for the read rows alone, the same distribution stock fairseq's forward draws from).
        """
        encoder = self.encoder.sentence_encoder
        padding = src_tokens.eq(encoder.padding_idx)
        key_padding = padding if padding.any() else None
        x, _ = encoder.forward_embedding(src_tokens)
        if key_padding is not None:
            x = x * (1 - padding.unsqueeze(-1).type_as(x))
        x = x.transpose(0, 1)  # T x B x C, as fairseq's layers take it
        *lower, last = encoder.layers
        for layer in lower:
            x = layer(x, encoder_padding_mask=key_padding)
        # Query slot j of row b holds that row's j-th read position; short rows repeat position 0.
        rows, columns = predict_mask.nonzero(as_tuple=True)
        counts = predict_mask.sum(1)
        slots = torch.arange(len(rows), device=rows.device) - (counts.cumsum(0) - counts)[rows]
        query_positions = torch.zeros(len(counts), int(counts.max()), dtype=torch.long, device=rows.device)
        query_positions[rows, slots] = columns
        batch = torch.arange(len(counts), device=rows.device)
        out = encoder_layer_at(last, x[query_positions.t(), batch], x, key_padding)
        if encoder.layer_norm is not None:
            out = encoder.layer_norm(out)
        return out[slots, rows]


@register_model("defemb_bart")
class DefinitionEmbBARTModel(DefinitionEmbeddingMixin, BARTModel):
    """Encoder-decoder DefinitionEMB: g(k) is the decoder position fed the token before p_k."""

    generic_arch = "defemb_bart"
    checked_fields = ENCODER_FIELDS + DECODER_FIELDS
    base_architecture = staticmethod(bart_large_architecture)

    def __init__(self, args, encoder, decoder):
        super().__init__(args, encoder, decoder)
        self._init_defemb(args, encoder.embed_tokens, args.decoder_embed_dim, args.encoder_embed_dim)

    @staticmethod
    def add_args(parser):
        BARTModel.add_args(parser)
        add_defemb_args(parser)

    @property
    def embed_tokens(self) -> nn.Embedding:
        return self.encoder.embed_tokens

    @property
    def is_encoder_decoder(self) -> bool:
        return True

    def read_stack(self) -> tuple[nn.ModuleList, nn.Module | None]:
        return self.decoder.layers, self.decoder.layer_norm

    def stack_states(self, src_tokens, src_lengths, prev_output_tokens, predict_mask, **kwargs):
        encoder_out = self.encoder(src_tokens, src_lengths=src_lengths)
        hidden, _ = self.decoder.extract_features(prev_output_tokens, encoder_out=encoder_out)
        padding = encoder_out["encoder_padding_mask"][0] if encoder_out["encoder_padding_mask"] else None
        return self.with_prompt_mean(hidden[predict_mask], encoder_out["encoder_out"][0].transpose(0, 1), padding,
                                     predict_mask)


# Generic architectures take every dimension from --pretrained-checkpoint.
@register_model_architecture("defemb_roberta", "defemb_roberta")
def defemb_roberta(args):
    roberta_architecture(args)


@register_model_architecture("defemb_roberta", "defemb_roberta_base")
def defemb_roberta_base(args):
    roberta_architecture(args)


@register_model_architecture("defemb_roberta", "defemb_roberta_large")
def defemb_roberta_large(args):
    roberta_large_architecture(args)


@register_model_architecture("defemb_bart", "defemb_bart")
def defemb_bart(args):
    bart_large_architecture(args)


@register_model_architecture("defemb_bart", "defemb_bart_large")
def defemb_bart_large(args):
    bart_large_architecture(args)


@register_model_architecture("defemb_bart", "defemb_bart_base")
def defemb_bart_base(args):
    bart_base_architecture(args)
