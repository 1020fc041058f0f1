"""Set-up shared by the console tools and the demos: logging, and SIGTERM as a clean exit."""
import logging

from fairseq_defemb.atomic_io import exit_on_sigterm

# Loggers whose INFO lines at import time are noise for every tool here: fairseq's text_to_speech
# task says "Please install tensorboardX" whenever fairseq.tasks is imported (TTS logging only).
IMPORT_CHATTER = ("fairseq.tasks.text_to_speech",)


def configure_cli_logging(level: int = logging.INFO) -> None:
    """Set the root logging configuration, call it before anything imports fairseq; and make
    SIGTERM exit through the cleanup handlers (no temporary output left behind).

    Importing ``fairseq.models`` runs ``logging.basicConfig(level=logging.DEBUG)``
    (in ``wav2vec2_classification``): set up first, that call finds a handler and does
    nothing; set up later, ``force=True`` replaces what it left, so hydra's debug chatter
    does not flood stderr whenever a checkpoint's config is converted. Import-time chatter is
    held at WARNING whatever ``level`` is.
    """
    logging.basicConfig(level=level, format="%(asctime)s | %(levelname)s | %(name)s | %(message)s",
                        datefmt="%Y-%m-%d %H:%M:%S", force=True)
    for name in IMPORT_CHATTER:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    exit_on_sigterm()
