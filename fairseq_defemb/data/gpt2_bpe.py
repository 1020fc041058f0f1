"""fairseq's GPT-2 BPE (``fairseq/data/encoders/gpt2_bpe_utils.py``) without importing fairseq.

That module is self-contained Python (json, functools, regex), but importing it by its dotted
name first runs ``fairseq/__init__``, which imports every model and task: seconds of start-up
and a log line for commands that only tokenize text. Loading fairseq's own file by path gives
the same code (so the same BPE as fairseq's ``--bpe gpt2``) without that; once fairseq is
imported anyway, its module is used.
"""
import importlib
import importlib.util
import sys
from functools import cache
from types import ModuleType

_MODULE = "fairseq.data.encoders.gpt2_bpe_utils"


@cache
def gpt2_bpe_utils() -> ModuleType:
    """The module holding ``get_encoder`` and ``bytes_to_unicode``."""
    if "fairseq" in sys.modules:
        return importlib.import_module(_MODULE)
    package = importlib.util.find_spec("fairseq")  # locates the package without running its __init__
    if package is None or not package.submodule_search_locations:
        raise ModuleNotFoundError("fairseq is not installed (`make install` installs ve-fairseq==0.12.3)")
    path = f"{package.submodule_search_locations[0]}/data/encoders/gpt2_bpe_utils.py"
    spec = importlib.util.spec_from_file_location("fairseq_defemb.data._fairseq_gpt2_bpe_utils", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
