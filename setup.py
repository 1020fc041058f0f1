"""fairseq-defemb: DefinitionEMB as a fairseq plugin (``--user-dir fairseq_defemb``).

fairseq itself is *not* an install requirement: the PyPI name ``fairseq`` resolves to
an old release whose dependencies pull in torchaudio and a CUDA torch. ``make install``
installs ``ve-fairseq==0.12.3`` with ``--no-deps`` and its real dependencies by hand.
"""
from setuptools import find_packages, setup

setup(
    name="fairseq-defemb",
    version="0.1.0",
    description="Repair rare-token embeddings of fairseq PLMs with dictionary definitions (DefinitionEMB)",
    # The project's own code; the data and models it reads have their own terms (docs/licences.md).
    license="MIT",
    license_files=["LICENSE"],
    packages=find_packages(include=["fairseq_defemb", "fairseq_defemb.*", "preprocess", "preprocess.*"]),
    python_requires=">=3.10",
    install_requires=["numpy", "tqdm", "regex"],
    entry_points={
        "console_scripts": [
            "defemb-predict = fairseq_defemb.cli.predict:main",
            "defemb-corpus = fairseq_defemb.cli.corpus:main",
            "defemb-surgery = fairseq_defemb.cli.surgery:main",
            "defemb-analyze = fairseq_defemb.cli.analyze:main",
            "defemb-convert-hf = fairseq_defemb.cli.convert_hf:main",
            "defemb-fit = fairseq_defemb.cli.fit:main",
            "defemb-export-hf = fairseq_defemb.cli.export_hf:main",
            "defemb-add-tokens = fairseq_defemb.cli.add_tokens:main",
            "defemb-bpe-encode = fairseq_defemb.cli.bpe_encode:main",
        ]
    },
)
