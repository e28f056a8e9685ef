# Stage "centroid": leave-one-out centroids, finetuning from them and from the pretrained model on
# each target with the same seeds and settings (BitFit by default), and the comparison table.


rule centroid:
    input:
        members=lambda w: [f"results/weights/{m}.{ext}" for m in CENTROID_MEMBERS[w.dataset] for ext in ("npy", "json")],
        manifest="results/weights/manifest.json",
        pretrained="results/weights/pretrained.npy",
        base=BASE_FILES,
        code=code("centroid"),
    output:
        weights="results/centroid/{dataset}/model.safetensors",
        config="results/centroid/{dataset}/config.json",
        info="results/centroid/{dataset}/centroid.json",
    params:
        vectors=lambda w: [f"results/weights/{m}.npy" for m in CENTROID_MEMBERS[w.dataset]],
        base_dir=lambda w, input: os.path.dirname(input.base[0]),
        out_dir=lambda w, output: os.path.dirname(output.weights),
    log:
        "logs/centroid/centroid_{dataset}.log",
    shell:
        "python -m workflow_scripts.centroid make --target {wildcards.dataset} --members {params.vectors} "
        "--manifest {input.manifest} --base-dir {params.base_dir} --pretrained {input.pretrained} "
        "--out-dir {params.out_dir} > {log} 2>&1"


rule centroid_finetune:
    input:
        start=start_files,
        base=BASE_FILES,
        data=expand("resources/datasets/{{dataset}}/{file}", file=DATASET_FILES),
        code=code("finetune"),
    output:
        metrics="results/centroid/runs/{dataset}-from-{init}-s{seed}/metrics.json",
        train_log="results/centroid/runs/{dataset}-from-{init}-s{seed}/train_log.parquet",
    params:
        settings=lambda w: json.dumps(centroid_settings(w.dataset), sort_keys=True),
        start_dir=lambda w, input: os.path.dirname(input.start[0]),
        base_dir=lambda w, input: os.path.dirname(input.base[0]),
        data_dir=lambda w, input: os.path.dirname(input.data[0]),
        out_dir=lambda w, output: os.path.dirname(output.metrics),
    threads: config["finetune"]["threads"]
    resources:
        gpu=config["finetune"]["gpus"],
    log:
        "logs/centroid/{dataset}-from-{init}-s{seed}.log",
    benchmark:
        "logs/benchmarks/centroid_finetune/{dataset}-from-{init}-s{seed}.tsv"
    shell:
        "python -m workflow_scripts.finetune --base-dir {params.start_dir} --tokenizer-dir {params.base_dir} "
        "--dataset-dir {params.data_dir} --seed {wildcards.seed} --settings {params.settings:q} "
        "--threads {threads} --init {wildcards.init} --no-weights --out-dir {params.out_dir} > {log} 2>&1"


rule centroid_comparison:
    input:
        metrics=[
            f"results/centroid/runs/{t}-from-{init}-s{s}/metrics.json"
            for t in CENTROID_TARGETS
            for init in ("pretrained", "centroid")
            for s in CENTROID_SEEDS
        ],
        code=code("centroid"),
    output:
        table="results/centroid/comparison.parquet",
        summary="results/centroid/summary.parquet",
        report="results/centroid/summary.md",
    log:
        "logs/centroid/comparison.log",
    shell:
        "python -m workflow_scripts.centroid compare --metrics {input.metrics} --out-table {output.table} "
        "--out-summary {output.summary} --report {output.report} > {log} 2>&1"


rule centroid_figures:
    input:
        summary="results/centroid/summary.parquet",
        code=code("figures"),
    output:
        report("results/centroid/figures/gain.png", caption="report/gain.rst", category="Centroid"),
    log:
        "logs/centroid/figures.log",
    shell:
        "python -m workflow_scripts.figures centroid --summary {input.summary} --out {output} > {log} 2>&1"
