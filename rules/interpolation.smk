# Stage "interpolation": bodies on lines between pairs of models and in the region of a group, each
# scored with a fresh linear head (generalized evaluation), then tables, a summary and figures.


rule eval_inputs:
    input:
        base=BASE_FILES,
        data=expand("resources/datasets/{{dataset}}/{file}", file=DATASET_FILES),
        code=code("evaluation"),
    output:
        "results/evaluation/inputs/{dataset}.parquet",
    params:
        base_dir=lambda w, input: os.path.dirname(input.base[0]),
        data_dir=lambda w, input: os.path.dirname(input.data[0]),
        max_length=EVAL_MAX_LENGTH,
        probe_train=config["evaluation"]["probe_train"],
        test=config["evaluation"]["test"],
        seed=config["evaluation"]["seed"],
    log:
        "logs/evaluation/inputs_{dataset}.log",
    shell:
        "python -m workflow_scripts.evaluation encode --base-dir {params.base_dir} --dataset-dir {params.data_dir} "
        "--max-length {params.max_length} --probe-train {params.probe_train} --test {params.test} "
        "--seed {params.seed} --out {output} > {log} 2>&1"


rule interpolate_line:
    input:
        models=lambda w: model_files(PAIRS[w.pair]),
        inputs=lambda w: eval_inputs(pair_datasets(w.pair)),
        manifest="results/weights/manifest.json",
        base=BASE_FILES,
        code=code("interpolation"),
    output:
        "results/interpolation/lines/{pair}.parquet",
    params:
        a=lambda w: PAIRS[w.pair][0],
        b=lambda w: PAIRS[w.pair][1],
        alphas=" ".join(str(a) for a in config["interpolation"]["alphas"]),
        settings=EVAL_SETTINGS,
        base_dir=lambda w, input: os.path.dirname(input.base[0]),
    threads: config["evaluation"]["threads"]
    log:
        "logs/interpolation/line_{pair}.log",
    benchmark:
        "logs/benchmarks/interpolate_line/{pair}.tsv"
    shell:
        "python -m workflow_scripts.interpolation line --a {params.a} --b {params.b} --alphas {params.alphas} "
        "--base-dir {params.base_dir} --manifest {input.manifest} --weights-dir results/weights "
        "--models-dir results/models --inputs {input.inputs} --settings {params.settings:q} --out {output} > {log} 2>&1"


rule region:  # one job per group and eval dataset
    input:
        models=lambda w: model_files(REGION_GROUPS[w.group].members + REGION_GROUPS[w.group].others),
        inputs=lambda w: eval_inputs([w.dataset]),
        manifest="results/weights/manifest.json",
        base=BASE_FILES,
        code=code("interpolation"),
    output:
        "results/interpolation/region/{group}/{dataset}.parquet",
    params:
        members=lambda w: " ".join(REGION_GROUPS[w.group].members),
        others=lambda w: " ".join(REGION_GROUPS[w.group].others),
        region=config["interpolation"]["region"],
        seed=config["interpolation"]["seed"],
        settings=EVAL_SETTINGS,
        base_dir=lambda w, input: os.path.dirname(input.base[0]),
    threads: config["evaluation"]["threads"]
    log:
        "logs/interpolation/region_{group}_{dataset}.log",
    benchmark:
        "logs/benchmarks/region/{group}_{dataset}.tsv"
    shell:
        "python -m workflow_scripts.interpolation region --group {wildcards.group} --members {params.members} "
        "--others {params.others} --hull-samples {params.region[hull_samples]} "
        "--concentration {params.region[concentration]} --extrapolated {params.region[extrapolated]} "
        "--beta {params.region[beta]} --seed {params.seed} --base-dir {params.base_dir} "
        "--manifest {input.manifest} --weights-dir results/weights --models-dir results/models "
        "--inputs {input.inputs} --settings {params.settings:q} --out {output} > {log} 2>&1"


rule interpolation_summary:
    input:
        lines=expand("results/interpolation/lines/{pair}.parquet", pair=PAIRS),
        regions=[
            f"results/interpolation/region/{name}/{d}.parquet" for name, g in REGION_GROUPS.items() for d in g.datasets
        ],
        code=code("interpolation"),
    output:
        lines="results/interpolation/lines.parquet",
        region="results/interpolation/region.parquet",
        line_summary="results/interpolation/line_summary.parquet",
        region_summary="results/interpolation/region_summary.parquet",
        report="results/interpolation/summary.md",
    log:
        "logs/interpolation/summary.log",
    shell:
        "python -m workflow_scripts.interpolation summarise --lines {input.lines} --regions {input.regions} "
        "--out-lines {output.lines} --out-region {output.region} --out-line-summary {output.line_summary} "
        "--out-region-summary {output.region_summary} --report {output.report} > {log} 2>&1"


rule interpolation_figures:
    input:
        lines="results/interpolation/lines.parquet",
        region="results/interpolation/region.parquet",
        code=code("figures"),
    output:
        [
            report(f"results/interpolation/figures/{name}.png", caption=f"report/{name}.rst", category="Interpolation")
            for name in ("lines_accuracy", "lines_loss", "region")
        ],
    params:
        out_dir=lambda w, output: os.path.dirname(output[0]),
    log:
        "logs/interpolation/figures.log",
    shell:
        "python -m workflow_scripts.figures interpolation --lines {input.lines} --region {input.region} "
        "--out-dir {params.out_dir} > {log} 2>&1"
