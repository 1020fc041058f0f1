"""Set-up shared by the console tools and the demos: logging, and SIGTERM as a clean exit."""
import logging

from defemb.atomic_io import exit_on_sigterm


def configure_cli_logging(level: int = logging.INFO) -> None:
    """Replace whatever root logging configuration importing fairseq left behind, and make
    SIGTERM exit through the cleanup handlers (no temporary output left behind).

    Importing ``fairseq.models`` runs ``logging.basicConfig(level=logging.DEBUG)``
    (in ``wav2vec2_classification``), so without ``force=True`` our own
    ``basicConfig`` is a no-op and hydra's debug chatter floods stderr whenever a
    checkpoint's config is converted.
    """
    logging.basicConfig(level=level, format="%(asctime)s | %(levelname)s | %(name)s | %(message)s",
                        datefmt="%Y-%m-%d %H:%M:%S", force=True)
    exit_on_sigterm()
