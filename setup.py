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
    # The project's own code; the data and models it reads have their own terms (README, "Data and model licences").
    license="MIT",
    license_files=["LICENSE"],
    packages=find_packages(include=["fairseq_defemb", "fairseq_defemb.*", "defemb", "defemb.*"]),
    python_requires=">=3.10",
    install_requires=["numpy", "tqdm", "regex"],
    entry_points={
        "console_scripts": [
            "defemb-predict = defemb.cli.predict:main",
            "defemb-corpus = defemb.cli.corpus:main",
            "defemb-surgery = defemb.cli.surgery:main",
            "defemb-analyze = defemb.cli.analyze:main",
            "defemb-convert-hf = defemb.cli.convert_hf:main",
            "defemb-fit = defemb.cli.fit:main",
        ]
    },
)
