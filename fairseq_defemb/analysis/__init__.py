"""The paper's measurements: isotropy per frequency group, neighbours and Max Difference,
geometry drift, probing, the rare-token subset, ROUGE and paired bootstrap significance."""
