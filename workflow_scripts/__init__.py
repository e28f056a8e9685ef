"""knowledge-region: the science behind each Snakemake rule, as plain functions with a small CLI per stage."""
